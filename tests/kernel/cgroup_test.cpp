// Cgroup attachment on the running kernel: sock_ops, cgroup_skb and setsockopt programs
// attached to a cgroup the test creates, seen through PROG_QUERY, bpftool and real traffic on
// loopback from a child process inside that cgroup; replaced atomically; detached.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"
#include "test_programs.hpp"

namespace ebpf {
namespace {

using test::KernelTest;
using test::run_in_cgroup;
using test::test_bpffs;
using test::test_cgroup;

// One TCP connection over 127.0.0.1: connect, one byte each way, close. 0 on success.
int tcp_roundtrip() {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(l, 1) != 0 || ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return 1;
    }
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return 2;
    }
    int a = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    char b = 'x';
    if (a < 0 || ::write(c, &b, 1) != 1 || ::read(a, &b, 1) != 1 || ::write(a, &b, 1) != 1 ||
        ::read(c, &b, 1) != 1) {
        return 3;
    }
    ::close(a);
    ::close(c);
    ::close(l);
    return 0;
}

std::vector<uint64_t> read_counters(const map& m) {
    auto a = array<uint64_t>::view(m);
    std::vector<uint64_t> out;
    for (uint32_t i = 0; i < m.max_entries(); ++i) {
        out.push_back(a ? a->lookup(i).value_or(~0ull) : ~0ull);
    }
    return out;
}

std::vector<uint32_t> attached_ids(const test_cgroup& cg, uint32_t type) {
    auto q = query_cgroup(cg.fd(), type);
    EXPECT_TRUE(q) << q.error().message();
    std::vector<uint32_t> ids;
    if (q) {
        for (const auto& p : q->programs) {
            ids.push_back(p.prog_id);
        }
    }
    return ids;
}

std::string bpftool_tree(const test_cgroup& cg) {
    return test::run_command("bpftool -j cgroup tree " + cg.path() + " 2>&1");
}

class CgroupAttachTest : public KernelTest, public ::testing::WithParamInterface<attach_mode> {};

TEST_P(CgroupAttachTest, SockOpsAttachQueryReplaceDetach) {
    test_cgroup cg;
    ASSERT_GE(cg.fd(), 0);
    auto m = map::create({.type = BPF_MAP_TYPE_ARRAY,
                          .key_size = 4,
                          .value_size = 8,
                          .max_entries = 16,
                          .name = "t_ops_cnt"});
    ASSERT_OK(m);
    auto code_a = test::count_sock_ops_program(m->fd(), 1);
    auto code_b = test::count_sock_ops_program(m->fd(), 1000);
    auto a = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code_a, .name = "t_ops_a"});
    ASSERT_OK(a);
    auto b = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code_b, .name = "t_ops_b"});
    ASSERT_OK(b);
    const uint32_t id_a = a->info()->id, id_b = b->info()->id;

    auto link = cgroup_link::attach(cg.fd(), *a, BPF_CGROUP_SOCK_OPS, GetParam());
    ASSERT_OK(link);
    EXPECT_EQ(link->is_link(), GetParam() != attach_mode::legacy);

    auto q = query_cgroup(cg.fd(), BPF_CGROUP_SOCK_OPS);
    ASSERT_OK(q);
    ASSERT_EQ(q->programs.size(), 1u);
    EXPECT_EQ(q->programs[0].prog_id, id_a);
    EXPECT_EQ(q->attach_flags, uint32_t(BPF_F_ALLOW_MULTI)) << "never exclusive";
    if (link->is_link()) {
        // The link itself says what it holds (PROG_QUERY leaves link_ids 0 for cgroups).
        bpf_link_info li{};
        uint32_t len = sizeof li;
        ASSERT_OK(sys::obj_get_info_by_fd(link->link_fd(), &li, len));
        EXPECT_EQ(li.type, uint32_t(BPF_LINK_TYPE_CGROUP));
        EXPECT_EQ(li.prog_id, id_a);
        EXPECT_EQ(li.cgroup.attach_type, uint32_t(BPF_CGROUP_SOCK_OPS));
    } else {
        EXPECT_EQ(q->programs[0].attach_flags, uint32_t(BPF_F_ALLOW_MULTI));
        EXPECT_EQ(q->programs[0].link_id, 0u);
    }
    std::string tree = bpftool_tree(cg);
    EXPECT_NE(tree.find("\"id\":" + std::to_string(id_a)), std::string::npos) << tree;
    EXPECT_NE(tree.find("\"name\":\"t_ops_a\""), std::string::npos) << tree;
    EXPECT_NE(tree.find("sock_ops"), std::string::npos) << tree;
    EXPECT_NE(tree.find("\"attach_flags\":\"multi\""), std::string::npos) << tree;

    // One connection inside the cgroup: connect, active and passive established, once each.
    ASSERT_EQ(run_in_cgroup(cg, tcp_roundtrip), 0);
    auto c1 = read_counters(*m);
    EXPECT_EQ(c1[BPF_SOCK_OPS_TCP_CONNECT_CB], 1u);
    EXPECT_EQ(c1[BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB], 1u);
    EXPECT_EQ(c1[BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB], 1u);

    // A connection outside the cgroup is not seen.
    ASSERT_EQ(tcp_roundtrip(), 0);
    EXPECT_EQ(read_counters(*m), c1);

    ASSERT_OK(link->update(*b));
    EXPECT_EQ(attached_ids(cg, BPF_CGROUP_SOCK_OPS), std::vector<uint32_t>{id_b});
    tree = bpftool_tree(cg);
    EXPECT_NE(tree.find("\"id\":" + std::to_string(id_b)), std::string::npos) << tree;
    EXPECT_EQ(tree.find("\"id\":" + std::to_string(id_a) + ","), std::string::npos) << tree;
    ASSERT_EQ(run_in_cgroup(cg, tcp_roundtrip), 0);
    auto c2 = read_counters(*m);
    EXPECT_EQ(c2[BPF_SOCK_OPS_TCP_CONNECT_CB], 1001u) << "only the new program ran";

    // Attached twice, multi: both programs run, the inner one first.
    auto stale = cgroup_link::attach(cg.fd(), *a, BPF_CGROUP_SOCK_OPS, GetParam());
    ASSERT_OK(stale);
    EXPECT_EQ(attached_ids(cg, BPF_CGROUP_SOCK_OPS).size(), 2u) << "multi: both attached";
    ASSERT_EQ(run_in_cgroup(cg, tcp_roundtrip), 0);
    EXPECT_EQ(read_counters(*m)[BPF_SOCK_OPS_TCP_CONNECT_CB], 2002u) << "both programs ran";
    ASSERT_OK(stale->detach());

    ASSERT_OK(link->detach());
    EXPECT_TRUE(attached_ids(cg, BPF_CGROUP_SOCK_OPS).empty());
    tree = bpftool_tree(cg);
    EXPECT_EQ(tree.find("\"id\":"), std::string::npos) << tree;
    auto before = read_counters(*m);
    ASSERT_EQ(run_in_cgroup(cg, tcp_roundtrip), 0);
    EXPECT_EQ(read_counters(*m), before) << "nothing runs after detach";
}

