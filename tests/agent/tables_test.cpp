// The config turned into map contents: the embedded default gives exactly the example policy
// (checked rule by rule and by deciding for sample peers the way policy.bpf.h does), IPv4 as
// v4-mapped, flagged prefixes inheriting their network, net_stat's list and label names.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <optional>
#include <string>

#include "config.hpp"
#include "tables.hpp"

namespace {

agent::config parse_ok(const std::string& text) {
    agent::config c;
    agent::config_error e;
    EXPECT_TRUE(agent::parse_config(text, "test.toml", c, e)) << e.message;
    return c;
}

agent::config embedded() {
    agent::config c;
    agent::config_error e;
    EXPECT_TRUE(agent::default_config(c, e)) << e.message;
    return c;
}

// A peer address as the BPF side sees it: IPv4 written v4-mapped.
policy_key peer(const char* text) {
    policy_key k{};
    k.prefixlen = 128;
    in_addr a4;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        k.addr[10] = k.addr[11] = 0xff;
        std::memcpy(k.addr + 12, &a4, 4);
    } else {
        EXPECT_EQ(inet_pton(AF_INET6, text, k.addr), 1) << text;
    }
    return k;
}

bool contains(const policy_key& prefix, const policy_key& addr) {
    for (uint32_t bit = 0; bit < prefix.prefixlen; ++bit) {
        uint8_t m = uint8_t(0x80u >> (bit % 8));
        if ((prefix.addr[bit / 8] & m) != (addr.addr[bit / 8] & m)) {
            return false;
        }
    }
    return true;
}

// The longest-prefix lookup of the networks trie.
policy_network lookup(const agent::policy_tables& t, const policy_key& addr) {
    const std::pair<policy_key, policy_network>* best = nullptr;
    for (const auto& e : t.networks) {
        if (contains(e.first, addr) && (!best || e.first.prefixlen > best->first.prefixlen)) {
            best = &e;
        }
    }
    return best ? best->second : policy_network{};
}

