// Kernel-free tests of BTF parsing and validation on BTF the test builds.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/builder.hpp"
#include "ebpf/btf/sanitize.hpp"

namespace ebpf::btf {
namespace {

TEST(Btf, ParsesEveryKindAndFindsByName) {
    builder b;
    uint32_t u32 = b.add_int("unsigned int", 4);
    uint32_t s64 = b.add_int("long", 8, BTF_INT_SIGNED);
    uint32_t ptr = b.add_ptr(u32);
    uint32_t arr = b.add_array(u32, u32, 4);
    uint32_t st = b.add_struct("sock", 32, {{"a", u32, 0}, {"b", s64, 64}, {"c", arr, 128}});
    uint32_t un = b.add_union("u", 8, {{"x", u32, 0}, {"y", s64, 0}});
    uint32_t en = b.add_enum("state", 4, {{"ONE", 1}, {"TWO", 2}});
    uint32_t fwd = b.add_fwd("later");
    uint32_t td = b.add_typedef("u32_t", u32);
    uint32_t cv = b.add_const(b.add_volatile(td));
    uint32_t proto = b.add_func_proto(u32, {{"ctx", ptr}});
    uint32_t fn = b.add_func("handler", proto);
    uint32_t var = b.add_var("counter", u32);
    uint32_t sec = b.add_datasec(".data", 4, {{var, 0, 4}});
    uint32_t fl = b.add_float("double", 8);
    uint32_t tag = b.add_decl_tag("hot", fn);
    uint32_t ttag = b.add_type_tag("user", u32);
    uint32_t e64 = b.add_enum64("big", 8, {{"HUGE", int64_t(1) << 40}});
    auto s = spec::parse(b.bytes());
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(s->count(), b.count() + 1);
    EXPECT_EQ(s->get(st).kind(), uint32_t(BTF_KIND_STRUCT));
    EXPECT_EQ(s->name(st), "sock");
    ASSERT_EQ(s->get(st).members().size(), 3u);
    EXPECT_EQ(s->str(s->get(st).members()[1].name_off), "b");
    EXPECT_EQ(s->get(un).kind(), uint32_t(BTF_KIND_UNION));
    EXPECT_EQ(s->get(en).enums()[1].val, 2);
    EXPECT_EQ(s->get(fwd).kind(), uint32_t(BTF_KIND_FWD));
    EXPECT_EQ(s->get(fn).ref(), proto);
    EXPECT_EQ(s->get(sec).vars()[0].type, var);
    EXPECT_EQ(s->get(fl).size(), 8u);
    EXPECT_EQ(s->get(tag).decl_tag_component(), -1);
    EXPECT_EQ(s->get(ttag).ref(), u32);
    auto big = s->get(e64).enums64()[0];
    EXPECT_EQ((uint64_t(big.val_hi32) << 32) | big.val_lo32, uint64_t(1) << 40);

    EXPECT_EQ(s->find("sock", BTF_KIND_STRUCT), std::vector<uint32_t>{st});
    EXPECT_TRUE(s->find("sock", BTF_KIND_UNION).empty());
    EXPECT_EQ(s->find("handler", BTF_KIND_FUNC), std::vector<uint32_t>{fn});
    EXPECT_EQ(s->find("handler"), std::vector<uint32_t>{fn});
    EXPECT_TRUE(s->find("nothing").empty());

    EXPECT_EQ(*s->size_of(st), 32u);
    EXPECT_EQ(*s->size_of(arr), 16u);
    EXPECT_EQ(*s->size_of(ptr), 8u);
    EXPECT_EQ(*s->size_of(cv), 4u);
    EXPECT_EQ(*s->size_of(var), 4u);
    EXPECT_EQ(s->skip_modifiers(cv)->id(), u32);
    EXPECT_FALSE(s->size_of(fn));
    EXPECT_FALSE(s->at(s->count()));
}

TEST(Btf, BitfieldMembersUseKindFlagOffsets) {
    builder b;
    uint32_t u32 = b.add_int("unsigned int", 4);
    uint32_t st = b.add_struct("flags", 4, {{"a", u32, 0, 3}, {"b", u32, 3, 5}});
    auto s = spec::parse(b.bytes());
    ASSERT_TRUE(s);
    type t = s->get(st);
    EXPECT_TRUE(t.kflag());
    EXPECT_EQ(t.member_bit_offset(t.members()[1]), 3u);
    EXPECT_EQ(t.member_bitfield_size(t.members()[1]), 5u);
}

TEST(Btf, SplitBtfContinuesTheBaseIds) {
    builder base;
    uint32_t u32 = base.add_int("unsigned int", 4);
    auto bs = spec::parse(base.bytes());
    ASSERT_TRUE(bs);
    // Split BTF: types start at the base's count, strings after the base's strings.
    auto raw = base.bytes();
    btf_header bh;
    std::memcpy(&bh, raw.data(), sizeof bh);
    const uint32_t base_strs = bh.str_len;
    // A struct "mod_s" { unsigned int x; } whose names live in the split string section.
    const char strs[] = "mod_s\0x";
    const uint32_t words[] = {base_strs + 0, (BTF_KIND_STRUCT << 24) | 1, 4, base_strs + 6, u32, 0};
    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.hdr_len = sizeof h;
    h.type_len = sizeof words;
    h.str_off = sizeof words;
    h.str_len = sizeof strs;
    std::vector<std::byte> bytes(sizeof h + sizeof words + sizeof strs);
    std::memcpy(bytes.data(), &h, sizeof h);
    std::memcpy(bytes.data() + sizeof h, words, sizeof words);
    std::memcpy(bytes.data() + sizeof h + sizeof words, strs, sizeof strs);
    auto s = spec::parse(std::move(bytes), &*bs);
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(s->first_id(), 2u);
    EXPECT_EQ(s->find("mod_s", BTF_KIND_STRUCT), std::vector<uint32_t>{2});
    EXPECT_EQ(s->str(s->get(2).members()[0].name_off), "x");
    EXPECT_EQ(s->name(1), "unsigned int");
    EXPECT_EQ(*s->size_of(2), 4u);
}

std::string parse_error(std::vector<std::byte> bytes) {
    auto s = spec::parse(std::move(bytes));
    return s ? std::string("parsed") : s.error().message();
}

TEST(BtfBadInput, EveryMalformationIsAClearErrorNamingWhere) {
    builder good;
    good.add_int("int", 4);
    auto bytes = good.bytes();

    EXPECT_NE(parse_error({}).find("fewer than a header"), std::string::npos);

    auto bad_magic = bytes;
    bad_magic[0] = std::byte{0};
    EXPECT_NE(parse_error(bad_magic).find("bad magic"), std::string::npos);

    auto truncated = bytes;
    truncated.resize(truncated.size() - 4);
    EXPECT_NE(parse_error(truncated).find("past the end"), std::string::npos);

    builder unknown;
    unknown.add_raw({0, 25u << 24, 0});
    EXPECT_NE(parse_error(unknown.bytes()).find("type 1 at offset 0: unknown kind 25"),
              std::string::npos)
        << parse_error(unknown.bytes());

    builder short_struct;
    short_struct.add_raw({0, (BTF_KIND_STRUCT << 24) | 3, 8, 0, 0});
    EXPECT_NE(parse_error(short_struct.bytes()).find("truncated struct"), std::string::npos);

    builder dangling;
    dangling.add_ptr(7);
    EXPECT_NE(
        parse_error(dangling.bytes()).find("ptr target refers to type 7, past the last type 1"),
        std::string::npos)
        << parse_error(dangling.bytes());

    builder bad_name;
    bad_name.add_raw({9999, BTF_KIND_INT << 24, 4, 32});
    EXPECT_NE(parse_error(bad_name.bytes()).find("name offset 9999 past the string section"),
              std::string::npos)
        << parse_error(bad_name.bytes());

    auto bad_strings = bytes;
    ASSERT_FALSE(bad_strings.empty());
    *bad_strings.rbegin() = std::byte{'x'};
    EXPECT_NE(parse_error(bad_strings).find("not NUL-terminated"), std::string::npos);
}

TEST(BtfBadInput, TypeLoopsAreDetectedNotFollowedForever) {
    builder b;
    // typedef a -> typedef b -> typedef a
    b.add_typedef("a", 2);
    b.add_typedef("b", 1);
    auto s = spec::parse(b.bytes());
    ASSERT_TRUE(s) << "a loop is well-formed bytes; resolving it is the error";
    auto r = s->skip_modifiers(1);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ELOOP);
    auto size = s->size_of(1);
    ASSERT_FALSE(size);
    EXPECT_NE(size.error().message().find("type loop"), std::string::npos);
}

TEST(BtfBadInput, EveryTruncationOfValidBtfFailsCleanly) {
    builder b;
    uint32_t u32 = b.add_int("unsigned int", 4);
    b.add_struct("s", 8, {{"a", u32, 0}, {"b", u32, 32}});
    b.add_enum("e", 4, {{"X", 1}});
    auto full = b.bytes();
    for (size_t n = 0; n < full.size(); ++n) {
        std::vector<std::byte> cut(full.begin(), full.begin() + n);
        EXPECT_FALSE(spec::parse(std::move(cut))) << n;
    }
    // And every single-bit flip either parses or fails with an error, never crashes.
    for (size_t i = 0; i < full.size() * 8; ++i) {
        auto flipped = full;
        flipped[i / 8] ^= std::byte(1u << (i % 8));
        auto s = spec::parse(std::move(flipped));
        if (s) {
            for (uint32_t id = 1; id < s->count(); ++id) {
                (void)s->size_of(id);
                (void)s->name(id);
            }
            (void)s->find("s");
        }
    }
}

}  // namespace
}  // namespace ebpf::btf

