// Kernel-free tests of the error model, typed views, prefix keys and the cgroup attach fallback.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "ebpf/ebpf.hpp"
#include "fake_syscall.hpp"

namespace ebpf {
namespace {

using test::fake_syscall;

int open_devnull() {
    return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

TEST(Error, MessageReadsLikeAPath) {
    error e(ENOENT, "BPF_OBJ_GET", "");
    e.context("open pin /sys/fs/bpf/x").context("agent");
    EXPECT_EQ(e.message(),
              "agent: open pin /sys/fs/bpf/x: BPF_OBJ_GET: No such file or directory (errno 2)");
    error copy = e;
    copy.context("more");
    EXPECT_EQ(e.contexts().size(), 2u);
    EXPECT_EQ(copy.contexts().size(), 3u);
}

TEST(Result, HoldsAValueOrAnError) {
    result<int> ok = 7;
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 7);
    result<int> bad = error(EPERM, "op");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), EPERM);
    EXPECT_EQ(bad.value_or(3), 3);
    result<void> v;
    EXPECT_TRUE(v);
    EXPECT_EQ(sizeof(result<void>), sizeof(void*));
}

TEST(ResultDeathTest, ValueOfAnErrorAbortsWithTheMessage) {
    result<int> bad = error(EPERM, "BPF_MAP_CREATE");
    EXPECT_DEATH((void)bad.value(), "BPF_MAP_CREATE");
}

result<int> fails() {
    return error(EACCES, "BPF_PROG_LOAD");
}
result<void> wraps() {
    EBPF_TRY_CTX(fails(), "program " + std::string("x"));
    return {};
}

TEST(Result, TryAddsContextOnTheErrorPath) {
    auto r = wraps();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().contexts().at(0), "program x");
}

TEST(LpmKey, StoresIpv4AsV4MappedWithNinetySixMoreBits) {
    auto k = lpm_key::parse("10.1.2.0/24");
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(k->prefixlen, 120u);
    const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 0};
    EXPECT_EQ(std::memcmp(k->addr, want, 16), 0);
    EXPECT_EQ(k->to_string(), "10.1.2.0/24");

    auto six = lpm_key::parse("2a02:6b8:c00::/40");
    ASSERT_TRUE(six);
    EXPECT_EQ(six->prefixlen, 40u);
    EXPECT_EQ(six->to_string(), "2a02:6b8:c00::/40");

    auto host = lpm_key::parse("192.0.2.7");
    ASSERT_TRUE(host);
    EXPECT_EQ(host->prefixlen, 128u);
}

TEST(LpmKey, MasksHostBitsAndRejectsBadText) {
    auto k = lpm_key::parse("10.1.2.3/8");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->to_string(), "10.0.0.0/8");
    EXPECT_FALSE(lpm_key::parse("10.0.0.0/33"));
    EXPECT_FALSE(lpm_key::parse("::/129"));
    EXPECT_FALSE(lpm_key::parse("10.0.0.0/x"));
    auto bad = lpm_key::parse("not-an-address/8");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("not-an-address"), std::string::npos);
}

// A fake kernel with one map of the given shape, answering MAP_CREATE and info queries.
long fake_map_kernel(int cmd, void* p, unsigned, const bpf_map_info& shape) {
    if (cmd == BPF_MAP_CREATE) {
        return open_devnull();
    }
    if (cmd == BPF_OBJ_GET_INFO_BY_FD || cmd == BPF_OBJ_GET) {
        if (cmd == BPF_OBJ_GET) {
            return open_devnull();
        }
        auto* a = static_cast<sys::info_attr*>(p);
        std::memcpy(reinterpret_cast<void*>(a->info), &shape, sizeof shape);
        return 0;
    }
    return -ENOSYS;
}

TEST(TypedView, ChecksTypeAndSizesOnceWhenMade) {
    bpf_map_info shape{};
    shape.type = BPF_MAP_TYPE_HASH;
    shape.key_size = 8;
    shape.value_size = 4;
    shape.max_entries = 16;
    std::strcpy(shape.name, "policy");
    fake_syscall fake([&](int c, void* p, unsigned s) { return fake_map_kernel(c, p, s, shape); });
    auto m = map::from_pin("/sys/fs/bpf/policy");
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->name(), "policy");
    EXPECT_TRUE((hash<uint64_t, uint32_t>::view(*m)));
    auto wrong_key = hash<uint32_t, uint32_t>::view(*m);
    ASSERT_FALSE(wrong_key);
    EXPECT_NE(wrong_key.error().message().find("key_size 8, the key type has 4"), std::string::npos)
        << wrong_key.error().message();
    auto wrong_type = array<uint32_t>::view(*m);
    ASSERT_FALSE(wrong_type);
    EXPECT_NE(wrong_type.error().message().find("map type 1 does not fit"), std::string::npos);
}

