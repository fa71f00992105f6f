// Kernel-free tests of CO-RE relocation: local and target BTF built by the test, relocations
// applied to hand-written instructions.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/builder.hpp"
#include "ebpf/core/candidate_cache.hpp"
#include "ebpf/core/relocate.hpp"
#include "ebpf/spec/insn.hpp"

namespace ebpf::core {
namespace {

using btf::builder;
using namespace ebpf::insn;

constexpr uint8_t poison_code = BPF_JMP | BPF_CALL;

// Local and target BTF built side by side; each relocation parses both afresh (the access
// string is added to the local BTF first, as the compiler does).
struct core_case {
    builder local;
    builder target;

    // Applies a relocation to insns[index], against the target BTF (or the local one itself).
    result<outcome> apply(std::vector<bpf_insn>& insns, uint32_t kind, uint32_t type_id,
                          std::string_view access, size_t index = 0, bool self = false) {
        btf::core_relo r{uint32_t(index * sizeof(bpf_insn)), type_id, local.str(access), kind};
        auto l = btf::spec::parse(local.bytes());
        EXPECT_TRUE(l) << l.error().message();
        auto t = btf::spec::parse(target.bytes());
        EXPECT_TRUE(self || t) << t.error().message();
        const btf::spec& against = self ? *l : *t;
        candidate_cache cache(against);
        return core::apply(insns, index, r, *l, against, cache);
    }

    // Relocates "r0 = local_value" and checks that the immediate now holds the target value.
    result<outcome> value(uint32_t kind, uint32_t type_id, std::string_view access,
                          int32_t local_value, bool self = false) {
        std::vector<bpf_insn> insns{mov64_imm(r0, local_value)};
        auto out = apply(insns, kind, type_id, access, 0, self);
        if (out && !out->poisoned) {
            EXPECT_EQ(insns[0].imm, int32_t(out->target_value));
            EXPECT_EQ(insns[0].code, BPF_ALU64 | BPF_MOV | BPF_K);
        }
        return out;
    }
};

TEST(CoreEssentialName, CutsAtTheLastFlavorSeparator) {
    EXPECT_EQ(essential_name("foo"), "foo");
    EXPECT_EQ(essential_name("foo___v1"), "foo");
    EXPECT_EQ(essential_name("foo___v1___v2"), "foo___v1");
    EXPECT_EQ(essential_name("a___b"), "a");
    // The separator needs a non-underscore on both sides.
    EXPECT_EQ(essential_name("foo___"), "foo___");
    EXPECT_EQ(essential_name("foo____v"), "foo____v");
    EXPECT_EQ(essential_name("___foo"), "___foo");
    EXPECT_EQ(essential_name("_x___y"), "_x");
    EXPECT_EQ(essential_name(""), "");
}

TEST(CoreCandidateCache, FindsFlavorsOfCompatibleKinds) {
    builder b;
    uint32_t u32 = b.add_int("unsigned int", 4);
    uint32_t foo = b.add_struct("foo", 4, {{"a", u32, 0}});
    uint32_t foo_v2 = b.add_struct("foo___v2", 4, {{"a", u32, 0}});
    b.add_union("foo___u", 4, {{"a", u32, 0}});
    b.add_typedef("foo", foo);
    b.add_struct("foobar", 4, {{"a", u32, 0}});
    uint32_t e = b.add_enum("state", 4, {{"A", 1}});
    uint32_t e64 = b.add_enum64("state___big", 8, {{"A", 1}});
    auto s = btf::spec::parse(b.bytes());
    ASSERT_TRUE(s);
    candidate_cache cache(*s);
    EXPECT_EQ(cache.find("foo", BTF_KIND_STRUCT), (std::vector<uint32_t>{foo, foo_v2}));
    EXPECT_EQ(cache.find("foo___local", BTF_KIND_STRUCT), (std::vector<uint32_t>{foo, foo_v2}));
    EXPECT_EQ(cache.find("foo", BTF_KIND_TYPEDEF).size(), 1u);
    EXPECT_EQ(cache.find("state", BTF_KIND_ENUM), (std::vector<uint32_t>{e, e64}));
    EXPECT_EQ(cache.find("state", BTF_KIND_ENUM64), (std::vector<uint32_t>{e, e64}));
    EXPECT_TRUE(cache.find("bar", BTF_KIND_STRUCT).empty());
    EXPECT_TRUE(cache.find("", BTF_KIND_STRUCT).empty());
}

TEST(CoreFieldOffset, FlavoredLocalTypeMatchesReorderedTarget) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t foo = c.local.add_struct("foo___v1", 8, {{"a", u32, 0}, {"b", u32, 32}});
    uint32_t tu32 = c.target.add_int("unsigned int", 4);
    uint32_t tfoo = c.target.add_struct("foo", 8, {{"b", tu32, 0}, {"a", tu32, 32}});