INSTANTIATE_TEST_SUITE_P(Modes, CgroupAttachTest,
                         ::testing::Values(attach_mode::link, attach_mode::legacy),
                         [](const auto& info) {
                             return info.param == attach_mode::link ? std::string("Link")
                                                                    : std::string("Legacy");
                         });

class CgroupTest : public KernelTest {};

struct counters {
    uint64_t bytes, packets;
};

TEST_F(CgroupTest, SkbIngressAndEgressCountExactlyTheBytesSent) {
    test_cgroup cg;
    ASSERT_GE(cg.fd(), 0);
    auto tx = map::create({.type = BPF_MAP_TYPE_ARRAY,
                           .key_size = 4,
                           .value_size = 16,
                           .max_entries = 1,
                           .name = "t_tx"});
    auto rx = map::create({.type = BPF_MAP_TYPE_ARRAY,
                           .key_size = 4,
                           .value_size = 16,
                           .max_entries = 1,
                           .name = "t_rx"});
    ASSERT_OK(tx);
    ASSERT_OK(rx);
    auto tx_code = test::count_skb_program(tx->fd());
    auto rx_code = test::count_skb_program(rx->fd());
    auto egress = program::load({.type = BPF_PROG_TYPE_CGROUP_SKB,
                                 .insns = tx_code,
                                 .name = "t_tx",
                                 .expected_attach_type = BPF_CGROUP_INET_EGRESS});
    auto ingress = program::load({.type = BPF_PROG_TYPE_CGROUP_SKB,
                                  .insns = rx_code,
                                  .name = "t_rx",
                                  .expected_attach_type = BPF_CGROUP_INET_INGRESS});
    ASSERT_OK(egress);
    ASSERT_OK(ingress);
    auto le = cgroup_link::attach(cg.fd(), *egress, BPF_CGROUP_INET_EGRESS);
    auto li = cgroup_link::attach(cg.fd(), *ingress, BPF_CGROUP_INET_INGRESS);
    ASSERT_OK(le);
    ASSERT_OK(li);

    // Five UDP datagrams of 100 bytes over loopback, sent and received inside the cgroup:
    // each is 20 (IPv4) + 8 (UDP) + 100 bytes at both hooks.
    constexpr int kCount = 5, kPayload = 100;
    ASSERT_EQ(run_in_cgroup(cg,
                            [] {
                                int r = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                                int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                                sockaddr_in addr{};
                                addr.sin_family = AF_INET;
                                addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                                socklen_t len = sizeof addr;
                                auto* sa = reinterpret_cast<sockaddr*>(&addr);
                                if (::bind(r, sa, len) != 0 || ::getsockname(r, sa, &len) != 0) {
                                    return 1;
                                }
                                char buf[kPayload] = {};
                                for (int i = 0; i < kCount; ++i) {
                                    if (::sendto(s, buf, kPayload, 0, sa, len) != kPayload) {
                                        return 2;
                                    }
                                    if (::recv(r, buf, sizeof buf, 0) != kPayload) {
                                        return 3;
                                    }
                                }
                                return 0;
                            }),
              0);
    auto sent = array<counters>::view(*tx)->lookup(0);
    auto got = array<counters>::view(*rx)->lookup(0);
    ASSERT_OK(sent);
    ASSERT_OK(got);
    EXPECT_EQ(sent->packets, uint64_t(kCount));
    EXPECT_EQ(sent->bytes, uint64_t(kCount * (20 + 8 + kPayload)));
    EXPECT_EQ(got->packets, uint64_t(kCount));
    EXPECT_EQ(got->bytes, uint64_t(kCount * (20 + 8 + kPayload)));

    const std::string tree = bpftool_tree(cg);
    EXPECT_NE(tree.find("\"name\":\"t_tx\""), std::string::npos) << tree;
    EXPECT_NE(tree.find("\"name\":\"t_rx\""), std::string::npos) << tree;
}

