// The object loader on the running kernel: the project's own test object (maps of every shape,
// global data, subprograms, .kconfig, CO-RE, tail calls, maps of maps) opened, loaded and run.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "ebpf/collection.hpp"
#include "ebpf/kernel_btf.hpp"
#include "ebpf/typed_map.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

class LoaderTest : public test::KernelTest {
  protected:
    static collection_spec open_spec() {
        auto s = collection_spec::open(EBPF_TEST_OBJECT_LOADER);
        EXPECT_TRUE(s) << s.error().message();
        return s ? std::move(*s) : collection_spec{};
    }
    static int32_t run(collection& c, const char* name) {
        program* p = c.program(name);
        EXPECT_NE(p, nullptr) << name;
        if (!p) {
            return INT32_MIN;
        }
        std::array<std::byte, 64> pkt{};
        auto r = p->test_run({.data_in = pkt});
        EXPECT_TRUE(r) << r.error().message();
        return r ? int32_t(r->retval) : INT32_MIN;
    }
};

TEST_F(LoaderTest, EveryProgramLoadsAndComputesWhatItsSourceSays) {
    auto spec = open_spec();
    ASSERT_EQ(spec.programs.size(), 13u);
    auto c = collection::load(spec);
    ASSERT_OK(c);
    EXPECT_TRUE(c->notes().empty()) << c->notes().front();
    EXPECT_EQ(run(*c, "calls"), 22);
    EXPECT_EQ(run(*c, "globals"), 40 + 2 + 1);
    EXPECT_EQ(run(*c, "globals"), 40 + 2 + 2) << ".bss keeps its value between runs";
    EXPECT_EQ(run(*c, "tail_entry"), 42) << "the prog array's static slot 2 is the tail target";
    EXPECT_EQ(run(*c, "counting"), 1);
    EXPECT_EQ(run(*c, "counting"), 2);
    auto counters = hash<uint32_t, uint64_t>::view(*c->map("counters"));
    ASSERT_OK(counters);
    // Counted under skb->len: the 64-byte test packet without its 14-byte Ethernet header.
    auto seen = counters->lookup(64 - 14);
    ASSERT_OK(seen);
    EXPECT_EQ(seen->value_or(0), 2u);
    EXPECT_EQ(counters->keys()->size(), 1u);
    EXPECT_EQ(c->program("not_by_default"), nullptr) << "'?' sections are not loaded by default";
    EXPECT_EQ(run(*c, "kfunc"), 7) << "a kfunc call resolved through the kernel's BTF";
    auto legacy = array<uint64_t>::view(*c->map("legacy"));
    ASSERT_OK(legacy);
    ASSERT_OK(legacy->update(1, 99));
    EXPECT_EQ(run(*c, "legacy_map"), 99) << "a map from the legacy maps section";
    EXPECT_EQ(run(*c, "callback"), 10) << "bpf_loop called the relocated callback 5 times";
}

TEST_F(LoaderTest, GlobalDataIsMappedIntoUserSpaceAfterLoad) {
    auto spec = open_spec();
    auto c = collection::load(spec);
    ASSERT_OK(c);
    auto mapping = c->map(".data")->mmap();
    ASSERT_OK(mapping);
    const variable_spec* v = spec.variable("data_var");
    ASSERT_NE(v, nullptr);
    const uint32_t value = 1000;
    std::memcpy(mapping->data() + v->offset, &value, sizeof value);
    EXPECT_EQ(run(*c, "globals"), 40 + 1000 + 1);
    // .rodata is frozen: it maps read-only, not writable.
    EXPECT_FALSE(c->map(".rodata")->mmap(/*writable=*/true));
    EXPECT_OK(c->map(".rodata")->mmap(/*writable=*/false));
}

TEST_F(LoaderTest, GlobalVariablesAreSetBeforeLoadAndReadAfter) {
    auto spec = open_spec();
    ASSERT_OK(spec.set_variable<uint32_t>("answer", 100));
    ASSERT_OK(spec.set_variable<uint32_t>("bss_var", 7));
    auto wrong = spec.set_variable<uint64_t>("answer", 1);
    ASSERT_FALSE(wrong);
    EXPECT_NE(wrong.error().message().find("4"), std::string::npos);
    auto c = collection::load(spec);
    ASSERT_OK(c);
    EXPECT_EQ(run(*c, "globals"), 100 + 2 + 8);
    // .rodata is frozen: user space cannot change it after load.
    auto ro = array<uint32_t>::view(*c->map(".rodata"));
    ASSERT_OK(ro);
    EXPECT_EQ(*ro->lookup(0), 100u);
    EXPECT_FALSE(ro->update(0, 1));
    // .data can be changed through the map (or its mmap) and the program sees it.
    auto data = array<uint32_t>::view(*c->map(".data"));
    ASSERT_OK(data->update(0, 50));
    EXPECT_EQ(run(*c, "globals"), 100 + 50 + 9);
}