    auto b = c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1", 4);
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_FALSE(b->poisoned);
    EXPECT_EQ(b->local_value, 4u);
    EXPECT_EQ(b->target_value, 0u);
    EXPECT_EQ(b->target_id, tfoo);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:0", 0)->target_value, 4u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_SIZE, foo, "0:1", 4)->target_value, 4u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_EXISTS, foo, "0:1", 1)->target_value, 1u);

    // A load's offset is patched the same way.
    std::vector<bpf_insn> insns{ldx_mem(BPF_W, r0, r1, 4), exit()};
    ASSERT_TRUE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1"));
    EXPECT_EQ(insns[0].off, 0);
    EXPECT_EQ(insns[0].code, BPF_LDX | BPF_W | BPF_MEM);
}

TEST(CoreFieldOffset, DescendsIntoAnonymousMembers) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t anon = c.local.add_struct("", 8, {{"a", i, 0}, {"b", i, 32}});
    uint32_t outer = c.local.add_struct("outer", 12, {{"x", i, 0}, {"", anon, 32}});

    // Target: b inside an anonymous union, a after x, and an extra level of nesting for x.
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t tl = c.target.add_int("long", 8, BTF_INT_SIGNED);
    uint32_t tu = c.target.add_union("", 8, {{"b", ti, 0}, {"c", tl, 0}});
    uint32_t tx = c.target.add_struct("", 4, {{"x", ti, 0}});
    c.target.add_struct("outer", 16, {{"", tu, 0}, {"", tx, 64}, {"a", ti, 96}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, outer, "0:1:1", 8)->target_value, 0u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, outer, "0:1:0", 4)->target_value, 12u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, outer, "0:0", 0)->target_value, 8u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_SIGNED, outer, "0:1:1", 1)->target_value, 1u);
}

TEST(CoreFieldOffset, ArraysOfOtherLengthsAndElementSizes) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t arr4 = c.local.add_array(i, i, 4);
    uint32_t s = c.local.add_struct("s", 20, {{"pad", i, 0}, {"arr", arr4, 32}});

    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t tl = c.target.add_int("long", 8, BTF_INT_SIGNED);
    uint32_t larr3 = c.target.add_array(tl, ti, 3);
    c.target.add_struct("s", 32, {{"pad", tl, 0}, {"arr", larr3, 64}});

    // arr[2]: 4 + 2 * 4 locally, 8 + 2 * 8 in the target.
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1:2", 12)->target_value, 24u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_SIZE, s, "0:1:2", 4)->target_value, 8u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_SIZE, s, "0:1", 16)->target_value, 24u);
    // arr[3] is past the target's three elements: absent there.
    EXPECT_EQ(c.value(BPF_CORE_FIELD_EXISTS, s, "0:1:3", 1)->target_value, 0u);
    auto past = c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1:3", 16);
    ASSERT_TRUE(past);
    EXPECT_TRUE(past->poisoned);
    // Locally, an index past a fixed array is an error in the object.
    auto bad = c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1:4", 20);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message().find("past an array of 4"), std::string::npos)
        << bad.error().message();
}

TEST(CoreFieldOffset, FlexibleArrayTakesAnyIndex) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t flex = c.local.add_array(i, i, 0);
    uint32_t pkt = c.local.add_struct("pkt", 4, {{"len", i, 0}, {"data", flex, 32}});
    uint32_t zero_not_last =
        c.local.add_struct("bad", 8, {{"data", flex, 0}, {"len", i, 0}, {"x", i, 32}});

    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t tflex = c.target.add_array(ti, ti, 0);
    c.target.add_struct("pkt", 8, {{"flags", ti, 0}, {"len", ti, 32}, {"data", tflex, 64}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, pkt, "0:1:5", 24)->target_value, 28u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, pkt, "0:1", 4)->target_value, 8u);
    // A zero-length array that is not the last member is not flexible.
    EXPECT_FALSE(c.value(BPF_CORE_FIELD_BYTE_OFFSET, zero_not_last, "0:0:1", 4));
}

TEST(CoreFieldOffset, PointerAsArrayScalesByTheTargetSize) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 8, {{"a", i, 0}, {"b", i, 32}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t tl = c.target.add_int("long", 8, BTF_INT_SIGNED);
    c.target.add_struct("foo", 16, {{"x", tl, 0}, {"a", ti, 64}, {"b", ti, 96}});

    // p[2].b: 2 * 8 + 4 locally, 2 * 16 + 12 in the target.
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "2:1", 20)->target_value, 44u);
    // &p[1] and sizeof(p[0]).
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "1", 8)->target_value, 16u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_SIZE, foo, "0", 8)->target_value, 16u);
}

