// tcp_rto (sock_ops) on the running kernel, seen on the wire and in TCP_INFO. A child process
// in the test cgroup makes a network namespace of its own: a veth pair whose far end never
// answers (the peers are static neighbours that do not exist), so SYNs and SYN-ACKs are
// retransmitted, or lo with a peer in a cgroup of its own that drops what it receives once the
// connection is established, so data is retransmitted. An AF_PACKET capture records class,
// flow label and timing of each packet (tcp_test_net.hpp).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "../../bpf/include/policy.h"
#include "../../bpf/include/tcp_rto.h"
#include "capture.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"
#include "tcp_test_net.hpp"

namespace ebpf {
namespace {

using test::attempt;
using test::capture;
using test::check_yattl;
using test::make_network;
using test::report;
using test::run_in_cgroup;
using test::seen;
using test::syns_to;
using test::test_cgroup;

constexpr uint32_t backbone = 1, service = 2;

// networks: fd00:1::/32 and 192.0.2.0/24 in this DC (1), fd00:3::/32 in another (2); a
// stateful-service prefix (fixed label) and an exclusion prefix (no YaTTL) inside DC 1;
// fd00:2::/32, a network type whose rule fixes the label.
void fill_policy(collection& c, const char* cc) {
    auto nets = lpm_trie<policy_network>::view(*c.map("networks"));
    ASSERT_OK(nets);
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:1::/32"), {1, backbone, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:2::/32"), {1, service, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:1::5:0:0/96"),
                           {1, backbone, POLICY_NET_FIXED_FLOWLABEL}));
    ASSERT_OK(
        nets->update(*lpm_key::parse("fd00:1::6:0:0/96"), {1, backbone, POLICY_NET_NO_YATTL}));
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:3::/32"), {2, backbone, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("192.0.2.0/24"), {1, backbone, 0}));
    auto rules = array<policy_rule>::view(*c.map("rules"));
    ASSERT_OK(rules);
    // Intra-DC backbone: 40 ms initial RTO, YaTTL, 50 ms minimum RTO, the given congestion
    // control. Cross-DC: the kernel's defaults.
    policy_rule intra{};
    intra.net_type = backbone;
    intra.scope = POLICY_SCOPE_SAME_DC;
    intra.rto_init_ms = 40;
    intra.rto_min_us = 50000;
    std::strncpy(intra.cc, cc, sizeof intra.cc - 1);
    intra.dscp = POLICY_DSCP_UNSET;
    intra.flowlabel = POLICY_FLOWLABEL_REHASH;
    intra.yattl = 1;
    policy_rule cross{};
    cross.net_type = backbone;
    cross.dscp = POLICY_DSCP_UNSET;
    // The service network: one flow label per connection, 50 ms minimum RTO.
    policy_rule fixed{};
    fixed.net_type = service;
    fixed.rto_min_us = 50000;
    fixed.dscp = POLICY_DSCP_UNSET;
    fixed.flowlabel = POLICY_FLOWLABEL_FIXED;
    ASSERT_OK(rules->update(0, intra));
    ASSERT_OK(rules->update(1, cross));
    ASSERT_OK(rules->update(2, fixed));
    auto cfg = array<policy_config>::view(*c.map("config"));
    ASSERT_OK(cfg);
    policy_config pc{};
    pc.local_dc = 1;
    pc.rule_count = 3;
    pc.listen_dscp = POLICY_DSCP_UNSET;
    ASSERT_OK(cfg->update(0, pc));
}

class TcpRtoTest : public test::KernelTest {
  protected:
    void load(const char* cc) {
        auto spec = collection_spec::open(EBPF_AGENT_OBJECT_TCP_RTO);
        ASSERT_OK(spec);
        auto c = collection::load(*spec);
        ASSERT_OK(c);
        coll_ = std::move(*c);
        ASSERT_NO_FATAL_FAILURE(fill_policy(coll_, cc));
        auto l = cgroup_link::attach(cg_.fd(), *coll_.program("tcp_rto"), BPF_CGROUP_SOCK_OPS);
        ASSERT_OK(l);
        link_ = std::move(*l);
    }
    uint64_t stat(uint32_t which) {
        auto v = percpu_array<uint64_t>::view(*coll_.map("tcp_rto_stats"));
        auto s = v ? v->sum(which) : result<std::optional<uint64_t>>(v.error());
        return s && *s ? **s : ~0ull;
    }
    void TearDown() override {
        link_ = cgroup_link();
        coll_ = collection();
        test::KernelTest::TearDown();
    }

