// tcp_rto (sock_ops) on the running kernel, seen on the wire and in TCP_INFO. A child process
// in the test cgroup makes a network namespace of its own with a veth pair whose far end drops
// everything (the peers are static neighbours that do not exist), so SYNs are retransmitted;
// an AF_PACKET capture on the near end records class, flow label and timing of each SYN.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../bpf/include/policy.h"
#include "../../bpf/include/tcp_rto.h"
#include "capture.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

using test::capture;
using test::run_in_cgroup;
using test::seen;
using test::test_cgroup;

constexpr uint32_t backbone = 1;

// networks: fd00:1::/32 and 192.0.2.0/24 in this DC (1), fd00:3::/32 in another (2); a
// stateful-service prefix (fixed label) and an exclusion prefix (no YaTTL) inside DC 1.
void fill_policy(collection& c, const char* cc) {
    auto nets = lpm_trie<policy_network>::view(*c.map("networks"));
    ASSERT_OK(nets);
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:1::/32"), {1, backbone, 0}));
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
    ASSERT_OK(rules->update(0, intra));
    ASSERT_OK(rules->update(1, cross));
    auto cfg = array<policy_config>::view(*c.map("config"));
    ASSERT_OK(cfg);
    policy_config pc{};
    pc.local_dc = 1;
    pc.rule_count = 2;
    pc.listen_dscp = POLICY_DSCP_UNSET;
    ASSERT_OK(cfg->update(0, pc));
}

// The private network: v0 <-> v1, and peers that are static neighbours with no host behind.
bool make_network() {
    if (::unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare");
        return false;
    }
    return std::system(
               "ip link set lo up && ip link add v0 type veth peer name v1 && "
               "ip link set v0 up && ip link set v1 up && "
               "ip -6 addr add fd00:1::10d:5ae7:0:1/64 dev v0 nodad && "
               "ip addr add 192.0.2.1/24 dev v0 && "
               "ip -6 route add fd00:3::/64 dev v0 && "
               "for a in fd00:1::7777:0:9 fd00:1::5:0:9 fd00:1::6:0:9 fd00:3::9; do "
               "ip -6 neigh add $a lladdr 02:00:00:00:00:09 dev v0 nud permanent || exit 1; done "
               "&& "
               "ip neigh add 192.0.2.9 lladdr 02:00:00:00:00:09 dev v0 nud permanent") == 0;
}

struct attempt {
    std::vector<seen> syns;
    uint32_t rto_us = 0;  // TCP_INFO right after connect()
};

// Starts a connect() to a peer that never answers, watches for `wait_ms`, and returns the SYNs.
attempt syns_to(capture& cap, int family, const char* addr, uint16_t port, int wait_ms) {
    attempt a;
    sockaddr_storage ss{};
    socklen_t sl;
    if (family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        ::inet_pton(AF_INET, addr, &s4->sin_addr);
        sl = sizeof *s4;
    } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        ::inet_pton(AF_INET6, addr, &s6->sin6_addr);
        sl = sizeof *s6;
    }
    int c = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::connect(c, reinterpret_cast<sockaddr*>(&ss), sl);
    tcp_info info{};
    socklen_t il = sizeof info;
    if (::getsockopt(c, SOL_TCP, TCP_INFO, &info, &il) == 0) {
        a.rto_us = info.tcpi_rto;
    }
    const auto packets = cap.collect(port, wait_ms);
    ::close(c);
    for (const auto& p : packets) {
        if ((p.flags & (TH_SYN | TH_ACK)) == TH_SYN) {
            a.syns.push_back(p);
        }
    }
    return a;
}

int report(const char* what, const char* why, double got, double want) {
    std::fprintf(stderr, "tcp_rto %s: %s: %g, expected %g\n", what, why, got, want);
    return 1;
}