TEST(CoreFieldOffset, ModifiersAndTypedefsAreSkipped) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t inner = c.local.add_struct("inner", 4, {{"v", c.local.add_volatile(i), 0}});
    uint32_t outer = c.local.add_struct("outer", 8, {{"x", i, 0}, {"in", inner, 32}});

    // The target wraps everything in typedefs and qualifiers, and its root is a typedef too.
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t my_int = c.target.add_typedef("my_int", c.target.add_const(ti));
    uint32_t tinner = c.target.add_struct("inner", 8, {{"pad", ti, 0}, {"v", my_int, 32}});
    uint32_t inner_t = c.target.add_typedef("inner_t", c.target.add_volatile(tinner));
    c.target.add_struct("outer", 12, {{"in", c.target.add_const(inner_t), 0}, {"x", ti, 64}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, outer, "0:1:0", 4)->target_value, 4u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, outer, "0:0", 0)->target_value, 8u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_SIGNED, outer, "0:1:0", 1)->target_value, 1u);
}

TEST(CoreFieldSigned, IntsAndEnumsCarryTheirSignedness) {
    core_case c;
    uint32_t u8 = c.local.add_int("unsigned char", 1);
    uint32_t e = c.local.add_enum("mode", 4, {{"A", 0}});
    uint32_t s = c.local.add_struct("s", 8, {{"b", u8, 0}, {"m", e, 32}});

    uint32_t ts8 = c.target.add_int("signed char", 1, BTF_INT_SIGNED);
    uint32_t tbool = c.target.add_int("_Bool", 1, BTF_INT_BOOL);
    uint32_t te = c.target.add_enum("mode", 4, {{"A", -1}}, /*is_signed=*/true);
    c.target.add_struct("s", 8, {{"b", ts8, 0}, {"flag", tbool, 8}, {"m", te, 32}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_SIGNED, s, "0:0", 0)->target_value, 1u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_SIGNED, s, "0:1", 0)->target_value, 1u);
}

TEST(CoreType, ALoopInTheTargetIsAnErrorNotAHang) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo_t = c.local.add_typedef("foo_t", i);
    // Target typedef foo_t refers to a typedef that refers back to it.
    uint32_t next = c.target.count() + 1;
    c.target.add_typedef("foo_t", next + 1);
    c.target.add_typedef("bar_t", next);

    auto out = c.value(BPF_CORE_TYPE_EXISTS, foo_t, "0", 1);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code(), ELOOP);
}

TEST(CoreBitfield, WidthOffsetAndBaseTypeChanges) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t s32 = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t bits =
        c.local.add_struct("bits", 4, {{"a", u32, 0, 3}, {"b", u32, 3, 5}, {"c", s32, 8, 4}});

    // b becomes a u64:20 at bit 10; c an u8:7 at bit 37, which straddles a byte boundary and
    // needs a 2-byte load at byte 4.
    uint32_t tu64 = c.target.add_int("unsigned long long", 8);
    uint32_t tu8 = c.target.add_int("unsigned char", 1);
    c.target.add_struct("bits", 16, {{"a", tu64, 0, 10}, {"b", tu64, 10, 20}, {"c", tu8, 37, 7}});

    struct expect {
        uint32_t kind;
        const char* access;
        int32_t local;
        uint64_t target;
    };
    const expect cases[] = {
        {BPF_CORE_FIELD_BYTE_OFFSET, "0:1", 0, 0},  {BPF_CORE_FIELD_BYTE_SIZE, "0:1", 4, 8},
        {BPF_CORE_FIELD_LSHIFT_U64, "0:1", 56, 34}, {BPF_CORE_FIELD_RSHIFT_U64, "0:1", 59, 44},
        {BPF_CORE_FIELD_SIGNED, "0:1", 0, 0},       {BPF_CORE_FIELD_BYTE_OFFSET, "0:2", 0, 4},
        {BPF_CORE_FIELD_BYTE_SIZE, "0:2", 4, 2},    {BPF_CORE_FIELD_LSHIFT_U64, "0:2", 52, 52},
        {BPF_CORE_FIELD_RSHIFT_U64, "0:2", 60, 57}, {BPF_CORE_FIELD_SIGNED, "0:2", 1, 0},
    };
    for (const expect& e : cases) {
        auto out = c.value(e.kind, bits, e.access, e.local);
        ASSERT_TRUE(out) << out.error().message();
        EXPECT_EQ(out->local_value, uint64_t(e.local)) << relo_kind_name(e.kind) << " " << e.access;
        EXPECT_EQ(out->target_value, e.target) << relo_kind_name(e.kind) << " " << e.access;
    }
    // Where a bitfield load starts is not checked against the instruction (the compiler may
    // place it differently); the right shift is.
    EXPECT_TRUE(c.value(BPF_CORE_FIELD_BYTE_OFFSET, bits, "0:1", 3));
    EXPECT_FALSE(c.value(BPF_CORE_FIELD_RSHIFT_U64, bits, "0:1", 3));
}

