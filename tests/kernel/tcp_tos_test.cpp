// tcp_tos (sock_ops) on the running kernel, seen on the wire: a child process in the test
// cgroup, in a network namespace of its own, connects over loopback to documentation and ULA
// addresses it puts on lo, and captures its own packets with an AF_PACKET socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../bpf/include/policy.h"
#include "capture.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

using test::capture;
using test::run_in_cgroup;
using test::seen;
using test::test_cgroup;

constexpr uint8_t cs(int n) {
    return uint8_t(n * 8);
}  // class selector n as a DSCP

// The example policy from the issue: backbone and fastbone networks, the "batch" project set.
constexpr uint32_t backbone = 1, fastbone = 2, batch_set = 0;

void fill_policy(collection& c) {
    auto nets = lpm_trie<policy_network>::view(*c.map("networks"));
    ASSERT_OK(nets);
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:1::/32"), {1, backbone, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:2::/32"), {2, fastbone, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("192.0.2.0/24"), {1, backbone, 0}));
    auto sets = hash<uint32_t, uint32_t>::view(*c.map("project_sets"));
    ASSERT_OK(sets);
    ASSERT_OK(sets->update(0x4496, 1u << batch_set));
    auto rules = array<policy_rule>::view(*c.map("rules"));
    ASSERT_OK(rules);
    auto rule = [](uint32_t type, uint8_t scope, uint8_t side, uint8_t dscp, uint8_t ecn) {
        policy_rule r{};
        r.net_type = type;
        r.scope = scope;
        r.set_side = side;
        r.set_id = batch_set;
        r.dscp = dscp;
        r.ecn_syn = ecn;
        return r;
    };
    const policy_rule list[] = {
        rule(fastbone, POLICY_SCOPE_ANY, POLICY_SET_REMOTE, cs(2), 0),
        rule(fastbone, POLICY_SCOPE_ANY, POLICY_SET_NONE, cs(1), 0),
        rule(backbone, POLICY_SCOPE_SAME_DC, POLICY_SET_REMOTE, cs(4), 1),
        rule(backbone, POLICY_SCOPE_CROSS_DC, POLICY_SET_REMOTE, cs(3), 0),
        rule(backbone, POLICY_SCOPE_ANY, POLICY_SET_NONE, cs(3), 0),
    };
    for (uint32_t i = 0; i < std::size(list); ++i) {
        ASSERT_OK(rules->update(i, list[i]));
    }
    auto cfg = array<policy_config>::view(*c.map("config"));
    ASSERT_OK(cfg);
    policy_config pc{};
    pc.local_dc = 1;
    pc.rule_count = uint32_t(std::size(list));
    pc.listen_dscp = cs(1);
    ASSERT_OK(cfg->update(0, pc));
}

// Connects to [addr]:port (listening on it first), sends one byte each way, closes; returns the
// packets seen. `family` is the client socket's (AF_INET6 with a v4-mapped address for dual
// stack).
std::vector<seen> exchange(capture& cap, int family, const char* addr, uint16_t port) {
    sockaddr_storage ss{};
    socklen_t sl = 0;
    int lfam = family;
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        ::inet_pton(AF_INET, addr, &a->sin_addr);
        sl = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        ::inet_pton(AF_INET6, addr, &a->sin6_addr);
        sl = sizeof *a;
        if (std::strncmp(addr, "::ffff:", 7) == 0) {
            lfam = AF_INET6;  // a dual-stack listener accepts the v4-mapped connection
        }
    }
    int l = ::socket(lfam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage bind_addr = ss;
    if (lfam == AF_INET6 && family == AF_INET6 && std::strncmp(addr, "::ffff:", 7) == 0) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&bind_addr);
        a->sin6_addr = in6addr_any;
    }
    if (::bind(l, reinterpret_cast<sockaddr*>(&bind_addr), sl) != 0 || ::listen(l, 4) != 0) {
        std::perror("listen");
        return {};
    }
    int c = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(c, reinterpret_cast<sockaddr*>(&ss), sl) != 0) {
        std::perror("connect");
        return {};
    }
    int a = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    char b = 'x';
    (void)!::write(c, &b, 1);
    (void)!::read(a, &b, 1);
    (void)!::write(a, &b, 1);
    (void)!::read(c, &b, 1);
    ::usleep(20000);
    ::close(a);
    ::close(c);
    ::close(l);
    return cap.drain(port);
}