// policy_decide() of policy.bpf.h over the tables: the index of the deciding rule, if any.
std::optional<size_t> decide(const agent::policy_tables& t, const char* remote,
                             uint32_t local_project = 0) {
    policy_key k = peer(remote);
    policy_network net = lookup(t, k);
    bool v4 = std::memcmp(k.addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    uint32_t remote_project = 0;
    if (!v4) {
        remote_project = uint32_t(k.addr[8]) << 24 | uint32_t(k.addr[9]) << 16 |
                         uint32_t(k.addr[10]) << 8 | k.addr[11];
    } else {
        local_project = 0;
    }
    auto sets_of = [&](uint32_t project) -> uint32_t {
        for (const auto& [id, mask] : t.project_sets) {
            if (id == project && project) {
                return mask;
            }
        }
        return 0;
    };
    uint32_t remote_sets = sets_of(remote_project), local_sets = sets_of(local_project);
    bool same_dc = net.dc != 0 && net.dc == t.cfg.local_dc;
    for (size_t i = 0; i < t.cfg.rule_count; ++i) {
        const policy_rule& r = t.rules[i];
        if (r.net_type && r.net_type != net.net_type) {
            continue;
        }
        if (r.scope == POLICY_SCOPE_SAME_DC && !same_dc) {
            continue;
        }
        if (r.scope == POLICY_SCOPE_CROSS_DC && (same_dc || net.dc == 0)) {
            continue;
        }
        if (r.set_side == POLICY_SET_REMOTE && !(remote_sets & (1u << r.set_id))) {
            continue;
        }
        if (r.set_side == POLICY_SET_LOCAL && !(local_sets & (1u << r.set_id))) {
            continue;
        }
        return i;
    }
    return std::nullopt;
}

policy_key key_of(const char* prefix) {
    auto k = ebpf::lpm_key::parse(prefix);
    EXPECT_TRUE(k.has_value()) << prefix;
    policy_key p{};
    p.prefixlen = k->prefixlen;
    std::memcpy(p.addr, k->addr, 16);
    return p;
}

std::optional<policy_network> entry(const agent::policy_tables& t, const char* prefix) {
    policy_key k = key_of(prefix);
    for (const auto& [key, net] : t.networks) {
        if (key.prefixlen == k.prefixlen && std::memcmp(key.addr, k.addr, 16) == 0) {
            return net;
        }
    }
    return std::nullopt;
}

void expect_rule(const policy_rule& r, uint32_t net_type, uint8_t scope, uint8_t set_side,
                 uint32_t rto_init_ms, const char* cc, uint8_t dscp, bool ecn_syn, bool yattl) {
    EXPECT_EQ(r.net_type, net_type);
    EXPECT_EQ(r.scope, scope);
    EXPECT_EQ(r.set_side, set_side);
    EXPECT_EQ(r.set_id, 0);
    EXPECT_EQ(r.rto_init_ms, rto_init_ms);
    EXPECT_EQ(r.rto_min_us, 0u);
    EXPECT_STREQ(r.cc, cc);
    EXPECT_EQ(r.dscp, dscp);
    EXPECT_EQ(r.ecn_syn, ecn_syn);
    EXPECT_EQ(r.flowlabel, POLICY_FLOWLABEL_KERNEL);
    EXPECT_EQ(r.yattl, yattl);
}

constexpr uint32_t backbone = 1, fastbone = 2;
constexpr uint8_t CS1 = 8, CS2 = 16, CS3 = 24, CS4 = 32;

TEST(AgentTables, EmbeddedDefaultIsTheExamplePolicy) {
    agent::policy_tables t = agent::build_policy_tables(embedded());
    EXPECT_EQ(t.cfg.local_dc, 1u);
    EXPECT_EQ(t.cfg.listen_dscp, POLICY_DSCP_UNSET);
    ASSERT_EQ(t.cfg.rule_count, 7u);
    ASSERT_EQ(t.rules.size(), 7u);
    // Backbone in this DC: 40 ms and YaTTL; batch CS4 with ECN on the SYN, others CS3.
    expect_rule(t.rules[0], backbone, POLICY_SCOPE_SAME_DC, POLICY_SET_REMOTE, 40, "", CS4, true,
                true);
    expect_rule(t.rules[1], backbone, POLICY_SCOPE_SAME_DC, POLICY_SET_NONE, 40, "", CS3, false,
                true);
    // Backbone across DCs: CS3, the kernel's RTO.
    expect_rule(t.rules[2], backbone, POLICY_SCOPE_ANY, POLICY_SET_NONE, 0, "", CS3, false, false);
    // Fastbone across DCs: bbr; batch CS2, others CS1. In the DC: the same classes.
    expect_rule(t.rules[3], fastbone, POLICY_SCOPE_CROSS_DC, POLICY_SET_REMOTE, 0, "bbr", CS2,
                false, false);
    expect_rule(t.rules[4], fastbone, POLICY_SCOPE_CROSS_DC, POLICY_SET_NONE, 0, "bbr", CS1, false,
                false);
    expect_rule(t.rules[5], fastbone, POLICY_SCOPE_ANY, POLICY_SET_REMOTE, 0, "", CS2, false,
                false);
    expect_rule(t.rules[6], fastbone, POLICY_SCOPE_ANY, POLICY_SET_NONE, 0, "", CS1, false, false);

    EXPECT_EQ(t.project_sets,
              (std::vector<std::pair<uint32_t, uint32_t>>{{0x1001, 1}, {0x1002, 1}, {0x2a00, 1}}));
}

TEST(AgentTables, EmbeddedDefaultDecidesAsTheExampleSays) {
    agent::policy_tables t = agent::build_policy_tables(embedded());
    // Project 0x1001 (batch) and 0x77 (not) in bits 64..95.
    EXPECT_EQ(decide(t, "2001:db8:a100:1:0:1001:0:5"), 0u);  // backbone, this DC, batch
    EXPECT_EQ(decide(t, "2001:db8:a100:1:0:77:0:5"), 1u);    // backbone, this DC
    EXPECT_EQ(decide(t, "192.0.2.10"), 1u);                  // IPv4 backbone, this DC
    EXPECT_EQ(decide(t, "2001:db8:b100:1:0:1001:0:5"), 2u);  // backbone, other DC, batch: CS3
    EXPECT_EQ(decide(t, "198.51.100.7"), 2u);                // IPv4 backbone, other DC
    EXPECT_EQ(decide(t, "2001:db8:b200:1:0:2a00:0:5"), 3u);  // fastbone, other DC, batch
    EXPECT_EQ(decide(t, "2001:db8:b200:1:0:77:0:5"), 4u);    // fastbone, other DC
    EXPECT_EQ(decide(t, "2001:db8:a200:1:0:1002:0:5"), 5u);  // fastbone, this DC, batch
    EXPECT_EQ(decide(t, "fd00:a2::1"), 6u);                  // fastbone (ULA), this DC
    EXPECT_EQ(decide(t, "2001:db8:c000::1"), std::nullopt);  // in no network: kernel defaults
    EXPECT_EQ(decide(t, "203.0.113.1"), std::nullopt);
}

TEST(AgentTables, Ipv4PrefixesAreV4Mapped) {
    agent::config c = embedded();
    agent::policy_tables t = agent::build_policy_tables(c);
    const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 0};
    bool found = false;
    for (const auto& [k, v] : t.networks) {
        if (k.prefixlen == 24 + 96 && std::memcmp(k.addr, mapped, 16) == 0) {
            found = true;
            EXPECT_EQ(v.dc, 1u);
            EXPECT_EQ(v.net_type, backbone);
            EXPECT_EQ(v.flags, 0u);
        }
    }
    EXPECT_TRUE(found);
    auto nets = agent::build_net_stat_networks(c);
    ASSERT_EQ(nets.size(), 7u);
    EXPECT_EQ(nets[3].first.prefixlen, 120u);
    EXPECT_EQ(std::memcmp(nets[3].first.addr, mapped, 16), 0);
    EXPECT_EQ(nets[3].first.to_string(), "192.0.2.0/24");
    EXPECT_EQ(nets[3].second.dc, 1u);
    EXPECT_EQ(nets[3].second.net_type, backbone);
    EXPECT_EQ(nets[0].first.to_string(), "2001:db8:a100::/40");
    EXPECT_EQ(nets[0].first.prefixlen, 40u);
}

