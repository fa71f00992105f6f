// The config turned into BPF map contents (see tables.hpp).
#include "tables.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace agent {
namespace {

struct key_order {
    bool operator()(const ebpf::lpm_key& a, const ebpf::lpm_key& b) const {
        int c = std::memcmp(a.addr, b.addr, 16);
        return c != 0 ? c < 0 : a.prefixlen < b.prefixlen;
    }
};

ebpf::lpm_key truncated(const ebpf::lpm_key& k, uint32_t len) {
    ebpf::lpm_key t = k;
    t.prefixlen = len;
    return t.masked();
}

uint8_t scope_of(rule_scope s) {
    switch (s) {
        case rule_scope::same_dc:
            return POLICY_SCOPE_SAME_DC;
        case rule_scope::cross_dc:
            return POLICY_SCOPE_CROSS_DC;
        case rule_scope::any:
            break;
    }
    return POLICY_SCOPE_ANY;
}

uint8_t flowlabel_of(flowlabel_mode m) {
    switch (m) {
        case flowlabel_mode::fixed:
            return POLICY_FLOWLABEL_FIXED;
        case flowlabel_mode::rehash:
            return POLICY_FLOWLABEL_REHASH;
        case flowlabel_mode::kernel:
            break;
    }
    return POLICY_FLOWLABEL_KERNEL;
}

}  // namespace

policy_tables build_policy_tables(const config& c) {
    policy_tables t{};

    // Every prefix the trie holds, with what is declared at exactly that prefix.
    std::map<ebpf::lpm_key, const network_entry*, key_order> nets;
    std::map<ebpf::lpm_key, uint32_t, key_order> flags;
    for (const auto& n : c.networks) {
        nets[n.prefix] = &n;
    }
    for (const auto& p : c.yattl_exclude) {
        flags[p] |= POLICY_NET_NO_YATTL;
    }
    for (const auto& p : c.stateful_services) {
        flags[p] |= POLICY_NET_FIXED_FLOWLABEL;
    }
    std::set<ebpf::lpm_key, key_order> entries;
    std::set<uint32_t> net_lens, flag_lens;
    for (const auto& [k, n] : nets) {
        entries.insert(k);
        net_lens.insert(k.prefixlen);
    }
    for (const auto& [k, f] : flags) {
        entries.insert(k);
        flag_lens.insert(k.prefixlen);
    }
    // A prefix's answer: the longest network containing it, the flags of all flagged prefixes
    // containing it. Probing each length in use keeps this n * lengths, not n^2.
    for (const auto& k : entries) {
        policy_key key{};
        key.prefixlen = k.prefixlen;
        std::memcpy(key.addr, k.addr, 16);
        policy_network v{};
        for (auto len = net_lens.rbegin(); len != net_lens.rend(); ++len) {
            if (*len > k.prefixlen) {
                continue;
            }
            auto it = nets.find(truncated(k, *len));
            if (it != nets.end()) {
                v.dc = it->second->dc;
                v.net_type = it->second->net_type;
                break;
            }
        }
        for (uint32_t len : flag_lens) {
            if (len > k.prefixlen) {
                break;
            }
            auto it = flags.find(truncated(k, len));
            if (it != flags.end()) {
                v.flags |= it->second;
            }
        }
        t.networks.emplace_back(key, v);
    }

    std::map<uint32_t, uint32_t> sets;
    for (size_t i = 0; i < c.project_sets.size() && i < 32; ++i) {
        for (uint32_t id : c.project_sets[i].projects) {
            sets[id] |= 1u << i;
        }
    }
    t.project_sets.assign(sets.begin(), sets.end());

    for (const auto& r : c.rules) {
        policy_rule p{};
        p.net_type = r.net_type;
        p.scope = scope_of(r.scope);
        if (r.project_set) {
            p.set_side = r.project_of == project_side::local ? POLICY_SET_LOCAL : POLICY_SET_REMOTE;
            p.set_id = uint8_t(*r.project_set);
        } else {
            p.set_side = POLICY_SET_NONE;
        }
        p.rto_init_ms = r.rto_init_ms;
        p.rto_min_us = r.rto_min_us;
        std::memcpy(p.cc, r.congestion.data(), std::min(r.congestion.size(), sizeof p.cc - 1));
        p.dscp = r.dscp ? *r.dscp : POLICY_DSCP_UNSET;
        p.ecn_syn = r.ecn_syn;
        p.flowlabel = flowlabel_of(r.flowlabel);
        p.yattl = r.yattl;
        t.rules.push_back(p);
    }

    t.cfg.local_dc = c.local_dc;
    t.cfg.rule_count = uint32_t(t.rules.size());
    t.cfg.listen_dscp = c.listen_dscp ? *c.listen_dscp : POLICY_DSCP_UNSET;
    return t;
}

std::vector<std::pair<ebpf::lpm_key, net_stat_network>> build_net_stat_networks(const config& c) {
    std::vector<std::pair<ebpf::lpm_key, net_stat_network>> out;
    out.reserve(c.networks.size());
    for (const auto& n : c.networks) {
        out.push_back({n.prefix, net_stat_network{n.dc, n.net_type}});
    }
    return out;
}

label_names build_label_names(const config& c) {
    label_names l;
    l.dc.push_back("other");
    l.dc.insert(l.dc.end(), c.datacenters.begin(), c.datacenters.end());
    l.net_type.push_back("other");
    l.net_type.insert(l.net_type.end(), c.net_types.begin(), c.net_types.end());
    return l;
}

std::vector<std::pair<uint32_t, label_pin_value>> label_pin_entries(const label_names& l) {
    std::vector<std::pair<uint32_t, label_pin_value>> out;
    auto add = [&](uint32_t kind, const std::vector<std::string>& names) {
        for (uint32_t id = 1; id < names.size(); ++id) {
            label_pin_value v{};
            std::memcpy(v.name, names[id].data(), std::min(names[id].size(), sizeof v.name));
            out.push_back({(kind << 24) | id, v});
        }
    };
    add(k_label_kind_dc, l.dc);
    add(k_label_kind_net_type, l.net_type);
    return out;
}

label_names labels_from_pin(const std::vector<std::pair<uint32_t, label_pin_value>>& entries) {
    label_names l;
    l.dc.push_back("other");
    l.net_type.push_back("other");
    for (const auto& [key, v] : entries) {
        const uint32_t kind = key >> 24, id = key & 0xffffff;
        std::vector<std::string>* names = kind == k_label_kind_dc         ? &l.dc
                                          : kind == k_label_kind_net_type ? &l.net_type
                                                                          : nullptr;
        if (!names || id == 0) {
            continue;
        }
        if (names->size() <= id) {
            names->resize(id + 1);
        }
        (*names)[id].assign(v.name, strnlen(v.name, sizeof v.name));
    }
    return l;
}

std::string label_conflict(const label_names& pinned, const label_names& now) {
    auto check = [](const char* what, const std::vector<std::string>& a,
                    const std::vector<std::string>& b) -> std::string {
        for (size_t id = 1; id < a.size(); ++id) {
            if (a[id].empty()) {
                continue;
            }
            const std::string was = "\"" + a[id] + "\"";
            if (id >= b.size()) {
                return std::string(what) + " " + std::to_string(id) + " was " + was +
                       ", now undeclared";
            }
            if (a[id] != b[id]) {
                return std::string(what) + " " + std::to_string(id) + " was " + was + ", now \"" +
                       b[id] + "\"";
            }
        }
        return {};
    };
    std::string r = check("datacenter", pinned.dc, now.dc);
    return r.empty() ? check("network type", pinned.net_type, now.net_type) : r;
}

}  // namespace agent