TEST(MapFromPin, NamesTheFirstIncompatibility) {
    bpf_map_info shape{};
    shape.type = BPF_MAP_TYPE_ARRAY;
    shape.key_size = 4;
    shape.value_size = 8;
    shape.max_entries = 64;
    std::strcpy(shape.name, "stats");
    fake_syscall fake([&](int c, void* p, unsigned s) { return fake_map_kernel(c, p, s, shape); });
    map_options want{
        .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 128};
    auto m = map::from_pin("/sys/fs/bpf/stats", want);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code(), EINVAL);
    EXPECT_NE(m.error().message().find("max_entries 64, expected 128"), std::string::npos)
        << m.error().message();
    EXPECT_NE(m.error().message().find("/sys/fs/bpf/stats"), std::string::npos);
}

TEST(MapCreate, ErrorNamesTheMap) {
    fake_syscall fake([](int, void*, unsigned) -> long { return -EPERM; });
    auto m = map::create({.type = BPF_MAP_TYPE_HASH,
                          .key_size = 4,
                          .value_size = 4,
                          .max_entries = 8,
                          .name = "counters"});
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().message(),
              "map counters (type 1, key 4, value 4, max_entries 8): BPF_MAP_CREATE: Operation not "
              "permitted (errno 1)");
}

// A fake kernel without cgroup links (before 5.7): LINK_CREATE is an unknown command.
struct legacy_kernel {
    std::vector<sys::prog_attach_attr> attaches, detaches;
    bool links = false;
    long operator()(int cmd, void* p, unsigned) {
        switch (cmd) {
            case BPF_LINK_CREATE:
                if (!links) {
                    return -EINVAL;
                }
                EXPECT_EQ(static_cast<sys::link_create_attr*>(p)->flags, 0u);
                return open_devnull();
            case BPF_LINK_UPDATE: {
                auto* a = static_cast<sys::link_update_attr*>(p);
                EXPECT_EQ(a->flags, uint32_t(BPF_F_REPLACE));
                EXPECT_GE(int(a->old_prog_fd), 3);
                return 0;
            }
            case BPF_PROG_ATTACH:
                attaches.push_back(*static_cast<sys::prog_attach_attr*>(p));
                return 0;
            case BPF_PROG_DETACH:
                detaches.push_back(*static_cast<sys::prog_attach_attr*>(p));
                return 0;
            case BPF_PROG_LOAD:
                return open_devnull();
            default:
                return -ENOSYS;
        }
    }
};

TEST(CgroupAttach, FallsBackToMultiAttachWithoutLinksAndDetachesOnDestruction) {
    legacy_kernel k;
    fake_syscall fake(std::ref(k));
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto prog = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "p"});
    ASSERT_TRUE(prog);
    auto next = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "q"});
    ASSERT_TRUE(next);
    fd cg(open_devnull());
    {
        auto l = cgroup_link::attach(cg.get(), *prog, BPF_CGROUP_SOCK_OPS);
        ASSERT_TRUE(l) << l.error().message();
        EXPECT_FALSE(l->is_link());
        ASSERT_EQ(k.attaches.size(), 1u);
        EXPECT_EQ(k.attaches[0].attach_flags, uint32_t(BPF_F_ALLOW_MULTI));
        EXPECT_EQ(k.attaches[0].attach_type, uint32_t(BPF_CGROUP_SOCK_OPS));
        ASSERT_TRUE(l->update(*next));
        ASSERT_EQ(k.attaches.size(), 2u);
        EXPECT_EQ(k.attaches[1].attach_flags, uint32_t(BPF_F_ALLOW_MULTI | BPF_F_REPLACE));
        EXPECT_NE(k.attaches[1].replace_bpf_fd, 0u);
        EXPECT_TRUE(k.detaches.empty());
        auto pin = l->pin("/sys/fs/bpf/x");
        ASSERT_FALSE(pin);
        EXPECT_EQ(pin.error().code(), EOPNOTSUPP);
    }
    ASSERT_EQ(k.detaches.size(), 1u);
    EXPECT_EQ(k.detaches[0].attach_type, uint32_t(BPF_CGROUP_SOCK_OPS));
}

TEST(CgroupAttach, UsesALinkWithFlagsZeroWhereLinksExist) {
    legacy_kernel k;
    k.links = true;
    fake_syscall fake(std::ref(k));
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto prog = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "p"});
    ASSERT_TRUE(prog);
    fd cg(open_devnull());
    auto l = cgroup_link::attach(cg.get(), *prog, BPF_CGROUP_SOCK_OPS);
    ASSERT_TRUE(l);
    EXPECT_TRUE(l->is_link());
    EXPECT_TRUE(l->update(*prog));
    EXPECT_TRUE(k.attaches.empty());
}