// YaTTL as the issue defines it: SYN 2 has the class + 1 and SYN 1's label; SYN 3 has the class
// back and (rehash mode) a new label.
int check_yattl(const char* what, const attempt& a, bool yattl, bool fixed, bool ipv4) {
    if (a.syns.size() < 3) {
        return report(what, "SYNs seen", double(a.syns.size()), 3);
    }
    const seen &s1 = a.syns[0], &s2 = a.syns[1], &s3 = a.syns[2];
    if ((s1.tclass & 0xfc) != 0) {
        return report(what, "class of the first SYN", s1.tclass, 0);
    }
    if ((s2.tclass & 0xfc) != (yattl ? 0x04 : 0)) {
        return report(what, "class of the second SYN", s2.tclass, yattl ? 0x04 : 0);
    }
    if ((s3.tclass & 0xfc) != 0) {
        return report(what, "class of the third SYN", s3.tclass, 0);
    }
    if (ipv4) {
        return 0;
    }
    if (s1.flowlabel == 0) {
        return report(what, "flow label of the first SYN (must not be 0)", 0, 1);
    }
    if (yattl || fixed) {
        if (s2.flowlabel != s1.flowlabel) {
            return report(what, "flow label of the second SYN", s2.flowlabel, s1.flowlabel);
        }
    } else if (s2.flowlabel == s1.flowlabel) {
        return report(what, "flow label of the second SYN (must change)", s2.flowlabel, -1);
    }
    if (fixed && s3.flowlabel != s1.flowlabel) {
        return report(what, "flow label of the third SYN (fixed)", s3.flowlabel, s1.flowlabel);
    }
    if (!fixed && s3.flowlabel == s2.flowlabel) {
        return report(what, "flow label of the third SYN (must change)", s3.flowlabel, -1);
    }
    return 0;
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

// Sends one IPv6 TCP SYN into v0 from the peer `src` (as if it came over the wire), so a listener
// answers with SYN-ACKs that go nowhere. Returns false if it could not be sent.
bool inject_syn(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
    unsigned char f[14 + 40 + 20] = {};
    // v0's MAC (sysfs shows the namespace that mounted it, so ask with an ioctl).
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "v0");
    int q = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const bool have_mac = ::ioctl(q, SIOCGIFHWADDR, &ifr) == 0;
    ::close(q);
    if (!have_mac) {
        std::perror("inject SYN: v0's MAC");
        return false;
    }
    unsigned m[6];
    for (int i = 0; i < 6; ++i) {
        m[i] = static_cast<unsigned char>(ifr.ifr_hwaddr.sa_data[i]);
    }
    for (int i = 0; i < 6; ++i) {
        f[i] = uint8_t(m[i]);  // to v0
    }
    const unsigned char peer_mac[6] = {0x02, 0, 0, 0, 0, 0x09};
    std::memcpy(f + 6, peer_mac, 6);
    f[12] = 0x86;
    f[13] = 0xdd;
    unsigned char* ip = f + 14;
    ip[0] = 0x60;
    ip[5] = 20;  // payload length
    ip[6] = IPPROTO_TCP;
    ip[7] = 64;
    ::inet_pton(AF_INET6, src, ip + 8);
    ::inet_pton(AF_INET6, dst, ip + 24);
    unsigned char* tcp = ip + 40;
    tcp[0] = uint8_t(sport >> 8);
    tcp[1] = uint8_t(sport);
    tcp[2] = uint8_t(dport >> 8);
    tcp[3] = uint8_t(dport);
    tcp[7] = 1;        // seq
    tcp[12] = 5 << 4;  // data offset
    tcp[13] = TH_SYN;
    tcp[14] = 0xff;
    tcp[15] = 0xff;  // window
    uint32_t sum = 0;
    auto add = [&](const unsigned char* p, size_t n) {
        for (size_t i = 0; i + 1 < n; i += 2) {
            sum += uint32_t(p[i] << 8 | p[i + 1]);
        }
    };
    add(ip + 8, 32);  // pseudo-header: addresses, length, next header
    sum += 20 + IPPROTO_TCP;
    add(tcp, 20);
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    const uint16_t csum = uint16_t(~sum);
    tcp[16] = uint8_t(csum >> 8);
    tcp[17] = uint8_t(csum);
    int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = int(::if_nametoindex("v1"));
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, f, 6);
    const bool ok = ::sendto(s, f, sizeof f, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
                    ssize_t(sizeof f);
    if (!ok) {
        std::perror("inject SYN");
    }
    ::close(s);
    return ok;
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
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(90);
        ::inet_pton(AF_INET6, "fd00:1::10d:5ae7:0:1", &a.sin6_addr);
        if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 4) != 0) {
            return 91;
        }
        capture cap("v0");
        if (!inject_syn("fd00:1::7777:0:9", "fd00:1::10d:5ae7:0:1", 40000, 90)) {
            return 92;
        }
        std::vector<seen> synacks;
        for (const auto& p : cap.collect(90, 500)) {
            if ((p.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)) {
                synacks.push_back(p);
            }
        }
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

}  // namespace
}  // namespace ebpf