TEST(CoreBitfield, BecomesAPlainField) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t bits = c.local.add_struct("bits", 4, {{"a", u32, 0, 3}, {"b", u32, 3, 5}});
    uint32_t tu16 = c.target.add_int("unsigned short", 2);
    c.target.add_struct("bits", 4, {{"a", tu16, 0}, {"b", tu16, 16}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, bits, "0:1", 0)->target_value, 2u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_SIZE, bits, "0:1", 4)->target_value, 2u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_LSHIFT_U64, bits, "0:1", 56)->target_value, 48u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_RSHIFT_U64, bits, "0:1", 59)->target_value, 48u);
}

TEST(CoreBitfield, TooWideForOneLoadFails) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t bits = c.local.add_struct("bits", 4, {{"b", u32, 0, 8}});
    uint32_t tu64 = c.target.add_int("unsigned long long", 8);
    c.target.add_struct("bits", 16, {{"b", tu64, 60, 8}});

    auto out = c.value(BPF_CORE_FIELD_BYTE_OFFSET, bits, "0:0", 0);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code(), E2BIG);
    EXPECT_NE(out.error().message().find("64-bit load"), std::string::npos)
        << out.error().message();
}

TEST(CoreEnumval, ValuesByEnumeratorName) {
    core_case c;
    uint32_t e = c.local.add_enum("state", 4, {{"ONE", 1}, {"TWO", 2}, {"GONE", 3}});
    c.target.add_enum("state", 4, {{"ZERO", 0}, {"TWO", 20}, {"ONE", -10}});

    EXPECT_EQ(c.value(BPF_CORE_ENUMVAL_VALUE, e, "1", 2)->target_value, 20u);
    EXPECT_EQ(c.value(BPF_CORE_ENUMVAL_VALUE, e, "0", 1)->target_value, uint64_t(-10));
    EXPECT_EQ(c.value(BPF_CORE_ENUMVAL_EXISTS, e, "0", 1)->target_value, 1u);

    // A missing enumerator: exists is 0, its value poisons.
    auto exists = c.value(BPF_CORE_ENUMVAL_EXISTS, e, "2", 1);
    ASSERT_TRUE(exists);
    EXPECT_FALSE(exists->poisoned);
    EXPECT_EQ(exists->target_value, 0u);
    auto value = c.value(BPF_CORE_ENUMVAL_VALUE, e, "2", 3);
    ASSERT_TRUE(value);
    EXPECT_TRUE(value->poisoned);
    EXPECT_NE(value->why.find("enumval_value of enum state::GONE via 2"), std::string::npos)
        << value->why;
}

TEST(CoreEnumval, Enum64ValuesFillBothHalvesOfAnLdImm64) {
    core_case c;
    uint32_t big = c.local.add_enum64("big", 8, {{"HUGE", 0x1ffffffffll}, {"NEG", -2}});
    uint32_t small = c.local.add_enum("flags", 4, {{"F", 7}});
    c.target.add_enum64("big", 8, {{"NEG", -3}, {"HUGE", 0x2ffffffffll}});
    c.target.add_enum64("flags", 8, {{"F", int64_t(1) << 40}});

    std::vector<bpf_insn> insns{ld_imm64_lo(r1, 0, -1), ld_imm64_hi(1)};
    auto huge = c.apply(insns, BPF_CORE_ENUMVAL_VALUE, big, "0");
    ASSERT_TRUE(huge) << huge.error().message();
    EXPECT_EQ(huge->target_value, 0x2ffffffffull);
    EXPECT_EQ(insns[0].imm, -1);
    EXPECT_EQ(insns[1].imm, 2);

    insns = {ld_imm64_lo(r1, 0, -2), ld_imm64_hi(-1)};
    ASSERT_TRUE(c.apply(insns, BPF_CORE_ENUMVAL_VALUE, big, "1"));
    EXPECT_EQ(insns[0].imm, -3);
    EXPECT_EQ(insns[1].imm, -1);

    // A 32-bit local enum relocates to a 64-bit target enum.
    insns = {ld_imm64_lo(r1, 0, 7), ld_imm64_hi(0)};
    ASSERT_TRUE(c.apply(insns, BPF_CORE_ENUMVAL_VALUE, small, "0"));
    EXPECT_EQ(insns[0].imm, 0);
    EXPECT_EQ(insns[1].imm, 1 << 8);
}

TEST(CoreEnumval, MissingValuePoisonsBothHalvesOfAnLdImm64) {
    core_case c;
    uint32_t e = c.local.add_enum("state", 4, {{"GONE", 3}});
    c.target.add_enum("state", 4, {{"ONE", 1}});

    std::vector<bpf_insn> insns{ld_imm64_lo(r1, 0, 3), ld_imm64_hi(0), exit()};
    auto out = c.apply(insns, BPF_CORE_ENUMVAL_VALUE, e, "0");
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_TRUE(out->poisoned);
    for (int i : {0, 1}) {
        EXPECT_EQ(insns[i].code, poison_code);
        EXPECT_EQ(insns[i].imm, 195896080);
    }
    EXPECT_EQ(insns[2].code, BPF_JMP | BPF_EXIT);
}