TEST(CgroupAttach, ForcedLinkModeDoesNotFallBack) {
    legacy_kernel k;
    fake_syscall fake(std::ref(k));
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto prog = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "p"});
    ASSERT_TRUE(prog);
    fd cg(open_devnull());
    auto l = cgroup_link::attach(cg.get(), *prog, BPF_CGROUP_SOCK_OPS, attach_mode::link);
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error().op(), "BPF_LINK_CREATE");
    EXPECT_TRUE(k.attaches.empty());
}

TEST(Features, ProbesAreCachedAndUnknownTypesAreAbsent) {
    int calls = 0;
    fake_syscall fake([&](int cmd, void*, unsigned) -> long {
        ++calls;
        return cmd == BPF_MAP_CREATE ? -EINVAL : -ENOSYS;
    });
    // A type number no kernel has yet.
    auto a = features::map_type(120);
    ASSERT_TRUE(a);
    EXPECT_FALSE(*a);
    auto b = features::map_type(120);
    ASSERT_TRUE(b);
    EXPECT_EQ(calls, 1);
}

TEST(Features, PermissionErrorsAreNotCachedAsAbsence) {
    int calls = 0;
    fake_syscall fake([&](int, void*, unsigned) -> long {
        ++calls;
        return -EPERM;
    });
    EXPECT_FALSE(features::map_type(121));
    EXPECT_FALSE(features::map_type(121));
    EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace ebpf

namespace ebpf {
namespace {

TEST(SectionNames, FollowLibbpfConventions) {
    struct want {
        const char* section;
        uint32_t type;
        uint32_t attach;
        const char* attach_to;
    };
    const want cases[] = {
        {"sockops", BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, ""},
        {"cgroup_skb/ingress", BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, ""},
        {"cgroup_skb/egress", BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, ""},
        {"cgroup/setsockopt", BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, ""},
        {"cgroup/getsockopt", BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT, ""},
        {"cgroup/connect6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, ""},
        {"cgroup/sock_create", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, ""},
        {"socket", BPF_PROG_TYPE_SOCKET_FILTER, 0, ""},
        {"socket/anything", BPF_PROG_TYPE_SOCKET_FILTER, 0, "anything"},
        {"tc", BPF_PROG_TYPE_SCHED_CLS, 0, ""},
        {"tcx/ingress", BPF_PROG_TYPE_SCHED_CLS, attach_tcx_ingress, ""},
        {"xdp", BPF_PROG_TYPE_XDP, BPF_XDP, ""},
        {"tracepoint/sched/sched_switch", BPF_PROG_TYPE_TRACEPOINT, 0, "sched/sched_switch"},
        {"tp/syscalls/sys_enter_read", BPF_PROG_TYPE_TRACEPOINT, 0, "syscalls/sys_enter_read"},
        {"raw_tp/sched_switch", BPF_PROG_TYPE_RAW_TRACEPOINT, 0, "sched_switch"},
        {"tp_btf/sched_switch", BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, "sched_switch"},
        {"kprobe/tcp_connect", BPF_PROG_TYPE_KPROBE, 0, "tcp_connect"},
        {"kretprobe/tcp_connect", BPF_PROG_TYPE_KPROBE, 0, "tcp_connect"},
        {"uprobe//bin/bash:readline", BPF_PROG_TYPE_KPROBE, 0, "/bin/bash:readline"},
        {"fentry/tcp_v4_connect", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, "tcp_v4_connect"},
        {"fexit/tcp_v4_connect", BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, "tcp_v4_connect"},
        {"iter/task", BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, "task"},
        {"struct_ops/test_1", BPF_PROG_TYPE_STRUCT_OPS, 0, "test_1"},
        {"sk_lookup/", BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP, ""},
    };
    for (const auto& c : cases) {
        auto k = classify_section(c.section);
        ASSERT_TRUE(k) << c.section;
        EXPECT_EQ(k->prog_type, c.type) << c.section;
        EXPECT_EQ(k->expected_attach_type, c.attach) << c.section;
        EXPECT_EQ(k->attach_to, c.attach_to) << c.section;
    }
    EXPECT_FALSE(classify_section("no_such_kind"));
    EXPECT_FALSE(classify_section("sockopsx"));
    auto sleepable = classify_section("fentry.s/do_sys_open");
    ASSERT_TRUE(sleepable);
    EXPECT_TRUE(sleepable->sleepable);
}

}  // namespace
}  // namespace ebpf