    test_cgroup cg_;
    collection coll_;
    cgroup_link link_;
};

TEST_F(TcpRtoTest, InitialRtoYattlAndFlowLabelsOnTheWire) {
    ASSERT_NO_FATAL_FAILURE(load("bbr"));
    auto scenario = [] {
        if (!make_network()) {
            return 90;
        }
        capture cap("v0");
        if (!cap.ok()) {
            return 91;
        }
        int bad = 0;
        // Intra-DC: 40 ms (TCP_INFO says so before any retransmit; `ss -ti` shows rto:40),
        // SYNs 40 ms apart instead of 1 s, YaTTL on the second SYN, new labels after.
        attempt intra = syns_to(cap, AF_INET6, "fd00:1::7777:0:9", 81, 500);
        if (intra.rto_us != 40000) {
            bad += report("intra-DC", "TCP_INFO rto (us)", intra.rto_us, 40000);
        }
        if (intra.syns.size() >= 2) {
            const double gap = intra.syns[1].ms - intra.syns[0].ms;
            if (gap < 5 || gap > 400) {  // generous: the default is 1000
                bad += report("intra-DC", "ms between SYN 1 and 2", gap, 40);
            }
        }
        bad += check_yattl("intra-DC", intra, true, false, false);
        // A stateful-service address: one label for every SYN.
        bad += check_yattl("stateful service", syns_to(cap, AF_INET6, "fd00:1::5:0:9", 82, 500),
                           true, true, false);
        // An exclusion prefix: no YaTTL, labels change from the second SYN on.
        bad += check_yattl("exclusion", syns_to(cap, AF_INET6, "fd00:1::6:0:9", 83, 500), false,
                           false, false);
        // IPv4: the same RTO, YaTTL through IP_TOS.
        attempt v4 = syns_to(cap, AF_INET, "192.0.2.9", 84, 500);
        if (v4.rto_us != 40000) {
            bad += report("IPv4", "TCP_INFO rto (us)", v4.rto_us, 40000);
        }
        bad += check_yattl("IPv4", v4, true, false, true);
        // A dual-stack socket to a v4-mapped address: IPv4 on the wire, the same policy.
        attempt mapped = syns_to(cap, AF_INET6, "::ffff:192.0.2.9", 86, 500);
        if (mapped.rto_us != 40000) {
            bad += report("v4-mapped", "TCP_INFO rto (us)", mapped.rto_us, 40000);
        }
        bad += check_yattl("v4-mapped", mapped, true, false, true);
        // Cross-DC: the kernel's 1 s; one SYN in 500 ms.
        attempt cross = syns_to(cap, AF_INET6, "fd00:3::9", 85, 500);
        if (cross.rto_us != 1000000) {
            bad += report("cross-DC", "TCP_INFO rto (us)", cross.rto_us, 1000000);
        }
        if (cross.syns.size() != 1) {
            bad += report("cross-DC", "SYNs in 500 ms", double(cross.syns.size()), 1);
        }
        return bad;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
    EXPECT_EQ(stat(TCP_RTO_STAT_YATTL), 4u)
        << "intra-DC, stateful service, IPv4 and v4-mapped were marked";
    EXPECT_EQ(stat(TCP_RTO_STAT_LABEL_FAILED), 0u);
}

// Once established (over the namespace's own addresses), the minimum RTO and the congestion
// control of the rule apply; an algorithm the kernel lacks is counted, not silent.
int established(const char* want_cc, uint32_t max_rto_us) {
    if (!make_network()) {
        return 90;
    }
    int l = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(86);
    ::inet_pton(AF_INET6, "fd00:1::10d:5ae7:0:1", &a.sin6_addr);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0) {
        return 91;
    }
    int c = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        return 92;
    }
    int s = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    char buf[64] = {};
    for (int i = 0; i < 20; ++i) {  // a few round trips for an RTT estimate
        (void)!::write(c, buf, 1);
        (void)!::read(s, buf, 1);
        (void)!::write(s, buf, 1);
        (void)!::read(c, buf, 1);
    }
    int bad = 0;
    std::string want = want_cc;
    if (want.empty()) {
        // The namespace's default algorithm.
        char def[32] = {};
        FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_congestion_control", "re");
        if (f) {
            if (std::fscanf(f, "%31s", def) != 1) {
                def[0] = '\0';
            }
            std::fclose(f);
        }
        want = def;
    }
    char cc[16] = {};
    socklen_t len = sizeof cc;
    ::getsockopt(c, SOL_TCP, TCP_CONGESTION, cc, &len);
    if (std::string(cc) != want) {
        std::fprintf(stderr, "tcp_rto: congestion control %s, expected %s\n", cc, want.c_str());
        ++bad;
    }
    tcp_info info{};
    socklen_t il = sizeof info;
    ::getsockopt(c, SOL_TCP, TCP_INFO, &info, &il);
    if (info.tcpi_rto > max_rto_us) {
        bad += report("established", "TCP_INFO rto (us)", info.tcpi_rto, max_rto_us);
    }
    ::close(s);
    ::close(c);
    ::close(l);
    return bad;
}

