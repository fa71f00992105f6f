// tcp_tos and tcp_rto attached together to one cgroup (multi) with shared policy maps, as the
// agent runs them, seen on the wire: each does its part of the same SYNs, and neither clobbers
// the other's reply (the chain shares it: the TIMEOUT_INIT answer is tcp_rto's, the NEEDS_ECN
// answer tcp_tos's). A child process in the test cgroup connects over a veth to peers that
// never answer (tcp_test_net.hpp).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdio>

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
using test::report;
using test::run_in_cgroup;
using test::test_cgroup;

constexpr uint32_t backbone = 1;
constexpr uint8_t cs3 = 3 * 8;            // DSCP
constexpr uint8_t cs3_tclass = cs3 << 2;  // the class byte, ECN bits 0
constexpr uint8_t ece_cwr = 0x40 | 0x80;  // TCP flags of an ECN SYN
constexpr uint8_t ect0 = 0x02;            // ECN field of an ECN-capable packet

// The policy both programs read: intra-DC backbone (fd00:1::/32, 192.0.2.0/24) gets CS3 with
// ECN on the SYN (tcp_tos), a 40 ms initial RTO and YaTTL (tcp_rto).
void fill_policy(collection& c) {
    auto nets = lpm_trie<policy_network>::view(*c.map("networks"));
    ASSERT_OK(nets);
    ASSERT_OK(nets->update(*lpm_key::parse("fd00:1::/32"), {1, backbone, 0}));
    ASSERT_OK(nets->update(*lpm_key::parse("192.0.2.0/24"), {1, backbone, 0}));
    auto rules = array<policy_rule>::view(*c.map("rules"));
    ASSERT_OK(rules);
    policy_rule r{};
    r.net_type = backbone;
    r.scope = POLICY_SCOPE_SAME_DC;
    r.rto_init_ms = 40;
    r.dscp = cs3;
    r.ecn_syn = 1;
    r.flowlabel = POLICY_FLOWLABEL_REHASH;
    r.yattl = 1;
    ASSERT_OK(rules->update(0, r));
    auto cfg = array<policy_config>::view(*c.map("config"));
    ASSERT_OK(cfg);
    policy_config pc{};
    pc.local_dc = 1;
    pc.rule_count = 1;
    pc.listen_dscp = POLICY_DSCP_UNSET;
    ASSERT_OK(cfg->update(0, pc));
}

// The SYNs of one attempt: tcp_rto's 40 ms (TCP_INFO and the gap on the wire, generous bounds:
// the kernel's is 1 s), tcp_tos's CS3 and ECN on the first SYN, and YaTTL counting from CS3.
int check_syns(const char* what, const attempt& a, bool ipv4) {
    int bad = 0;
    if (a.rto_us != 40000) {
        bad += report(what, "TCP_INFO rto (us)", a.rto_us, 40000);
    }
    if (a.syns.size() >= 2) {
        const double gap = a.syns[1].ms - a.syns[0].ms;
        if (gap < 5 || gap > 400) {
            bad += report(what, "ms between SYN 1 and 2", gap, 40);
        }
    }
    if (!a.syns.empty()) {
        if ((a.syns[0].tclass & 0x03) != ect0) {
            bad += report(what, "ECN field of the first SYN", a.syns[0].tclass & 0x03, ect0);
        }
        if ((a.syns[0].flags & ece_cwr) != ece_cwr) {
            bad += report(what, "ECE|CWR of the first SYN", a.syns[0].flags & ece_cwr, ece_cwr);
        }
    }
    return bad + test::check_yattl(what, a, true, false, ipv4, cs3_tclass);
}

class TcpChainTest : public test::KernelTest {
  protected:
    // Loads both objects as the agent does: tcp_tos gets tcp_rto's policy maps (one table,
    // filled once).
    void SetUp() override {
        test::KernelTest::SetUp();
        auto rto = collection_spec::open(EBPF_AGENT_OBJECT_TCP_RTO);
        ASSERT_OK(rto);
        auto r = collection::load(*rto);
        ASSERT_OK(r);
        rto_ = std::move(*r);
        ASSERT_NO_FATAL_FAILURE(fill_policy(rto_));
        collection_options shared;
        for (const char* m : {"networks", "project_sets", "rules", "config", "decisions"}) {
            ASSERT_NE(rto_.map(m), nullptr) << m;
            shared.replace_maps[m] = rto_.map(m);
        }
        auto tos = collection_spec::open(EBPF_AGENT_OBJECT_TCP_TOS);
        ASSERT_OK(tos);
        auto t = collection::load(*tos, shared);
        ASSERT_OK(t);
        tos_ = std::move(*t);
    }
    // Attaches a program to the test cgroup after those attached before (a cgroup's programs
    // run in the order attached).
    void attach(collection& c, const char* name) {
        auto l = cgroup_link::attach(cg_.fd(), *c.program(name), BPF_CGROUP_SOCK_OPS);
        ASSERT_OK(l);
        links_.push_back(std::move(*l));
    }
    void attach_tcp_rto() { attach(rto_, "tcp_rto"); }
    void attach_tcp_tos() { attach(tos_, "tcp_tos"); }
    uint64_t yattl_marks() {
        auto v = percpu_array<uint64_t>::view(*rto_.map("tcp_rto_stats"));
        auto s = v ? v->sum(TCP_RTO_STAT_YATTL) : result<std::optional<uint64_t>>(v.error());
        return s && *s ? **s : ~0ull;
    }
    void run() {
        auto scenario = [] {
            if (!test::make_network()) {
                return 90;
            }
            capture cap("v0");
            if (!cap.ok()) {
                return 91;
            }
            int bad = check_syns("IPv6", test::syns_to(cap, AF_INET6, "fd00:1::7777:0:9", 81, 500),
                                 false);
            bad += check_syns("IPv4", test::syns_to(cap, AF_INET, "192.0.2.9", 84, 500), true);
            return bad;
        };
        EXPECT_EQ(run_in_cgroup(cg_, scenario), 0) << "see the lines above for each mismatch";
        EXPECT_EQ(yattl_marks(), 2u);
    }
    void TearDown() override {
        links_.clear();
        tos_ = collection();
        rto_ = collection();
        test::KernelTest::TearDown();
    }

    test_cgroup cg_;
    collection rto_, tos_;
    std::vector<cgroup_link> links_;
};

// tcp_tos runs last: its silence on TIMEOUT_INIT leaves tcp_rto's 40 ms.
TEST_F(TcpChainTest, TcpRtoAttachedFirst) {
    ASSERT_NO_FATAL_FAILURE(attach_tcp_rto());
    ASSERT_NO_FATAL_FAILURE(attach_tcp_tos());
    run();
}

// tcp_rto runs last: its silence on NEEDS_ECN leaves tcp_tos's ECN on the SYN.
TEST_F(TcpChainTest, TcpTosAttachedFirst) {
    ASSERT_NO_FATAL_FAILURE(attach_tcp_tos());
    ASSERT_NO_FATAL_FAILURE(attach_tcp_rto());
    run();
}

}  // namespace
}  // namespace ebpf