TEST(CoreType, ExistsSizeAndIds) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 8, {{"a", i, 0}, {"b", i, 32}});
    uint32_t foo_t = c.local.add_typedef("foo_t", foo);
    uint32_t gone = c.local.add_struct("gone", 4, {{"a", i, 0}});

    uint32_t tl = c.target.add_int("long", 8, BTF_INT_SIGNED);
    uint32_t tfoo = c.target.add_struct("foo", 16, {{"a", tl, 0}, {"b", tl, 64}});
    c.target.add_typedef("foo_t", tfoo);

    EXPECT_EQ(c.value(BPF_CORE_TYPE_EXISTS, foo, "0", 1)->target_value, 1u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_SIZE, foo, "0", 8)->target_value, 16u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_EXISTS, foo_t, "0", 1)->target_value, 1u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_SIZE, foo_t, "0", 8)->target_value, 16u);
    // The instruction's type id is not checked: ids move when objects are linked.
    EXPECT_EQ(c.value(BPF_CORE_TYPE_ID_TARGET, foo, "0", 1234)->target_value, tfoo);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_ID_LOCAL, foo, "0", 0)->target_value, foo);

    // A missing type is 0 for every type relocation, never a poison.
    for (uint32_t kind : {BPF_CORE_TYPE_EXISTS, BPF_CORE_TYPE_SIZE, BPF_CORE_TYPE_MATCHES,
                          BPF_CORE_TYPE_ID_TARGET}) {
        int32_t local = kind == BPF_CORE_TYPE_SIZE ? 4 : 1;
        auto out = c.value(kind, gone, "0", local);
        ASSERT_TRUE(out) << out.error().message();
        EXPECT_FALSE(out->poisoned) << relo_kind_name(kind);
        EXPECT_EQ(out->target_value, 0u) << relo_kind_name(kind);
    }
}

TEST(CoreType, MatchesComparesMembersSignednessAndEnumerators) {
    auto matches = [](auto build_target) {
        core_case c;
        uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
        uint32_t u = c.local.add_int("unsigned int", 4);
        uint32_t fwd = c.local.add_fwd("peer");
        uint32_t task = c.local.add_struct(
            "task", 16, {{"pid", i, 0}, {"flags", u, 32}, {"peer", c.local.add_ptr(fwd), 64}});
        build_target(c.target);
        auto exists = c.value(BPF_CORE_TYPE_EXISTS, task, "0", 1);
        auto out = c.value(BPF_CORE_TYPE_MATCHES, task, "0", 1);
        EXPECT_TRUE(exists && out);
        // Whatever matches also exists.
        EXPECT_TRUE(exists->target_value >= out->target_value);
        return out->target_value;
    };
    // Extra and reordered members, and a pointer to the struct the local side declares only.
    EXPECT_EQ(matches([](builder& t) {
                  uint32_t i = t.add_int("int", 4, BTF_INT_SIGNED);
                  uint32_t u = t.add_int("unsigned int", 4);
                  uint32_t peer = t.add_struct("peer", 4, {{"x", i, 0}});
                  t.add_struct("task", 24,
                               {{"state", i, 0},
                                {"peer", t.add_ptr(peer), 64},
                                {"flags", u, 128},
                                {"pid", i, 160}});
              }),
              1u);
    // pid is unsigned in the target.
    EXPECT_EQ(matches([](builder& t) {
                  uint32_t i = t.add_int("int", 4, BTF_INT_SIGNED);
                  uint32_t u = t.add_int("unsigned int", 4);
                  uint32_t peer = t.add_fwd("peer");
                  t.add_struct("task", 16,
                               {{"pid", u, 0}, {"flags", u, 32}, {"peer", t.add_ptr(peer), 64}});
                  (void)i;
              }),
              0u);
    // flags is missing.
    EXPECT_EQ(matches([](builder& t) {
                  uint32_t i = t.add_int("int", 4, BTF_INT_SIGNED);
                  uint32_t peer = t.add_fwd("peer");
                  t.add_struct("task", 16, {{"pid", i, 0}, {"peer", t.add_ptr(peer), 64}});
              }),
              0u);

    // Enums: the target must have every local enumerator, by name, in an enum of the same size.
    core_case e;
    uint32_t local_enum = e.local.add_enum("mode", 4, {{"A", 1}, {"B", 2}});
    e.target.add_enum("mode", 4, {{"B", 7}, {"C", 8}, {"A", 9}});
    EXPECT_EQ(e.value(BPF_CORE_TYPE_MATCHES, local_enum, "0", 1)->target_value, 1u);
    core_case e2;
    uint32_t local_enum2 = e2.local.add_enum("mode", 4, {{"A", 1}, {"B", 2}});
    e2.target.add_enum("mode", 4, {{"A", 1}});
    EXPECT_EQ(e2.value(BPF_CORE_TYPE_MATCHES, local_enum2, "0", 1)->target_value, 0u);
}