// Checks the first SYN, the SYN-ACK and the server's data packet of one exchange.
int check(const char* what, const std::vector<seen>& pk, uint16_t port, bool ipv4,
          uint8_t syn_class, uint8_t synack_class, uint8_t server_data_class, bool ecn_syn) {
    const seen *syn = nullptr, *synack = nullptr, *sdata = nullptr;
    for (const auto& p : pk) {
        if ((p.flags & (TH_SYN | TH_ACK)) == TH_SYN && !syn) {
            syn = &p;
        } else if ((p.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK) && !synack) {
            synack = &p;
        } else if (p.sport == port && p.payload > 0 && !sdata) {
            sdata = &p;
        }
    }
    auto fail = [&](const char* why, int got, int want) {
        std::fprintf(stderr, "tcp_tos %s: %s: 0x%x, expected 0x%x\n", what, why, got, want);
        return 1;
    };
    if (!syn || !synack || !sdata) {
        std::fprintf(stderr, "tcp_tos %s: missing packets (%zu seen)\n", what, pk.size());
        return 1;
    }
    if (syn->ipv4 != ipv4) {
        return fail("address family of the SYN (1 = IPv4)", syn->ipv4, ipv4);
    }
    const uint8_t ect0 = ecn_syn ? 0x02 : 0;
    if (syn->tclass != uint8_t((syn_class << 2) | ect0)) {
        return fail("SYN class", syn->tclass, (syn_class << 2) | ect0);
    }
    const uint8_t ece_cwr = 0x40 | 0x80;  // ECE | CWR
    if (bool(syn->flags & ece_cwr) != ecn_syn) {
        return fail("SYN ECE|CWR", syn->flags & ece_cwr, ecn_syn ? ece_cwr : 0);
    }
    if ((synack->tclass & 0xfc) != uint8_t(synack_class << 2)) {
        return fail("SYN-ACK class (the listener's default)", synack->tclass, synack_class << 2);
    }
    if ((sdata->tclass & 0xfc) != uint8_t(server_data_class << 2)) {
        return fail("server data class (the accepted socket's)", sdata->tclass,
                    server_data_class << 2);
    }
    return 0;
}

class TcpTosTest : public test::KernelTest {};

TEST_F(TcpTosTest, ClassesFollowThePolicyOnTheWire) {
    test_cgroup cg;
    auto spec = collection_spec::open(EBPF_AGENT_OBJECT_TCP_TOS);
    ASSERT_OK(spec);
    auto c = collection::load(*spec);
    ASSERT_OK(c);
    ASSERT_NO_FATAL_FAILURE(fill_policy(*c));
    auto link = cgroup_link::attach(cg.fd(), *c->program("tcp_tos"), BPF_CGROUP_SOCK_OPS);
    ASSERT_OK(link);

    auto scenario = [] {
        if (::unshare(CLONE_NEWNET) != 0) {
            std::perror("unshare");
            return 90;
        }
        // Addresses on lo in this private namespace: the project id is the third 32-bit word.
        if (std::system("ip link set lo up && "
                        "ip -6 addr add fd00:1::10d:5ae7:0:1/128 dev lo nodad && "
                        "ip -6 addr add fd00:1::4496:0:2/128 dev lo nodad && "
                        "ip -6 addr add fd00:1::7777:0:3/128 dev lo nodad && "
                        "ip -6 addr add fd00:2::4496:0:4/128 dev lo nodad && "
                        "ip -6 addr add fd00:2::7777:0:5/128 dev lo nodad && "
                        "ip addr add 192.0.2.1/32 dev lo") != 0) {
            return 91;
        }
        capture cap("lo");
        if (!cap.ok()) {
            std::perror("AF_PACKET");
            return 92;
        }
        int bad = 0;
        // Backbone, same DC, peer project in "batch": CS4 and ECN on the SYN.
        bad += check("backbone batch", exchange(cap, AF_INET6, "fd00:1::4496:0:2", 7001), 7001,
                     false, cs(4), cs(1), cs(4), true);
        // Backbone, peer project not in a set: CS3, no ECN.
        bad += check("backbone other", exchange(cap, AF_INET6, "fd00:1::7777:0:3", 7002), 7002,
                     false, cs(3), cs(1), cs(3), false);
        // Fastbone (another DC), batch: CS2; other: CS1.
        bad += check("fastbone batch", exchange(cap, AF_INET6, "fd00:2::4496:0:4", 7003), 7003,
                     false, cs(2), cs(1), cs(2), false);
        bad += check("fastbone other", exchange(cap, AF_INET6, "fd00:2::7777:0:5", 7004), 7004,
                     false, cs(1), cs(1), cs(1), false);
        // IPv4 and a dual-stack socket to a v4-mapped address: IP_TOS on IPv4 packets.
        bad += check("ipv4", exchange(cap, AF_INET, "192.0.2.1", 7005), 7005, true, cs(3), cs(1),
                     cs(3), false);
        bad += check("v4-mapped", exchange(cap, AF_INET6, "::ffff:192.0.2.1", 7006), 7006, true,
                     cs(3), cs(1), cs(3), false);
        return bad;
    };
    EXPECT_EQ(run_in_cgroup(cg, scenario), 0) << "see the lines above for each mismatch";
}

TEST_F(TcpTosTest, WithoutTheProgramNothingIsColoured) {
    test_cgroup cg;
    auto scenario = [] {
        if (::unshare(CLONE_NEWNET) != 0 ||
            std::system("ip link set lo up && ip -6 addr add fd00:1::4496:0:2/128 dev lo nodad") !=
                0) {
            return 91;
        }
        capture cap("lo");
        auto pk = exchange(cap, AF_INET6, "fd00:1::4496:0:2", 7001);
        // The same check as above must fail: classes stay 0.
        return check("no program", pk, 7001, false, cs(4), cs(1), cs(4), true) == 1 ? 0 : 1;
    };
    EXPECT_EQ(run_in_cgroup(cg, scenario), 0);
}

}  // namespace
}  // namespace ebpf