TEST_F(CgroupTest, SetsockoptProgramLocksTheTrafficClass) {
    test_cgroup cg;
    ASSERT_GE(cg.fd(), 0);
    auto code = test::tclass_lock_program();
    auto p = program::load({.type = BPF_PROG_TYPE_CGROUP_SOCKOPT,
                            .insns = code,
                            .name = "t_tclass_lock",
                            .expected_attach_type = BPF_CGROUP_SETSOCKOPT});
    ASSERT_OK(p);
    auto l = cgroup_link::attach(cg.fd(), *p, BPF_CGROUP_SETSOCKOPT);
    ASSERT_OK(l);
    EXPECT_EQ(attached_ids(cg, BPF_CGROUP_SETSOCKOPT), std::vector<uint32_t>{p->info()->id});

    auto exercise = [] {
        int s = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int tclass = 0x28;
        if (::setsockopt(s, SOL_IPV6, IPV6_TCLASS, &tclass, sizeof tclass) != 0) {
            return 1;  // must look successful
        }
        int got = -1;
        socklen_t len = sizeof got;
        if (::getsockopt(s, SOL_IPV6, IPV6_TCLASS, &got, &len) != 0) {
            return 2;
        }
        int hops = 7;
        if (::setsockopt(s, SOL_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) != 0) {
            return 3;
        }
        int got_hops = -1;
        len = sizeof got_hops;
        if (::getsockopt(s, SOL_IPV6, IPV6_UNICAST_HOPS, &got_hops, &len) != 0 || got_hops != 7) {
            return 4;  // other options pass untouched
        }
        ::close(s);
        return got == 0 ? 0 : 5;  // the class did not change
    };
    EXPECT_EQ(run_in_cgroup(cg, exercise), 0);
    // Outside the cgroup the option works as usual.
    EXPECT_EQ(exercise(), 5);
}

TEST_F(CgroupTest, PinnedLinkOutlivesItsObjectAndReopens) {
    test_cgroup cg;
    test_bpffs fs;
    ASSERT_GE(cg.fd(), 0);
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto p = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_pin_link"});
    ASSERT_OK(p);
    const uint32_t id = p->info()->id;
    {
        auto l = cgroup_link::attach(cg.fd(), *p, BPF_CGROUP_SOCK_OPS);
        ASSERT_OK(l);
        ASSERT_TRUE(l->is_link());
        ASSERT_OK(l->pin(fs.path("link")));
    }
    EXPECT_EQ(attached_ids(cg, BPF_CGROUP_SOCK_OPS), std::vector<uint32_t>{id})
        << "the pin keeps the link attached";
    auto again = cgroup_link::from_pin(fs.path("link"));
    ASSERT_OK(again);
    EXPECT_EQ(again->attach_type(), uint32_t(BPF_CGROUP_SOCK_OPS));
    auto next =
        program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_pin_next"});
    ASSERT_OK(next);
    ASSERT_OK(again->update(*next));
    EXPECT_EQ(attached_ids(cg, BPF_CGROUP_SOCK_OPS), std::vector<uint32_t>{next->info()->id});
    ASSERT_OK(again->detach());
    EXPECT_TRUE(attached_ids(cg, BPF_CGROUP_SOCK_OPS).empty());
    ASSERT_EQ(::unlink(fs.path("link").c_str()), 0);
}

TEST_F(CgroupTest, AttachErrorsNameTheProgramAndLeaveNothingAttached) {
    test_cgroup cg;
    ASSERT_GE(cg.fd(), 0);
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto p = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_wrong"});
    ASSERT_OK(p);
    // A sock_ops program cannot go on the ingress hook.
    auto l = cgroup_link::attach(cg.fd(), *p, BPF_CGROUP_INET_INGRESS);
    ASSERT_FALSE(l);
    EXPECT_NE(l.error().message().find("attach program t_wrong"), std::string::npos)
        << l.error().message();
    EXPECT_TRUE(attached_ids(cg, BPF_CGROUP_INET_INGRESS).empty());
}

}  // namespace
}  // namespace ebpf