TEST(CoreFieldExists, MissingFieldIsZeroNotPoison) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t skb = c.local.add_struct("sk_buff", 8, {{"len", u32, 0}, {"gone", u32, 32}});
    uint32_t tu32 = c.target.add_int("unsigned int", 4);
    c.target.add_struct("sk_buff", 4, {{"len", tu32, 0}});

    auto out = c.value(BPF_CORE_FIELD_EXISTS, skb, "0:1", 1);
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_FALSE(out->poisoned);
    EXPECT_TRUE(out->why.empty());
    EXPECT_EQ(out->local_value, 1u);
    EXPECT_EQ(out->target_value, 0u);
}

TEST(CoreFieldOffset, MissingFieldPoisonsTheInstruction) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t skb = c.local.add_struct("sk_buff", 8, {{"len", u32, 0}, {"gone", u32, 32}});
    uint32_t only_local = c.local.add_struct("only_local", 4, {{"x", u32, 0}});
    uint32_t tu32 = c.target.add_int("unsigned int", 4);
    c.target.add_struct("sk_buff", 4, {{"len", tu32, 0}});

    std::vector<bpf_insn> insns{mov64_imm(r0, 0), ldx_mem(BPF_W, r0, r1, 4), exit()};
    auto out = c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, skb, "0:1", 1);
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_TRUE(out->poisoned);
    EXPECT_EQ(out->why,
              "field_byte_offset of struct sk_buff::gone via 0:1: not found in any of the 1 "
              "candidates in target BTF (first: struct sk_buff [2])");
    EXPECT_EQ(insns[1].code, poison_code);
    EXPECT_EQ(insns[1].imm, poison_helper_id);
    EXPECT_EQ(insns[1].dst_reg, 0);
    EXPECT_EQ(insns[1].src_reg, 0);
    EXPECT_EQ(insns[1].off, 0);
    // The neighbours are untouched.
    EXPECT_EQ(insns[0].code, BPF_ALU64 | BPF_MOV | BPF_K);
    EXPECT_EQ(insns[2].code, BPF_JMP | BPF_EXIT);

    auto none = c.value(BPF_CORE_FIELD_BYTE_OFFSET, only_local, "0:0", 0);
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->poisoned);
    EXPECT_EQ(none->why,
              "field_byte_offset of struct only_local::x via 0:0: no candidate in target BTF");
}

TEST(CoreAmbiguity, FlavorsThatDisagreeFail) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 4, {{"x", i, 0}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    c.target.add_struct("foo___a", 4, {{"x", ti, 0}});
    c.target.add_struct("foo___b", 8, {{"pad", ti, 0}, {"x", ti, 32}});

    auto out = c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:0", 0);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code(), EINVAL);
    EXPECT_EQ(out.error().message(),
              "CO-RE relocation: field_byte_offset of struct foo::x via 0:0: field offset "
              "ambiguous: struct foo___a [2] has it at bit 0, struct foo___b [3] at bit 32: "
              "Invalid argument (errno 22)");
}

TEST(CoreAmbiguity, SameOffsetDifferentDecisionFails) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 4, {{"x", i, 0}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t tl = c.target.add_int("long", 8, BTF_INT_SIGNED);
    c.target.add_struct("foo___a", 4, {{"x", ti, 0}});
    c.target.add_struct("foo___b", 8, {{"x", tl, 0}});

    EXPECT_TRUE(c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:0", 0));
    auto out = c.value(BPF_CORE_FIELD_BYTE_SIZE, foo, "0:0", 4);
    ASSERT_FALSE(out);
    EXPECT_NE(out.error().message().find("relocation decision ambiguous: struct foo___a [3] gives "
                                         "4, struct foo___b [4] gives 8"),
              std::string::npos)
        << out.error().message();
}

TEST(CoreAmbiguity, FlavorsThatAgreeAreFine) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo___mine", 8, {{"x", i, 0}, {"y", i, 32}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t a = c.target.add_struct("foo", 8, {{"x", ti, 0}, {"y", ti, 32}});
    c.target.add_struct("foo___2", 8, {{"x", ti, 0}, {"z", ti, 32}});

    auto x = c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:0", 0);
    ASSERT_TRUE(x) << x.error().message();
    EXPECT_EQ(x->target_id, a);
    // Only one flavor has y: the other does not match and is not counted.
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1", 4)->target_value, 4u);
}

