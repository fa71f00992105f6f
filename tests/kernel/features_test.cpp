// Feature probes on the running kernel (6.18 here: everything the agent uses is present).
#include <gtest/gtest.h>

#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

class FeaturesTest : public test::KernelTest {};

TEST_F(FeaturesTest, MapTypesTheAgentUsesArePresent) {
    for (uint32_t t : {BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_HASH,
                       BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_RINGBUF,
                       BPF_MAP_TYPE_HASH_OF_MAPS}) {
        auto r = features::map_type(t);
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_TRUE(*r) << "map type " << t;
    }
    auto unknown = features::map_type(127);
    ASSERT_TRUE(unknown) << unknown.error().message();
    EXPECT_FALSE(*unknown);
}

TEST_F(FeaturesTest, ProgramTypesTheAgentUsesArePresent) {
    for (uint32_t t : {BPF_PROG_TYPE_SOCK_OPS, BPF_PROG_TYPE_CGROUP_SKB,
                       BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_PROG_TYPE_SOCKET_FILTER}) {
        auto r = features::prog_type(t);
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_TRUE(*r) << "program type " << t;
    }
    auto unknown = features::prog_type(127);
    ASSERT_TRUE(unknown) << unknown.error().message();
    EXPECT_FALSE(*unknown);
}

TEST_F(FeaturesTest, CgroupLinksArePresent) {
    auto r = features::cgroup_links();
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(*r);
}

}  // namespace
}  // namespace ebpf