TEST_F(TcpRtoTest, MinimumRtoAndCongestionControlOnceEstablished) {
    // reno: available everywhere and never the default.
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    // Loopback RTTs are tiny: the RTO sits at the minimum, 50 ms here instead of 200 ms.
    EXPECT_EQ(run_in_cgroup(cg_, [] { return established("reno", 100000); }), 0);
    EXPECT_EQ(stat(TCP_RTO_STAT_CC_FAILED), 0u);
    EXPECT_EQ(stat(TCP_RTO_STAT_RTO_MIN_FAILED), 0u);
}

TEST_F(TcpRtoTest, AnUnavailableCongestionControlIsCounted) {
    ASSERT_NO_FATAL_FAILURE(load("no_such_cc"));
    // The connection keeps the namespace's default algorithm.
    EXPECT_EQ(run_in_cgroup(cg_, [] { return established("", 100000); }), 0);
    EXPECT_EQ(stat(TCP_RTO_STAT_CC_FAILED), 2u) << "both ends of the connection";
}

// Programs in a chain share the TIMEOUT_INIT reply, and the root's runs last: tcp_rto must not
// write it on a miss, or it would clobber an inner cgroup's answer.
TEST_F(TcpRtoTest, AMissDoesNotClobberAnotherProgramsAnswer) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    const std::string inner = cg_.path() + "/inner";
    ASSERT_EQ(::mkdir(inner.c_str(), 0755), 0);
    {
        auto inner_fd = open_cgroup(inner);
        ASSERT_OK(inner_fd);
        // The inner program answers every TIMEOUT_INIT with 50 jiffies.
        using namespace insn;
        const bpf_insn code[] = {
            ldx_mem(BPF_W, r2, r1, 0),  // op
            jmp_imm(BPF_JNE, r2, BPF_SOCK_OPS_TIMEOUT_INIT, 2),
            mov64_imm(r2, 50),
            stx_mem(BPF_W, r1, r2, 4),  // reply
            mov64_imm(r0, 1),
            exit(),
        };
        auto p = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_rto50"});
        ASSERT_OK(p);
        auto l = cgroup_link::attach(inner_fd->get(), *p, BPF_CGROUP_SOCK_OPS);
        ASSERT_OK(l);
        auto kernel_hz = read_kconfig();
        ASSERT_OK(kernel_hz);
        const uint32_t want_us = 50 * 1000000u / std::stoul((*kernel_hz)["CONFIG_HZ"]);
        auto scenario = [want_us] {
            if (!make_network()) {
                return 90;
            }
            capture cap("v0");
            int bad = 0;
            // Cross-DC: tcp_rto has no RTO for it and stays silent: the inner answer holds.
            attempt cross = syns_to(cap, AF_INET6, "fd00:3::9", 85, 50);
            if (cross.rto_us != want_us) {
                bad += report("chain, cross-DC", "TCP_INFO rto (us)", cross.rto_us, want_us);
            }
            // Intra-DC: tcp_rto has the last word (the root-most program runs last).
            attempt intra = syns_to(cap, AF_INET6, "fd00:1::7777:0:9", 81, 50);
            if (intra.rto_us != 40000) {
                bad += report("chain, intra-DC", "TCP_INFO rto (us)", intra.rto_us, 40000);
            }
            return bad;
        };
        EXPECT_EQ(run_in_cgroup(inner, scenario), 0);
    }
    EXPECT_EQ(::rmdir(inner.c_str()), 0);
}