TEST(CoreSizeAdjust, LoadOfAGrownUnsignedFieldIsWidened) {
    core_case c;
    uint32_t u32 = c.local.add_int("unsigned int", 4);
    uint32_t s32 = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t s = c.local.add_struct("s", 12, {{"a", u32, 0}, {"v", u32, 32}, {"n", s32, 64}});
    uint32_t tu32 = c.target.add_int("unsigned int", 4);
    uint32_t tu64 = c.target.add_int("unsigned long", 8);
    uint32_t ts64 = c.target.add_int("long", 8, BTF_INT_SIGNED);
    c.target.add_struct("s", 24, {{"a", tu32, 0}, {"v", tu64, 64}, {"n", ts64, 128}});

    std::vector<bpf_insn> insns{ldx_mem(BPF_W, r0, r1, 4), st_mem(BPF_W, r1, 4, 0)};
    ASSERT_TRUE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1", 0));
    ASSERT_TRUE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1", 1));
    EXPECT_EQ(insns[0].code, BPF_LDX | BPF_DW | BPF_MEM);
    EXPECT_EQ(insns[0].off, 8);
    EXPECT_EQ(insns[1].code, BPF_ST | BPF_DW | BPF_MEM);
    EXPECT_EQ(insns[1].off, 8);

    // A signed field cannot be resized: the load is poisoned, and says why.
    insns = {ldx_mem(BPF_W, r0, r1, 8)};
    auto out = c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, s, "0:2");
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_TRUE(out->poisoned);
    EXPECT_EQ(insns[0].code, poison_code);
    EXPECT_NE(out->why.find("field_byte_offset of struct s::n via 0:2: the field is 8 bytes"),
              std::string::npos)
        << out->why;
    // The same offset used in arithmetic needs no resizing.
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "0:2", 8)->target_value, 16u);

    // A load whose size is not the local field's is an error.
    insns = {ldx_mem(BPF_H, r0, r1, 4)};
    auto half = c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1");
    ASSERT_FALSE(half);
    EXPECT_NE(half.error().message().find("accesses 2 bytes, not the field's 4"), std::string::npos)
        << half.error().message();
}

TEST(CoreValidation, InstructionNotHoldingTheLocalValueFails) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 8, {{"a", i, 0}, {"b", i, 32}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    c.target.add_struct("foo", 8, {{"b", ti, 0}, {"a", ti, 32}});

    auto alu = c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1", 5);
    ASSERT_FALSE(alu);
    EXPECT_EQ(alu.error().message(),
              "CO-RE relocation: field_byte_offset of struct foo::b via 0:1: patch instruction "
              "#0: the immediate holds 5, not the local value 4: Invalid argument (errno 22)");

    std::vector<bpf_insn> insns{ldx_mem(BPF_W, r0, r1, 0)};
    EXPECT_FALSE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1"));
    EXPECT_EQ(insns[0].off, 0);  // untouched

    insns = {ld_imm64_lo(r1, 0, 4), ld_imm64_hi(1)};
    EXPECT_FALSE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1"));
    insns = {mov64_reg(r0, r1)};
    EXPECT_FALSE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1"));
    insns = {mov64_imm(r0, 4)};
    EXPECT_FALSE(c.apply(insns, BPF_CORE_FIELD_BYTE_OFFSET, foo, "0:1", 1));
}

TEST(CoreSelf, RelocatesAgainstItsOwnBtf) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t anon = c.local.add_union("", 4, {{"u", i, 0}});
    uint32_t arr = c.local.add_array(i, i, 3);
    uint32_t s = c.local.add_struct("s", 20, {{"a", i, 0}, {"", anon, 32}, {"arr", arr, 64}});
    uint32_t td = c.local.add_typedef("s_t", c.local.add_const(s));
    uint32_t e = c.local.add_enum("e", 4, {{"X", 5}});

    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "0:1:0", 4, true)->target_value, 4u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, s, "1:2:2", 36, true)->target_value, 36u);
    EXPECT_EQ(c.value(BPF_CORE_FIELD_BYTE_OFFSET, td, "0:2:1", 12, true)->target_value, 12u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_SIZE, td, "0", 20, true)->target_value, 20u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_MATCHES, s, "0", 1, true)->target_value, 1u);
    EXPECT_EQ(c.value(BPF_CORE_TYPE_ID_TARGET, s, "0", 0, true)->target_value, s);
    EXPECT_EQ(c.value(BPF_CORE_ENUMVAL_VALUE, e, "0", 5, true)->target_value, 5u);
    // Anonymous types have no candidates; only their local id can be asked for.
    EXPECT_EQ(c.value(BPF_CORE_TYPE_ID_LOCAL, anon, "0", 0, true)->target_value, anon);
    auto anon_exists = c.value(BPF_CORE_TYPE_EXISTS, anon, "0", 1, true);
    ASSERT_FALSE(anon_exists);
    EXPECT_NE(anon_exists.error().message().find("anonymous"), std::string::npos);
}