namespace ebpf::btf {
namespace {

TEST(BtfSanitize, KindsAnOldKernelLacksAreRewrittenInPlace) {
    builder b;
    uint32_t i32 = b.add_int("int", 4, BTF_INT_SIGNED);
    uint32_t fl = b.add_float("float", 4);
    uint32_t var = b.add_var("x", i32);
    uint32_t tag = b.add_decl_tag("hot", var);
    uint32_t ttag = b.add_type_tag("user", i32);
    uint32_t sec = b.add_datasec(".data", 4, {{var, 0, 4}});
    uint32_t proto = b.add_func_proto(i32, {});
    uint32_t fn = b.add_func("f", proto, BTF_FUNC_GLOBAL);
    auto s = spec::parse(b.bytes());
    ASSERT_TRUE(s);
    kernel_support old{.datasec = false,
                       .float_kind = false,
                       .decl_tag = false,
                       .type_tag = false,
                       .enum64 = false,
                       .func_global = false};
    auto bytes = sanitize_for_kernel(*s, old, {}, 0);
    ASSERT_TRUE(bytes) << bytes.error().message();
    auto out = spec::parse(std::move(*bytes));
    ASSERT_TRUE(out) << out.error().message();
    EXPECT_EQ(out->count(), s->count()) << "type ids do not move";
    EXPECT_EQ(out->get(fl).kind(), uint32_t(BTF_KIND_STRUCT));
    EXPECT_EQ(out->get(fl).size(), 4u);
    EXPECT_EQ(out->get(var).kind(), uint32_t(BTF_KIND_INT));
    EXPECT_EQ(out->get(tag).kind(), uint32_t(BTF_KIND_INT));
    EXPECT_EQ(out->get(ttag).kind(), uint32_t(BTF_KIND_CONST));
    EXPECT_EQ(out->get(sec).kind(), uint32_t(BTF_KIND_STRUCT));
    EXPECT_EQ(out->str(out->get(sec).members()[0].name_off), "x");
    EXPECT_EQ(out->get(fn).func_linkage(), uint32_t(BTF_FUNC_STATIC));
    // A current kernel gets the object's BTF unchanged but for extern linkage.
    auto same = sanitize_for_kernel(*s, kernel_support{}, {}, 0);
    ASSERT_TRUE(same);
    EXPECT_TRUE(std::equal(same->begin(), same->end(), s->bytes().begin()));
}

TEST(BtfSanitize, KconfigDatasecGetsTheLoadersLayout) {
    builder b;
    uint32_t u64 = b.add_int("unsigned long", 8);
    uint32_t hz = b.add_var("CONFIG_HZ", u64, 2 /* extern */);
    uint32_t sec = b.add_datasec(".kconfig", 0, {{hz, 0, 8}});
    auto s = spec::parse(b.bytes());
    ASSERT_TRUE(s);
    EXPECT_FALSE(sanitize_for_kernel(*s, {}, {}, 0)) << "an empty DATASEC is refused by name";
    auto bytes = sanitize_for_kernel(*s, {}, {{"CONFIG_HZ", {8, 8}}}, 16);
    ASSERT_TRUE(bytes) << bytes.error().message();
    auto out = spec::parse(std::move(*bytes));
    ASSERT_TRUE(out);
    EXPECT_EQ(out->get(sec).size(), 16u);
    EXPECT_EQ(out->get(sec).vars()[0].offset, 8u);
    EXPECT_EQ(out->get(hz).var_linkage(), uint32_t(BTF_VAR_GLOBAL_ALLOCATED));
}

}  // namespace
}  // namespace ebpf::btf