// The passive side: the listener's SYN-ACKs are retransmitted at the peer's initial RTO
// (TIMEOUT_INIT on the request socket), 40 ms intra-DC instead of the kernel's 1 s.
TEST_F(TcpRtoTest, SynAckRetransmitsFollowThePassiveInitialRto) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [] {
        if (!make_network()) {
            return 90;
        }
        int l = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_in6 a = test::ipv6_address("fd00:1::10d:5ae7:0:1", 90);
        if (::bind(l, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(l, 4) != 0) {
            return 91;
        }
        capture cap("v0");
        const auto synacks =
            test::synacks_for(cap, "fd00:1::7777:0:9", "fd00:1::10d:5ae7:0:1", 40000, 90, 500);
        ::close(l);
        if (synacks.size() < 2) {
            return report("passive", "SYN-ACKs in 500 ms", double(synacks.size()), 2);
        }
        const double gap = synacks[1].ms - synacks[0].ms;
        if (gap < 5 || gap > 400) {  // generous: the default is 1000
            return report("passive", "ms between SYN-ACK 1 and 2", gap, 40);
        }
        return 0;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0);
}

// On a host where flow labels are opt-in (net.ipv6.auto_flowlabels=2), the program turns them
// on for the sockets it handles: the SYNs carry a non-zero label, and without it they carry 0.
int first_syn_label(bool expect_label) {
    if (!make_network() || std::system("sysctl -q -w net.ipv6.auto_flowlabels=2 >/dev/null") != 0) {
        return 90;
    }
    capture cap("v0");
    attempt a = syns_to(cap, AF_INET6, "fd00:1::7777:0:9", 81, 100);
    if (a.syns.empty()) {
        return report("opt-in labels", "SYNs seen", 0, 1);
    }
    if ((a.syns[0].flowlabel != 0) != expect_label) {
        return report("opt-in labels", "flow label of the first SYN", a.syns[0].flowlabel,
                      expect_label ? -1 : 0);
    }
    return 0;
}

TEST_F(TcpRtoTest, FlowLabelsAreTurnedOnWhereTheHostLeavesThemOff) {
    EXPECT_EQ(run_in_cgroup(cg_, [] { return first_syn_label(false); }), 0)
        << "without the program, opt-in means no label";
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    EXPECT_EQ(run_in_cgroup(cg_, [] { return first_syn_label(true); }), 0);
}

TEST_F(TcpRtoTest, WithoutTheProgramTheKernelDefaultsHold) {
    auto scenario = [] {
        if (!make_network()) {
            return 90;
        }
        capture cap("v0");
        attempt a = syns_to(cap, AF_INET6, "fd00:1::7777:0:9", 81, 500);
        return a.rto_us == 1000000 && a.syns.size() == 1 ? 0 : 1;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0);
}

// Data retransmits over lo: the side under test is a socket of the test cgroup (tcp_rto runs
// for it); its peer's sockets are in a cgroup of their own, whose ingress drops packets on
// request (test::drop_program).
struct data_peer {
    std::string tested;  // the test cgroup's path
    std::string peer;    // the peer cgroup's path
    const map* drops;    // how many packets the peer is still to drop
};