TEST_F(LoaderTest, KconfigExternsTakeTheRunningKernelsValues) {
    auto spec = open_spec();
    auto config = read_kconfig();
    ASSERT_OK(config);
    const std::string hz = (*config)["CONFIG_HZ"];
    ASSERT_FALSE(hz.empty());
    auto c = collection::load(spec);
    ASSERT_OK(c);
    EXPECT_EQ(run(*c, "kconfig"), std::stoi(hz));
    // A caller-given config replaces the kernel's.
    collection_options o;
    o.kconfig = kconfig_values{{"CONFIG_HZ", "1000"}};
    auto c2 = collection::load(spec, o);
    ASSERT_OK(c2);
    EXPECT_EQ(run(*c2, "kconfig"), 1000);
    // A missing non-weak value is an error naming it.
    o.kconfig = kconfig_values{};
    auto c3 = collection::load(spec, o);
    ASSERT_FALSE(c3);
    EXPECT_NE(c3.error().message().find("CONFIG_HZ"), std::string::npos) << c3.error().message();
}

TEST_F(LoaderTest, CoreRelocationsFollowTheKernelsLayout) {
    auto spec = open_spec();
    auto kernel = kernel_btf();
    ASSERT_OK(kernel);
    auto ids = (*kernel)->find("task_struct", BTF_KIND_STRUCT);
    ASSERT_EQ(ids.size(), 1u);
    btf::type task = (*kernel)->get(ids[0]);
    uint32_t pid_offset = UINT32_MAX;
    for (const auto& m : task.members()) {
        if ((*kernel)->str(m.name_off) == "pid") {
            pid_offset = task.member_bit_offset(m) / 8;
        }
    }
    ASSERT_NE(pid_offset, UINT32_MAX);
    auto c = collection::load(spec);
    ASSERT_OK(c);
    EXPECT_EQ(run(*c, "core_offset"), int32_t(pid_offset));
    EXPECT_EQ(run(*c, "core_size"), int32_t(task.size()));
    EXPECT_GT(task.size(), 8u) << "the local struct has 8 bytes; the kernel's is bigger";
}

TEST_F(LoaderTest, MapsOfMapsGetTheirStaticValues) {
    auto spec = open_spec();
    auto c = collection::load(spec);
    ASSERT_OK(c);
    auto inner = array<uint32_t>::view(*c->map("inner"));
    ASSERT_OK(inner);
    ASSERT_OK(inner->update(0, 1234));
    EXPECT_EQ(run(*c, "map_in_map"), 1234);
}

TEST_F(LoaderTest, MapsPinnedByNameAreReusedAfterACompatibilityCheck) {
    test::test_bpffs fs;
    auto spec = open_spec();
    spec.map("counters")->pinning = pin_by_name;
    collection_options o;
    o.pin_path = fs.path("");
    o.pin_path.pop_back();
    {
        auto c = collection::load(spec, o);
        ASSERT_OK(c);
        auto h = hash<uint32_t, uint64_t>::view(*c->map("counters"));
        ASSERT_OK(h->update(5, 55));
    }
    auto again = collection::load(spec, o);
    ASSERT_OK(again);
    auto h = hash<uint32_t, uint64_t>::view(*again->map("counters"));
    EXPECT_EQ(h->lookup(5)->value_or(0), 55u) << "the pinned map was reused";
    // A spec that disagrees with the pin is refused, naming the difference.
    spec.map("counters")->max_entries = 32;
    auto clash = collection::load(spec, o);
    ASSERT_FALSE(clash);
    EXPECT_NE(clash.error().message().find("max_entries 16, expected 32"), std::string::npos)
        << clash.error().message();
}

TEST_F(LoaderTest, ReplacedMapsAreSharedWithTheNewCollection) {
    auto spec = open_spec();
    auto first = collection::load(spec);
    ASSERT_OK(first);
    auto before = hash<uint32_t, uint64_t>::view(*first->map("counters"));
    ASSERT_OK(before);
    ASSERT_OK(before->update(50, 7));
    collection_options o;
    o.replace_maps["counters"] = first->map("counters");
    auto second = collection::load(spec, o);
    ASSERT_OK(second);
    EXPECT_EQ(run(*second, "counting"), 8) << "the new program counts on in the old map";
    auto h = hash<uint32_t, uint64_t>::view(*first->map("counters"));
    EXPECT_EQ(h->lookup(50)->value_or(0), 8u);
    EXPECT_NE(first->map("legacy")->fd(), second->map("legacy")->fd());
    // A map that disagrees with the spec is refused, naming the difference.
    spec.map("counters")->max_entries = 32;
    auto clash = collection::load(spec, o);
    ASSERT_FALSE(clash);
    EXPECT_NE(clash.error().message().find("replace map counters"), std::string::npos)
        << clash.error().message();
    EXPECT_NE(clash.error().message().find("max_entries 16, expected 32"), std::string::npos)
        << clash.error().message();
}

TEST_F(LoaderTest, OneFailingProgramDoesNotHideTheOthers) {
    auto spec = open_spec();
    // Break one program: a jump out of bounds.
    spec.program("calls")->insns[0] = insn::ja(1000);
    auto strict = collection::load(spec);
    ASSERT_FALSE(strict);
    EXPECT_NE(strict.error().message().find("program calls"), std::string::npos);
    EXPECT_FALSE(strict.error().log().empty()) << "the verifier's log travels with the error";
    collection_options o;
    o.allow_partial = true;
    auto c = collection::load(spec, o);
    ASSERT_OK(c);
    ASSERT_EQ(c->failures().size(), 1u);
    EXPECT_EQ(c->failures()[0].name, "calls");
    EXPECT_EQ(run(*c, "tail_entry"), 42);
}

}  // namespace
}  // namespace ebpf