TEST(AgentTables, FlaggedPrefixesInheritTheirNetwork) {
    agent::policy_tables t = agent::build_policy_tables(embedded());
    // The embedded example: one exclusion in dc1 backbone, a stateful IPv4 range in dc1
    // backbone and a stateful IPv6 range in no network.
    EXPECT_EQ(t.networks.size(), 10u);
    auto e = entry(t, "2001:db8:a100:ff::/64");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->dc, 1u);
    EXPECT_EQ(e->net_type, backbone);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_NO_YATTL));
    e = entry(t, "192.0.2.64/26");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->dc, 1u);
    EXPECT_EQ(e->net_type, backbone);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL));
    e = entry(t, "2001:db8:ffff::/48");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->dc, 0u);
    EXPECT_EQ(e->net_type, 0u);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL));

    // Nesting: the longest match must carry the dc of the longest enclosing network and the
    // flags of every enclosing flagged prefix.
    agent::config c = parse_ok(R"(
[network]
datacenters = ["dc1", "dc2"]
types = ["backbone", "fastbone"]
local_dc = "dc1"
stateful_services = ["2001:db8::/32", "2001:db8:1::/48"]
yattl_exclude = ["2001:db8:1:2::/64", "2001:db8:1::/48"]

[[networks]]
prefix = "2001:db8::/36"
dc = "dc1"
type = "backbone"

[[networks]]
prefix = "2001:db8:1::/48"
dc = "dc2"
type = "fastbone"
)");
    t = agent::build_policy_tables(c);
    ASSERT_EQ(t.networks.size(), 4u);
    e = entry(t, "2001:db8::/32");  // a stateful range wider than the networks in it
    EXPECT_EQ(e->dc, 0u);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL));
    e = entry(t, "2001:db8::/36");  // a network inside it keeps the flag
    EXPECT_EQ(e->dc, 1u);
    EXPECT_EQ(e->net_type, backbone);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL));
    e = entry(t, "2001:db8:1::/48");  // network, stateful and excluded at the same prefix
    EXPECT_EQ(e->dc, 2u);
    EXPECT_EQ(e->net_type, fastbone);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL | POLICY_NET_NO_YATTL));
    e = entry(t, "2001:db8:1:2::/64");
    EXPECT_EQ(e->dc, 2u);
    EXPECT_EQ(e->flags, uint32_t(POLICY_NET_FIXED_FLOWLABEL | POLICY_NET_NO_YATTL));
    // net_stat gets the declared networks only.
    EXPECT_EQ(agent::build_net_stat_networks(c).size(), 2u);
}