bool peer_drops(const data_peer& env, uint64_t n) {
    auto a = array<uint64_t>::view(*env.drops);
    return a && a->update(0, n);
}

struct retransmits {
    seen handshake{};        // the last SYN (active) or SYN-ACK (passive) of the side under test
    std::vector<seen> data;  // its 100-byte segment: the original, then each retransmit
};

// The side under test at `local` connects to `remote` (active) or accepts from it (passive),
// the peer losing its first `lost` packets; then, with the peer deaf, it sends 100 bytes.
// Fills `out` with what it sent, the data for `ms` after the write.
int data_retransmits(capture& cap, const data_peer& env, bool passive, const char* local,
                     const char* remote, uint16_t port, int lost, int ms, retransmits& out) {
    const sockaddr_in6 srv = test::ipv6_address(passive ? local : remote, port);
    const sockaddr_in6 cli = test::ipv6_address(passive ? remote : local, 0);
    // Sockets keep the cgroup of the moment they are made: the listener's and the client's
    // cgroups are chosen here, and the accepted socket is the listener's.
    if (!test::join_cgroup(passive ? env.tested : env.peer)) {
        return 80;
    }
    int l = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::bind(l, reinterpret_cast<const sockaddr*>(&srv), sizeof srv) != 0 ||
        ::listen(l, 1) != 0) {
        std::perror("listen");
        return 81;
    }
    if (!test::join_cgroup(passive ? env.peer : env.tested)) {
        return 82;
    }
    int c = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!test::join_cgroup(env.tested) || !peer_drops(env, uint64_t(lost)) ||
        ::bind(c, reinterpret_cast<const sockaddr*>(&cli), sizeof cli) != 0 ||
        ::connect(c, reinterpret_cast<const sockaddr*>(&srv), sizeof srv) != 0) {
        std::perror("connect");
        return 83;
    }
    int a = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    char buf[100] = {};
    for (int i = 0; i < 5; ++i) {  // RTT samples: the RTO settles at the minimum
        if (::write(c, buf, 1) != 1 || ::read(a, buf, 1) != 1 || ::write(a, buf, 1) != 1 ||
            ::read(c, buf, 1) != 1) {
            return 84;
        }
    }
    auto mine = [&](const seen& p) {
        return passive ? p.sport == port : p.dport == port;
    };
    const uint8_t handshake = passive ? (TH_SYN | TH_ACK) : TH_SYN;
    for (const auto& p : cap.drain(port)) {
        if (mine(p) && (p.flags & (TH_SYN | TH_ACK)) == handshake) {
            out.handshake = p;
        }
    }
    if (!peer_drops(env, ~0ull) ||
        ::write(passive ? a : c, buf, sizeof buf) != ssize_t(sizeof buf)) {
        return 85;
    }
    for (const auto& p : cap.collect(port, ms)) {
        if (mine(p) && p.payload == sizeof buf) {
            out.data.push_back(p);
        }
    }
    const bool quiet = peer_drops(env, 0);
    test::close_now(a);
    test::close_now(c);
    test::close_now(l);
    return quiet ? 0 : 86;
}

// Prints what the side under test sent, for a failure.
void describe(const char* what, const retransmits& x) {
    std::fprintf(stderr, "%s: handshake class 0x%02x label 0x%05x\n", what, x.handshake.tclass,
                 x.handshake.flowlabel);
    for (const auto& p : x.data) {
        std::fprintf(stderr, "  data +%6.1f ms class 0x%02x label 0x%05x\n", p.ms - x.data[0].ms,
                     p.tclass, p.flowlabel);
    }
}

