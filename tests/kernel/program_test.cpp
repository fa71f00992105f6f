// Programs on the running kernel: loading, verifier rejections, test runs, info, mmap'd data.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"
#include "test_programs.hpp"

namespace ebpf {
namespace {

using test::KernelTest;
using test::test_bpffs;

class ProgramTest : public KernelTest {};

struct counters {
    uint64_t bytes, packets;
};

TEST_F(ProgramTest, VerifierRejectionCarriesTheVerifierMessage) {
    // r0 is never written: the verifier refuses to return it.
    static constexpr bpf_insn code[] = {insn::exit()};
    auto p = program::load({.type = BPF_PROG_TYPE_SOCKET_FILTER, .insns = code, .name = "bad"});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code(), EACCES);
    EXPECT_NE(p.error().log().find("R0 !read_ok"), std::string::npos) << p.error().log();
    EXPECT_FALSE(p.error().log_truncated());
    const std::string text = p.error().full_message();
    EXPECT_NE(text.find("program bad: load: BPF_PROG_LOAD"), std::string::npos) << text;
    EXPECT_NE(text.find("R0 !read_ok"), std::string::npos) << text;
}

TEST_F(ProgramTest, ALogTooLargeForTheCapIsMarkedTruncated) {
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r1, 0), insn::exit()};
    auto p = program::load({.type = BPF_PROG_TYPE_SOCKET_FILTER,
                            .insns = code,
                            .name = "tiny_log",
                            .log = {.level = 0, .initial_size = 128, .max_size = 128}});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code(), EACCES) << "ENOSPC of the small log must not hide EACCES";
    EXPECT_TRUE(p.error().log_truncated());
    EXPECT_FALSE(p.error().log().empty());
}

TEST_F(ProgramTest, SuccessfulLoadCanReturnItsLog) {
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 0), insn::exit()};
    std::string log;
    auto p = program::load(
        {.type = BPF_PROG_TYPE_SOCKET_FILTER, .insns = code, .name = "logged", .log = {.level = 2}},
        &log);
    ASSERT_OK(p);
    EXPECT_NE(log.find("processed 2 insns"), std::string::npos) << log;
}

TEST_F(ProgramTest, CgroupSkbTestRunCountsThePacket) {
    auto m = map::create({.type = BPF_MAP_TYPE_ARRAY,
                          .key_size = 4,
                          .value_size = 16,
                          .max_entries = 1,
                          .name = "t_skb_cnt"});
    ASSERT_OK(m);
    auto code = test::count_skb_program(m->fd());
    for (uint32_t type : {BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS}) {
        auto p = program::load({.type = BPF_PROG_TYPE_CGROUP_SKB,
                                .insns = code,
                                .name = "t_count_skb",
                                .expected_attach_type = type});
        ASSERT_OK(p);
        // Ethernet header (IPv4) + a 20-byte IPv4 header + 30 bytes of payload.
        std::array<std::byte, 64> pkt{};
        pkt[12] = std::byte{0x08};
        pkt[14] = std::byte{0x45};
        auto run = p->test_run({.data_in = pkt, .repeat = 3});
        ASSERT_OK(run);
        EXPECT_EQ(run->retval, 1u);
    }
    auto a = array<counters>::view(*m);
    ASSERT_OK(a);
    auto c = a->lookup(0);
    ASSERT_OK(c);
    // Two programs, three runs each, each seeing the packet without its Ethernet header.
    EXPECT_EQ(c->packets, 6u);
    EXPECT_EQ(c->bytes, 6u * (64 - 14));
}

TEST_F(ProgramTest, InfoMatchesWhatBpftoolShows) {
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto p = program::load({.type = BPF_PROG_TYPE_SOCK_OPS, .insns = code, .name = "t_info"});
    ASSERT_OK(p);
    auto info = p->info();
    ASSERT_OK(info);
    EXPECT_GT(info->id, 0u);
    EXPECT_EQ(info->type, uint32_t(BPF_PROG_TYPE_SOCK_OPS));
    EXPECT_EQ(info->name, "t_info");
    ASSERT_EQ(info->tag.size(), 16u);
    const std::string json =
        test::run_command("bpftool -j prog show id " + std::to_string(info->id));
    EXPECT_NE(json.find("\"name\":\"t_info\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"tag\":\"" + info->tag + "\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"type\":\"sock_ops\""), std::string::npos) << json;

    auto again = program::from_id(info->id);
    ASSERT_OK(again);
    EXPECT_EQ(again->name(), "t_info");
    EXPECT_EQ(again->type(), uint32_t(BPF_PROG_TYPE_SOCK_OPS));
}

TEST_F(ProgramTest, ProgramsPinAndReopen) {
    test_bpffs fs;
    static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 7), insn::exit()};
    uint32_t id = 0;
    {
        auto p =
            program::load({.type = BPF_PROG_TYPE_SOCKET_FILTER, .insns = code, .name = "t_pinned"});
        ASSERT_OK(p);
        ASSERT_OK(p->pin(fs.path("prog")));
        id = p->info()->id;
    }
    auto p = program::from_pin(fs.path("prog"));
    ASSERT_OK(p);
    EXPECT_EQ(p->info()->id, id);
    std::array<std::byte, 64> pkt{};
    auto run = p->test_run({.data_in = pkt});
    ASSERT_OK(run);
    EXPECT_EQ(run->retval, 7u);
    auto missing = program::from_pin(fs.path("nothing"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code(), ENOENT);
    EXPECT_NE(missing.error().message().find(fs.path("nothing")), std::string::npos);
}

TEST_F(ProgramTest, MmapedArrayWrittenInUserSpaceIsReadByAProgram) {
    auto m = map::create({.type = BPF_MAP_TYPE_ARRAY,
                          .key_size = 4,
                          .value_size = 4,
                          .max_entries = 16,
                          .flags = BPF_F_MMAPABLE,
                          .name = "t_mmap"});
    ASSERT_OK(m);
    auto mapping = m->mmap();
    ASSERT_OK(mapping);
    ASSERT_GE(mapping->size(), 64u);
    auto code = test::read_array_program(m->fd());
    auto p =
        program::load({.type = BPF_PROG_TYPE_SOCKET_FILTER, .insns = code, .name = "t_read_mmap"});
    ASSERT_OK(p);
    std::array<std::byte, 64> pkt{};
    for (uint32_t v : {0x1234u, 0xbeefu}) {
        std::memcpy(mapping->data(), &v, 4);
        auto run = p->test_run({.data_in = pkt});
        ASSERT_OK(run);
        EXPECT_EQ(run->retval, v);
    }
    // And the syscall path sees the same memory.
    EXPECT_EQ(*array<uint32_t>::view(*m)->lookup(0), 0xbeefu);

    auto plain = map::create({.type = BPF_MAP_TYPE_ARRAY,
                              .key_size = 4,
                              .value_size = 4,
                              .max_entries = 1,
                              .name = "t_no_mmap"});
    ASSERT_OK(plain);
    auto refused = plain->mmap();
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message().find("BPF_F_MMAPABLE"), std::string::npos);
}

}  // namespace
}  // namespace ebpf
