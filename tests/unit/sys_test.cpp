// Kernel-free tests of the sys layer through the replaceable bpf(2) entry point.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "ebpf/sys/bpf.hpp"
#include "fake_syscall.hpp"

namespace ebpf {
namespace {

using test::fake_syscall;

int open_devnull() {
    return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

TEST(SysAttrSize, EachCommandPassesOnlyTheBytesItUses) {
    fake_syscall fake([](int cmd, void*, unsigned) -> long {
        switch (cmd) {
            case BPF_MAP_CREATE:
            case BPF_PROG_LOAD:
            case BPF_BTF_LOAD:
            case BPF_OBJ_GET:
            case BPF_LINK_CREATE:
            case BPF_MAP_GET_FD_BY_ID:
            case BPF_ENABLE_STATS:
                return open_devnull();
            default:
                return 0;
        }
    });
    sys::map_create_attr mc{};
    (void)sys::map_create(mc);
    uint32_t k = 0, v = 0;
    (void)sys::map_lookup_elem(3, &k, &v);
    (void)sys::map_update_elem(3, &k, &v);
    (void)sys::map_delete_elem(3, &k);
    (void)sys::map_get_next_key(3, &k, &v);
    (void)sys::map_lookup_and_delete_elem(3, &k, &v);
    sys::map_batch_attr b{};
    (void)sys::map_lookup_batch(b);
    (void)sys::map_lookup_and_delete_batch(b);
    (void)sys::map_update_batch(b);
    (void)sys::map_delete_batch(b);
    (void)sys::map_freeze(3);
    sys::prog_load_attr pl{};
    (void)sys::prog_load(pl);
    (void)sys::obj_pin("/x", 3);
    (void)sys::obj_get("/x");
    sys::prog_attach_attr pa{};
    (void)sys::prog_attach(pa);
    (void)sys::prog_detach(pa);
    sys::prog_query_attr q{};
    (void)sys::prog_query(q);
    sys::link_create_attr lc{};
    (void)sys::link_create(lc);
    sys::link_update_attr lu{};
    (void)sys::link_update(lu);
    (void)sys::link_detach(3);
    sys::btf_load_attr bl{};
    (void)sys::btf_load(bl);
    (void)sys::map_get_fd_by_id(1);
    (void)sys::prog_get_next_id(0);
    uint32_t len = 4;
    (void)sys::obj_get_info_by_fd(3, &v, len);
    sys::test_run_attr tr{};
    (void)sys::prog_test_run(tr);
    (void)sys::enable_stats(BPF_STATS_RUN_TIME);

    const std::pair<int, unsigned> want[] = {
        {BPF_MAP_CREATE, 72},
        {BPF_MAP_LOOKUP_ELEM, 32},
        {BPF_MAP_UPDATE_ELEM, 32},
        {BPF_MAP_DELETE_ELEM, 32},
        {BPF_MAP_GET_NEXT_KEY, 32},
        {BPF_MAP_LOOKUP_AND_DELETE_ELEM, 32},
        {BPF_MAP_LOOKUP_BATCH, 56},
        {BPF_MAP_LOOKUP_AND_DELETE_BATCH, 56},
        {BPF_MAP_UPDATE_BATCH, 56},
        {BPF_MAP_DELETE_BATCH, 56},
        {BPF_MAP_FREEZE, 4},
        {BPF_PROG_LOAD, 144},  // up to log_true_size (6.4); zero tails are accepted by older
        {BPF_OBJ_PIN, 16},
        {BPF_OBJ_GET, 16},
        {BPF_PROG_ATTACH, 20},
        {BPF_PROG_DETACH, 20},
        {BPF_PROG_QUERY, 64},
        {BPF_LINK_CREATE, 16},
        {BPF_LINK_UPDATE, 16},
        {BPF_LINK_DETACH, 4},
        {BPF_BTF_LOAD, 32},
        {BPF_MAP_GET_FD_BY_ID, 12},
        {BPF_PROG_GET_NEXT_ID, 12},
        {BPF_OBJ_GET_INFO_BY_FD, 16},
        {BPF_PROG_TEST_RUN, 76},
        {BPF_ENABLE_STATS, 4},
    };
    ASSERT_EQ(fake.calls().size(), std::size(want));
    for (size_t i = 0; i < std::size(want); ++i) {
        EXPECT_EQ(fake.calls()[i].cmd, want[i].first) << i;
        EXPECT_EQ(fake.calls()[i].size, want[i].second) << sys::command_name(want[i].first);
    }
}

TEST(SysCall, RetriesWhileInterrupted) {
    int n = 0;
    fake_syscall fake([&](int, void*, unsigned) -> long { return ++n < 3 ? -EINTR : 0; });
    uint32_t k = 0, v = 0;
    auto r = sys::map_update_elem(3, &k, &v);
    EXPECT_TRUE(r.has_value());
    EXPECT_EQ(n, 3);
}

TEST(SysCall, ErrorNamesTheCommandAndErrno) {
    fake_syscall fake([](int, void*, unsigned) -> long { return -EPERM; });
    uint32_t k = 0, v = 0;
    auto r = sys::map_update_elem(3, &k, &v);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EPERM);
    EXPECT_EQ(r.error().op(), "BPF_MAP_UPDATE_ELEM");
    EXPECT_NE(r.error().message().find("Operation not permitted (errno 1)"), std::string::npos)
        << r.error().message();
}

TEST(SysCall, EnoentIsAbsenceNotFailure) {
    fake_syscall fake([](int, void*, unsigned) -> long { return -ENOENT; });
    uint32_t k = 0, v = 0;
    auto found = sys::map_lookup_elem(3, &k, &v);
    ASSERT_TRUE(found);
    EXPECT_FALSE(*found);
    auto erased = sys::map_delete_elem(3, &k);
    ASSERT_TRUE(erased);
    EXPECT_FALSE(*erased);
    auto next = sys::prog_get_next_id(7);
    ASSERT_TRUE(next);
    EXPECT_EQ(*next, 0u);
    // ENOENT from an update is a real failure (e.g. BPF_EXIST on a missing key).
    auto upd = sys::map_update_elem(3, &k, &v, BPF_EXIST);
    ASSERT_FALSE(upd);
    EXPECT_EQ(upd.error().code(), ENOENT);
}

TEST(SysCall, NewDescriptorsNeverLandOnStdio) {
    int saved = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
    ASSERT_GE(saved, 0);
    ::close(0);
    int zero = open_devnull();
    ASSERT_EQ(zero, 0);
    {
        fake_syscall fake([](int, void*, unsigned) -> long { return 0; });
        sys::map_create_attr attr{};
        auto f = sys::map_create(attr);
        ASSERT_TRUE(f) << f.error().message();
        EXPECT_GE(f->get(), 3);
        EXPECT_EQ(::fcntl(0, F_GETFD), -1) << "the original descriptor 0 stays open";
        EXPECT_EQ(::fcntl(f->get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    }
    ASSERT_EQ(::dup2(saved, 0), 0);
    ::close(saved);
}

// Plays a kernel that rejects the program and needs `true_size` bytes of log for it.
struct verifier_script {
    explicit verifier_script(uint32_t ts, int reject = EACCES)
        : true_size(ts), reject_errno(reject) {}
    uint32_t true_size;  // 0: an old kernel that does not report log_true_size
    int reject_errno;
    std::vector<uint32_t> sizes;  // log_size of each call
    std::vector<uint32_t> levels;

    long operator()(int cmd, void* p, unsigned) {
        EXPECT_EQ(cmd, BPF_PROG_LOAD);
        auto* a = static_cast<sys::prog_load_attr*>(p);
        sizes.push_back(a->log_size);
        levels.push_back(a->log_level);
        if (a->log_level == 0) {
            EXPECT_EQ(a->log_buf, 0u);
            return -reject_errno;
        }
        const std::string full = log_text();
        char* buf = reinterpret_cast<char*>(a->log_buf);
        if (true_size) {
            a->log_true_size = true_size;
        }
        if (full.size() + 1 > a->log_size) {
            // 6.4+ keeps the tail of the log (rotating); write what fits, NUL-terminated.
            size_t keep = a->log_size - 1;
            std::memcpy(buf, full.data() + full.size() - keep, keep);
            buf[keep] = '\0';
            return -ENOSPC;
        }
        std::memcpy(buf, full.c_str(), full.size() + 1);
        return -reject_errno;
    }
    std::string log_text() const {
        std::string s;
        while (s.size() < 150000) {
            s += "0: (b7) r0 = 0\n";
        }
        s += "R0 !read_ok\nprocessed 1 insns\n";
        return s;
    }
};

TEST(ProgLoadLog, FirstTryHasNoLogThenGrowsToTheSizeTheKernelReports) {
    verifier_script script(0);
    const std::string want = script.log_text();
    script.true_size = uint32_t(want.size() + 1);
    fake_syscall fake(std::ref(script));
    sys::prog_load_attr attr{};
    auto r = sys::prog_load(attr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EACCES);
    EXPECT_EQ(r.error().op(), "BPF_PROG_LOAD");
    EXPECT_FALSE(r.error().log_truncated());
    EXPECT_EQ(r.error().log(), want);
    ASSERT_EQ(script.sizes.size(), 3u);
    EXPECT_EQ(script.levels[0], 0u);
    EXPECT_EQ(script.levels[1], 1u);
    EXPECT_EQ(script.sizes[1], 64u * 1024);
    EXPECT_EQ(script.sizes[2], want.size() + 1);
    // The attr is left without a dangling log buffer.
    EXPECT_EQ(attr.log_buf, 0u);
}

TEST(ProgLoadLog, OldKernelsGrowFourfoldOnEnospc) {
    verifier_script script(0);
    fake_syscall fake(std::ref(script));
    sys::prog_load_attr attr{};
    auto r = sys::prog_load(attr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), EACCES);
    EXPECT_FALSE(r.error().log_truncated());
    EXPECT_EQ(r.error().log(), script.log_text());
    ASSERT_EQ(script.sizes.size(), 3u);
    EXPECT_EQ(script.sizes[1], 64u * 1024);
    EXPECT_EQ(script.sizes[2], 256u * 1024);
}

TEST(ProgLoadLog, ALogLargerThanTheCapIsMarkedTruncatedAndKeepsTheRealErrno) {
    verifier_script script(0, EINVAL);
    fake_syscall fake(std::ref(script));
    sys::prog_load_attr attr{};
    sys::log_options opts{.level = 0, .initial_size = 1024, .max_size = 8192};
    auto r = sys::prog_load(attr, opts);
    ASSERT_FALSE(r);
    // ENOSPC from the log retry must not hide why the program was rejected.
    EXPECT_EQ(r.error().code(), EINVAL);
    EXPECT_TRUE(r.error().log_truncated());
    EXPECT_EQ(r.error().log().size(), 8191u);
    EXPECT_NE(r.error().log().find("R0 !read_ok"), std::string::npos) << "the tail is kept";
    EXPECT_NE(r.error().full_message().find("truncated"), std::string::npos);
    ASSERT_EQ(script.sizes.size(), 4u);  // no log, 1024, 4096, 8192
    EXPECT_EQ(script.sizes.back(), 8192u);
}

TEST(ProgLoadLog, EagainIsRetried) {
    int n = 0;
    fake_syscall fake(
        [&](int, void*, unsigned) -> long { return ++n < 3 ? -EAGAIN : open_devnull(); });
    sys::prog_load_attr attr{};
    auto r = sys::prog_load(attr);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(n, 3);
}

TEST(ProgLoadLog, RequestedLogIsReturnedOnSuccess) {
    fake_syscall fake([](int, void* p, unsigned) -> long {
        auto* a = static_cast<sys::prog_load_attr*>(p);
        EXPECT_EQ(a->log_level, 2u);
        std::strcpy(reinterpret_cast<char*>(a->log_buf), "verified\n");
        return open_devnull();
    });
    sys::prog_load_attr attr{};
    std::string log;
    auto r = sys::prog_load(attr, {.level = 2}, &log);
    ASSERT_TRUE(r);
    EXPECT_EQ(log, "verified\n");
    EXPECT_EQ(fake.calls().size(), 1u);
}

TEST(BtfLoadLog, UsesTheSameLogPolicy) {
    int n = 0;
    fake_syscall fake([&](int cmd, void* p, unsigned) -> long {
        EXPECT_EQ(cmd, BPF_BTF_LOAD);
        auto* a = static_cast<sys::btf_load_attr*>(p);
        if (n++ == 0) {
            EXPECT_EQ(a->btf_log_level, 0u);
            return -EINVAL;
        }
        std::strcpy(reinterpret_cast<char*>(a->btf_log_buf), "[1] STRUCT foo size=4 vlen=1\n");
        return -EINVAL;
    });
    sys::btf_load_attr attr{};
    auto r = sys::btf_load(attr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().op(), "BPF_BTF_LOAD");
    EXPECT_EQ(r.error().log(), "[1] STRUCT foo size=4 vlen=1\n");
}

TEST(SysBatch, EnoentEndsALookupWalkButFailsAnUpdate) {
    fake_syscall fake([](int, void* p, unsigned) -> long {
        static_cast<sys::map_batch_attr*>(p)->count = 2;
        return -ENOENT;
    });
    sys::map_batch_attr attr{};
    attr.count = 10;
    auto more = sys::map_lookup_batch(attr);
    ASSERT_TRUE(more);
    EXPECT_FALSE(*more);
    EXPECT_EQ(attr.count, 2u);
    auto upd = sys::map_update_batch(attr);
    ASSERT_FALSE(upd);
    EXPECT_NE(upd.error().message().find("2 elements done"), std::string::npos);
}

}  // namespace
}  // namespace ebpf