// The data's labels: the original has the handshake's (no RTO in between); fixed: so has every
// retransmit; rehash: the RTOs bring at least two new ones (a tail loss probe, the first
// retransmit, keeps the label: it is not an RTO). 1 s holds the original, the probe and RTOs
// at about 160, 370 and 790 ms (50 ms minimum RTO, doubling).
int check_data_labels(const char* what, const retransmits& x, bool fixed) {
    int bad = 0;
    if (x.handshake.flowlabel == 0) {
        bad = report(what, "flow label of the handshake (must not be 0)", 0, 1);
    } else if (x.data.size() < 4) {
        bad = report(what, "data segments in 1 s", double(x.data.size()), 4);
    } else if (x.data[0].flowlabel != x.handshake.flowlabel) {
        bad = report(what, "flow label of the data", x.data[0].flowlabel, x.handshake.flowlabel);
    } else if (fixed) {
        for (const auto& p : x.data) {
            if (p.flowlabel != x.handshake.flowlabel) {
                bad = report(what, "flow label of a retransmit (fixed)", p.flowlabel,
                             x.handshake.flowlabel);
                break;
            }
        }
    } else {
        std::set<uint32_t> labels;
        for (const auto& p : x.data) {
            labels.insert(p.flowlabel);
        }
        if (labels.size() < 3) {
            bad =
                report(what, "distinct flow labels of the data (rehash)", double(labels.size()), 3);
        }
    }
    if (bad) {
        describe(what, x);
    }
    return bad;
}

class TcpRtoDataTest : public TcpRtoTest {
  protected:
    void SetUp() override {
        TcpRtoTest::SetUp();
        auto m = map::create({.type = BPF_MAP_TYPE_ARRAY,
                              .key_size = 4,
                              .value_size = 8,
                              .max_entries = 1,
                              .name = "t_drops"});
        ASSERT_OK(m);
        drops_ = std::move(*m);
        const auto code = test::drop_program(drops_.fd());
        auto p = program::load({.type = BPF_PROG_TYPE_CGROUP_SKB,
                                .insns = code,
                                .name = "t_drop",
                                .expected_attach_type = BPF_CGROUP_INET_INGRESS});
        ASSERT_OK(p);
        auto l = cgroup_link::attach(peer_.fd(), *p, BPF_CGROUP_INET_INGRESS);
        ASSERT_OK(l);
        drop_link_ = std::move(*l);
    }
    void TearDown() override {
        drop_link_ = cgroup_link();
        drops_ = map();
        TcpRtoTest::TearDown();
    }
    data_peer env() const { return {cg_.path(), peer_.path(), &drops_}; }

    test_cgroup peer_;
    map drops_;
    cgroup_link drop_link_;
};

// The side under test's address, and its peers: intra-DC backbone (rehash, YaTTL), a
// stateful-service prefix inside it (fixed by the network's flag), the service network (fixed
// by its rule).
constexpr const char* local_address = "fd00:1::10d:5ae7:0:1";
constexpr const char* rehash_peer = "fd00:1::7777:0:9";
constexpr const char* flagged_peer = "fd00:1::5:0:9";
constexpr const char* service_peer = "fd00:2::7777:0:9";
const std::vector<std::string> loopback_addresses = {local_address, rehash_peer, flagged_peer,
                                                     service_peer};

// One connection to `peer` losing its data for 1 s (data_retransmits, from `local_address`),
// and the check of its labels; returns the mismatches.
int data_labels(capture& cap, const data_peer& env, bool passive, const char* peer, uint16_t port,
                const char* what, bool fixed) {
    retransmits x;
    const int bad = data_retransmits(cap, env, passive, local_address, peer, port, 0, 1000, x);
    return bad ? bad : check_data_labels(what, x, fixed);
}

// Active side, fixed label: the SYN, the data and every retransmit of the data carry one label,
// whether the rule or the network's flag fixes it.
TEST_F(TcpRtoDataTest, FixedLabelHoldsForDataRetransmits) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [env = env()] {
        if (!test::make_loopback(loopback_addresses)) {
            return 90;
        }
        capture cap("lo");
        return data_labels(cap, env, false, flagged_peer, 7101, "stateful-service prefix", true) +
               data_labels(cap, env, false, service_peer, 7102, "rule with a fixed label", true);
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
    EXPECT_EQ(stat(TCP_RTO_STAT_LABEL_FAILED), 0u);
}