TEST(AgentTables, RuleFieldsAndConfig) {
    agent::config c = parse_ok(R"(
[network]
types = ["backbone"]
[project_sets]
a = [1]
b = [1, 2]
[[rules]]
project_set = "b"
project_of = "local"
rto_min = "200us"
congestion = "abcdefghijklmno"
flowlabel = "fixed"
[[rules]]
flowlabel = "rehash"
network_type = "backbone"
[tcp_tos]
listen_dscp = "AF21"
)");
    agent::policy_tables t = agent::build_policy_tables(c);
    EXPECT_EQ(t.cfg.local_dc, 0u);
    EXPECT_EQ(t.cfg.listen_dscp, 18);
    ASSERT_EQ(t.rules.size(), 2u);
    EXPECT_EQ(t.rules[0].set_side, POLICY_SET_LOCAL);
    EXPECT_EQ(t.rules[0].set_id, 1);
    EXPECT_EQ(t.rules[0].rto_min_us, 200u);
    EXPECT_EQ(t.rules[0].rto_init_ms, 0u);
    EXPECT_STREQ(t.rules[0].cc, "abcdefghijklmno");
    EXPECT_EQ(t.rules[0].flowlabel, POLICY_FLOWLABEL_FIXED);
    EXPECT_EQ(t.rules[0].dscp, POLICY_DSCP_UNSET);
    EXPECT_EQ(t.rules[1].net_type, 1u);
    EXPECT_EQ(t.rules[1].flowlabel, POLICY_FLOWLABEL_REHASH);
    EXPECT_EQ(t.project_sets, (std::vector<std::pair<uint32_t, uint32_t>>{{1, 0b11}, {2, 0b10}}));
}

TEST(AgentTables, LabelNames) {
    agent::label_names l = agent::build_label_names(embedded());
    EXPECT_EQ(l.dc, (std::vector<std::string>{"other", "dc1", "dc2"}));
    EXPECT_EQ(l.net_type, (std::vector<std::string>{"other", "backbone", "fastbone"}));
    l = agent::build_label_names(parse_ok(""));
    EXPECT_EQ(l.dc, (std::vector<std::string>{"other"}));
}

TEST(AgentTables, PinnedLabelNamesRoundTripAndConflicts) {
    const agent::label_names l = agent::build_label_names(embedded());
    const auto entries = agent::label_pin_entries(l);
    ASSERT_EQ(entries.size(), 4u);
    EXPECT_EQ(entries[0].first, (agent::k_label_kind_dc << 24) | 1);
    EXPECT_EQ(entries[3].first, (agent::k_label_kind_net_type << 24) | 2);
    const agent::label_names back = agent::labels_from_pin(entries);
    EXPECT_EQ(back.dc, l.dc);
    EXPECT_EQ(back.net_type, l.net_type);
    EXPECT_EQ(agent::label_conflict(back, l), "");

    // A 32-character name fills the value without a terminator.
    agent::label_names longest = l;
    longest.dc[2] = std::string(32, 'x');
    EXPECT_EQ(agent::labels_from_pin(agent::label_pin_entries(longest)).dc[2], longest.dc[2]);

    agent::label_names appended = l;
    appended.dc.push_back("dc3");
    EXPECT_EQ(agent::label_conflict(l, appended), "");
    agent::label_names reordered = l;
    std::swap(reordered.dc[1], reordered.dc[2]);
    EXPECT_EQ(agent::label_conflict(l, reordered), "datacenter 1 was \"dc1\", now \"dc2\"");
    agent::label_names fewer = l;
    fewer.net_type.pop_back();
    EXPECT_EQ(agent::label_conflict(l, fewer), "network type 2 was \"fastbone\", now undeclared");
}

}  // namespace