TEST(CoreErrors, MalformedRelocationsAreRejected) {
    core_case c;
    uint32_t i = c.local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t foo = c.local.add_struct("foo", 4, {{"a", i, 0}});
    uint32_t e = c.local.add_enum("e", 4, {{"X", 5}});
    uint32_t ti = c.target.add_int("int", 4, BTF_INT_SIGNED);
    c.target.add_struct("foo", 4, {{"a", ti, 0}});

    for (const char* access : {"", ":0", "0::0", "0:", "0:x", "0:-1", "0:1", "0:0:0"}) {
        auto out = c.value(BPF_CORE_FIELD_BYTE_OFFSET, foo, access, 0);
        EXPECT_FALSE(out) << "access \"" << access << "\"";
    }
    EXPECT_FALSE(c.value(BPF_CORE_TYPE_EXISTS, foo, "1", 1));
    EXPECT_FALSE(c.value(BPF_CORE_ENUMVAL_VALUE, e, "1", 5));
    EXPECT_FALSE(c.value(BPF_CORE_ENUMVAL_VALUE, foo, "0", 5));
    EXPECT_FALSE(c.value(BPF_CORE_FIELD_SIGNED, foo, "0", 0));  // not on an array element
    EXPECT_FALSE(c.value(13, foo, "0", 0));

    // The cache must be the target's.
    btf::core_relo r{0, foo, c.local.str("0:0"), BPF_CORE_FIELD_BYTE_OFFSET};
    auto l = btf::spec::parse(c.local.bytes());
    auto t = btf::spec::parse(c.target.bytes());
    ASSERT_TRUE(l && t);
    candidate_cache other(*l);
    std::vector<bpf_insn> insns{mov64_imm(r0, 0)};
    EXPECT_FALSE(core::apply(insns, 0, r, *l, *t, other));
    candidate_cache right(*t);
    EXPECT_TRUE(core::apply(insns, 0, r, *l, *t, right));

    auto bad_id = c.value(BPF_CORE_FIELD_BYTE_OFFSET, 100500, "0:0", 0);
    ASSERT_FALSE(bad_id);
    EXPECT_EQ(bad_id.error().message(),
              "CO-RE relocation: field_byte_offset of type 100500 via 0:0: local type: id 100500 "
              "is past the last type 3: Invalid argument (errno 22)");
}

}  // namespace
}  // namespace ebpf::core

namespace ebpf::core {
namespace {

// A kernel module's types live in split BTF on top of vmlinux's: candidates are found there and
// the field offsets follow the module's layout.
TEST(CoreSplit, ModuleTypesInSplitBtfAreCandidates) {
    btf::builder base;
    base.add_int("int", 4, BTF_INT_SIGNED);
    auto vmlinux = btf::spec::parse(base.bytes());
    ASSERT_TRUE(vmlinux);
    // The module: struct mod_s { int a; int b; }, ids and strings after the base's.
    btf_header bh;
    std::memcpy(&bh, vmlinux->bytes().data(), sizeof bh);
    const char strs[] = "mod_s\0a\0b";
    const uint32_t words[] = {bh.str_len + 0,
                              (BTF_KIND_STRUCT << 24) | 2,
                              8,
                              bh.str_len + 6,
                              1,
                              0,
                              bh.str_len + 8,
                              1,
                              32};
    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.hdr_len = sizeof h;
    h.type_len = sizeof words;
    h.str_off = sizeof words;
    h.str_len = sizeof strs;
    std::vector<std::byte> raw(sizeof h + sizeof words + sizeof strs);
    std::memcpy(raw.data(), &h, sizeof h);
    std::memcpy(raw.data() + sizeof h, words, sizeof words);
    std::memcpy(raw.data() + sizeof h + sizeof words, strs, sizeof strs);
    auto module = btf::spec::parse(std::move(raw), &*vmlinux);
    ASSERT_TRUE(module) << module.error().message();

    // The program's view: struct mod_s { int b; }, reading b at offset 0.
    btf::builder local;
    uint32_t li = local.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t ls = local.add_struct("mod_s", 4, {{"b", li, 0}});
    const uint32_t access = local.str("0:0");
    auto lspec = btf::spec::parse(local.bytes());
    ASSERT_TRUE(lspec);

    candidate_cache in_vmlinux(*vmlinux);
    candidate_cache in_module(*module);
    btf::core_relo r{0, ls, access, BPF_CORE_FIELD_BYTE_OFFSET};
    bpf_insn load[] = {insn::ldx_mem(BPF_W, insn::r0, insn::r1, 0), insn::exit()};
    auto miss = apply(load, 0, r, *lspec, *vmlinux, in_vmlinux);
    ASSERT_TRUE(miss) << miss.error().message();
    EXPECT_TRUE(miss->poisoned) << "vmlinux has no mod_s";
    bpf_insn again[] = {insn::ldx_mem(BPF_W, insn::r0, insn::r1, 0), insn::exit()};
    auto hit = apply(again, 0, r, *lspec, *module, in_module);
    ASSERT_TRUE(hit) << hit.error().message();
    EXPECT_FALSE(hit->poisoned);
    EXPECT_EQ(again[0].off, 4) << "b is at offset 4 in the module's struct";
}

}  // namespace
}  // namespace ebpf::core