// Active side, rehash (the kernel's way, with net.core.txrehash=1): each data RTO brings a new
// label.
TEST_F(TcpRtoDataTest, RehashGivesDataRetransmitsNewLabels) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [env = env()] {
        if (!test::make_loopback(loopback_addresses)) {
            return 90;
        }
        capture cap("lo");
        return data_labels(cap, env, false, rehash_peer, 7103, "rehash", false);
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
}

// The passive side: the accepted socket's data carries the SYN-ACK's label (it inherits the
// request's hash); fixed: so does every data retransmit (SO_TXREHASH 0 at
// PASSIVE_ESTABLISHED_CB); rehash: the RTOs change it.
TEST_F(TcpRtoDataTest, PassiveSideFixedLabelHoldsForDataRetransmits) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [env = env()] {
        if (!test::make_loopback(loopback_addresses)) {
            return 90;
        }
        capture cap("lo");
        return data_labels(cap, env, true, flagged_peer, 7104, "passive, stateful-service prefix",
                           true) +
               data_labels(cap, env, true, service_peer, 7105, "passive, rule with a fixed label",
                           true) +
               data_labels(cap, env, true, rehash_peer, 7106, "passive, rehash", false);
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
    EXPECT_EQ(stat(TCP_RTO_STAT_LABEL_FAILED), 0u);
}

// The limit of the passive side (see bpf/tcp_rto.bpf.c): SYN-ACK retransmits take their label
// from the listener's SO_TXREHASH, and no callback runs for them where the peer is known. With a
// fixed rule for the peer they still change labels; an application's SO_TXREHASH 0 on its
// listener keeps one.
TEST_F(TcpRtoTest, SynAckRetransmitLabelsFollowTheListenerNotThePolicy) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [] {
        if (!make_network()) {
            return 90;
        }
        capture cap("v0");
        int bad = 0;
        for (const bool app_fixed : {false, true}) {
            const uint16_t port = app_fixed ? 92 : 91;
            int l = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
            const int off = 0;
            if (app_fixed) {
                ::setsockopt(l, SOL_SOCKET, SO_TXREHASH, &off, sizeof off);
            }
            const sockaddr_in6 a = test::ipv6_address(local_address, port);
            if (::bind(l, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
                ::listen(l, 4) != 0) {
                return 91;
            }
            // From the stateful-service prefix: the policy says fixed.
            const auto synacks =
                test::synacks_for(cap, flagged_peer, local_address, 40000, port, 400);
            ::close(l);
            const char* what = app_fixed ? "listener with SO_TXREHASH 0" : "fixed policy";
            if (synacks.size() < 3) {
                bad += report(what, "SYN-ACKs in 400 ms", double(synacks.size()), 3);
                continue;
            }
            std::set<uint32_t> labels;
            for (const auto& p : synacks) {
                labels.insert(p.flowlabel);
            }
            const size_t want = app_fixed ? 1 : synacks.size();
            if (labels.size() != want) {
                bad += report(what, "distinct labels of the SYN-ACKs", double(labels.size()),
                              double(want));
            }
        }
        return bad;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
}

// sock_ops: for each callback op 0..15, counts the calls (u64 at 0 of the value) and keeps the
// socket's bpf_sock_ops_cb_flags as this program sees them, after the programs that run before
// it (u64 at 8).
std::vector<bpf_insn> cb_flags_observer(int map_fd) {
    using namespace insn;
    auto m = ld_map_fd(r1, map_fd);
    return {
        mov64_reg(r6, r1),
        ldx_mem(BPF_W, r2, r1, offsetof(bpf_sock_ops, op)),
        jmp_imm(BPF_JGT, r2, 15, 11),
        stx_mem(BPF_W, r10, r2, -4),
        mov64_reg(r2, r10),
        alu64_imm(BPF_ADD, r2, -4),
        m.lo,
        m.hi,
        call(BPF_FUNC_map_lookup_elem),
        jmp_imm(BPF_JEQ, r0, 0, 4),
        mov64_imm(r1, 1),
        atomic_add(BPF_DW, r0, r1, 0),
        ldx_mem(BPF_W, r1, r6, offsetof(bpf_sock_ops, bpf_sock_ops_cb_flags)),
        stx_mem(BPF_DW, r0, r1, 8),
        mov64_imm(r0, 1),
        exit(),
    };
}

struct observed {
    uint64_t calls, cb_flags;
};

// YaTTL with the first SYN lost: the second SYN, the marked one, establishes the connection.
// Its data must not keep the mark, nor (rehash mode) the first SYN's label: the class is back
// to the first SYN's and each data RTO brings a new label.
TEST_F(TcpRtoDataTest, DataAfterTheYattlSynHasNeitherTheMarkNorAFixedLabel) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto scenario = [env = env()] {
        if (!test::make_loopback(loopback_addresses)) {
            return 90;
        }
        capture cap("lo");
        retransmits x;
        int bad = data_retransmits(cap, env, false, local_address, rehash_peer, 7107, 1, 1000, x);
        if (bad) {
            return bad;
        }
        if ((x.handshake.tclass & 0xfc) != 0x04) {
            bad += report("YaTTL SYN", "class of the SYN that got through", x.handshake.tclass, 4);
        }
        for (const auto& p : x.data) {
            if ((p.tclass & 0xfc) != 0) {
                bad += report("YaTTL SYN", "class of the data", p.tclass, 0);
                break;
            }
        }
        const int labels = check_data_labels("YaTTL SYN", x, false);  // describes on failure
        if (bad && !labels) {
            describe("YaTTL SYN", x);
        }
        return bad + labels;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
    EXPECT_EQ(stat(TCP_RTO_STAT_YATTL), 1u);
}

// YaTTL asks for an RTO callback per RTO while the SYN is out; once established, the callbacks
// stop. A second program, attached after tcp_rto, sees the flag set at TCP_CONNECT_CB and gone
// at ACTIVE_ESTABLISHED_CB, and is called for the SYN's RTO but for none of the data's.
TEST_F(TcpRtoDataTest, PerRtoCallbacksStopOnceEstablished) {
    ASSERT_NO_FATAL_FAILURE(load("reno"));
    auto m = map::create({.type = BPF_MAP_TYPE_ARRAY,
                          .key_size = 4,
                          .value_size = sizeof(observed),
                          .max_entries = 16,
                          .name = "t_cb_flags"});
    ASSERT_OK(m);
    const auto code = cb_flags_observer(m->fd());
    auto p = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_cb_flags"});
    ASSERT_OK(p);
    auto l = cgroup_link::attach(cg_.fd(), *p, BPF_CGROUP_SOCK_OPS);
    ASSERT_OK(l);
    auto scenario = [env = env()] {
        if (!test::make_loopback(loopback_addresses)) {
            return 90;
        }
        capture cap("lo");
        retransmits x;
        int bad = data_retransmits(cap, env, false, local_address, rehash_peer, 7108, 1, 1000, x);
        if (!bad && x.data.size() < 4) {  // the original, a probe, at least two RTOs
            bad = report("per-RTO callbacks", "data segments in 1 s", double(x.data.size()), 4);
        }
        return bad;
    };
    EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
    auto view = array<observed>::view(*m);
    ASSERT_OK(view);
    auto at = [&](uint32_t op) {
        return view->lookup(op).value_or(observed{~0ull, ~0ull});
    };
    const observed connect = at(BPF_SOCK_OPS_TCP_CONNECT_CB);
    const observed established = at(BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB);
    const observed rto = at(BPF_SOCK_OPS_RTO_CB);
    EXPECT_EQ(connect.calls, 1u);
    EXPECT_TRUE(connect.cb_flags & BPF_SOCK_OPS_RTO_CB_FLAG)
        << "tcp_rto asks for RTO callbacks for the YaTTL SYN; flags " << connect.cb_flags;
    EXPECT_EQ(established.calls, 1u);
    EXPECT_FALSE(established.cb_flags & BPF_SOCK_OPS_RTO_CB_FLAG)
        << "flags once established: " << established.cb_flags;
    EXPECT_EQ(rto.calls, 1u) << "the lost SYN's RTO only, none for the data's RTOs";
}

}  // namespace
}  // namespace ebpf
