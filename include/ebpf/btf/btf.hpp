// ebpf::btf::spec: parsed and validated BTF type information, with a lazy name index
// (layer: pure; bytes in, types out, no syscalls).
#pragma once

#include <linux/btf.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ebpf/base/result.hpp"

namespace ebpf::btf {

// BTF kinds (enum from <linux/btf.h>), named for messages.
inline const char* kind_name(uint32_t kind) {
    static constexpr const char* names[] = {
        "void", "int",     "ptr",      "array",    "struct",   "union", "enum",
        "fwd",  "typedef", "volatile", "const",    "restrict", "func",  "func_proto",
        "var",  "datasec", "float",    "decl_tag", "type_tag", "enum64"};
    return kind < std::size(names) ? names[kind] : "unknown";
}

// One type: a view into the spec's bytes, valid while the spec lives.
class type {
  public:
    type() = default;
    type(uint32_t id, const btf_type* t) : id_(id), t_(t) {}

    uint32_t id() const { return id_; }
    uint32_t kind() const { return t_ ? BTF_INFO_KIND(t_->info) : uint32_t(BTF_KIND_UNKN); }
    uint16_t vlen() const { return t_ ? BTF_INFO_VLEN(t_->info) : 0; }
    bool kflag() const { return t_ && BTF_INFO_KFLAG(t_->info); }
    uint32_t name_off() const { return t_ ? t_->name_off : 0; }
    // The size of ints, structs, unions, enums, floats and datasecs.
    uint32_t size() const { return t_ ? t_->size : 0; }
    // The referenced type of ptr, typedef, modifiers, func, var, decl_tag and type_tag.
    uint32_t ref() const { return t_ ? t_->type : 0; }
    const btf_type* raw() const { return t_; }

    bool is_void() const { return id_ == 0; }
    bool is_composite() const { return kind() == BTF_KIND_STRUCT || kind() == BTF_KIND_UNION; }
    bool is_modifier() const {
        uint32_t k = kind();
        return k == BTF_KIND_TYPEDEF || k == BTF_KIND_VOLATILE || k == BTF_KIND_CONST ||
               k == BTF_KIND_RESTRICT || k == BTF_KIND_TYPE_TAG;
    }

    // Kind-specific data that follows the common header.
    uint32_t int_encoding() const { return BTF_INT_ENCODING(extra<uint32_t>()[0]); }
    uint32_t int_offset() const { return BTF_INT_OFFSET(extra<uint32_t>()[0]); }
    uint32_t int_bits() const { return BTF_INT_BITS(extra<uint32_t>()[0]); }
    const struct btf_array& array() const { return extra<struct btf_array>()[0]; }
    std::span<const btf_member> members() const { return {extra<btf_member>(), vlen()}; }
    // A member's offset in bits, and its bitfield size (0: not a bitfield).
    uint32_t member_bit_offset(const btf_member& m) const {
        return kflag() ? BTF_MEMBER_BIT_OFFSET(m.offset) : m.offset;
    }
    uint32_t member_bitfield_size(const btf_member& m) const {
        return kflag() ? BTF_MEMBER_BITFIELD_SIZE(m.offset) : 0;
    }
    std::span<const struct btf_enum> enums() const { return {extra<struct btf_enum>(), vlen()}; }
    std::span<const struct btf_enum64> enums64() const {
        return {extra<struct btf_enum64>(), vlen()};
    }
    std::span<const btf_param> params() const { return {extra<btf_param>(), vlen()}; }
    uint32_t var_linkage() const { return extra<struct btf_var>()[0].linkage; }
    std::span<const btf_var_secinfo> vars() const { return {extra<btf_var_secinfo>(), vlen()}; }
    int32_t decl_tag_component() const { return extra<struct btf_decl_tag>()[0].component_idx; }
    // The func's linkage (static, global, extern) is kept in vlen.
    uint32_t func_linkage() const { return vlen(); }

  private:
    template <class T>
    const T* extra() const {
        return reinterpret_cast<const T*>(t_ + 1);
    }
    uint32_t id_ = 0;
    const btf_type* t_ = nullptr;
};

namespace detail {
// Returns the number of bytes that follow a type's common header, or -1 for an unknown kind.
inline int64_t extra_size(const btf_type& t) {
    const uint32_t vlen = BTF_INFO_VLEN(t.info);
    switch (BTF_INFO_KIND(t.info)) {
        case BTF_KIND_INT:
            return 4;
        case BTF_KIND_PTR:
        case BTF_KIND_FWD:
        case BTF_KIND_TYPEDEF:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
        case BTF_KIND_FUNC:
        case BTF_KIND_FLOAT:
        case BTF_KIND_TYPE_TAG:
            return 0;
        case BTF_KIND_ARRAY:
            return sizeof(struct btf_array);
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            return int64_t(vlen) * sizeof(btf_member);
        case BTF_KIND_ENUM:
            return int64_t(vlen) * sizeof(struct btf_enum);
        case BTF_KIND_FUNC_PROTO:
            return int64_t(vlen) * sizeof(btf_param);
        case BTF_KIND_VAR:
            return sizeof(struct btf_var);
        case BTF_KIND_DATASEC:
            return int64_t(vlen) * sizeof(btf_var_secinfo);
        case BTF_KIND_DECL_TAG:
            return sizeof(struct btf_decl_tag);
        case BTF_KIND_ENUM64:
            return int64_t(vlen) * sizeof(struct btf_enum64);
        default:
            return -1;
    }
}

// Hashes a name eight bytes at a time (names are short; this is on the indexing path of
// vmlinux's ~15,000 named types).
inline uint64_t hash_name(std::string_view s) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ s.size();
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}
}  // namespace detail

// Parsed BTF. Type ids start at 1 (0 is void); split BTF (a kernel module's) continues the ids
// of its base. Everything a type refers to was checked to exist when the spec was parsed.
class spec {
  public:
    spec() = default;
    spec(spec&&) noexcept = default;
    spec& operator=(spec&&) noexcept = default;

    // Parses and validates raw BTF (the .BTF section, or /sys/kernel/btf/vmlinux). With `base`,
    // parses split BTF whose ids continue after base's; base must outlive the result.
    static result<spec> parse(std::vector<std::byte> bytes, const spec* base = nullptr) {
        auto owner = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        std::span<const std::byte> view(*owner);
        return parse_shared(std::move(owner), view, base);
    }
    static result<spec> parse(std::span<const std::byte> bytes, const spec* base = nullptr) {
        return parse(std::vector<std::byte>(bytes.begin(), bytes.end()), base);
    }
    // Parses BTF in memory that `owner` keeps alive (a file mapping, say), without copying it.
    // The bytes must be 4-byte aligned.
    static result<spec> parse_shared(std::shared_ptr<const void> owner,
                                     std::span<const std::byte> bytes, const spec* base = nullptr) {
        spec s;
        s.owner_ = std::move(owner);
        s.bytes_ = bytes;
        s.base_ = base;
        EBPF_TRY_CTX(s.index(), "parse BTF");
        return s;
    }

    // Returns the number of type ids, void included (ids run 0..count()-1).
    uint32_t count() const { return first_id_ + uint32_t(offsets_.size()); }
    // Returns the first id this spec holds (1, or the base's count() for split BTF).
    uint32_t first_id() const { return first_id_; }
    const spec* base() const { return base_; }

    // Returns the type with this id (an error for an id past the end).
    result<type> at(uint32_t id) const {
        if (id >= count()) [[unlikely]] {
            return error(EINVAL, "BTF type id " + std::to_string(id),
                         "past the last type " + std::to_string(count() - 1));
        }
        return get(id);
    }
    // Returns the type with this id; `id` must be < count() (ids inside a parsed spec are).
    type get(uint32_t id) const {
        if (id < first_id_) {
            return base_ ? base_->get(id) : type(0, nullptr);
        }
        return type(id, reinterpret_cast<const btf_type*>(types_ + offsets_[id - first_id_]));
    }

    // Returns the string at `off` in the string section (split BTF: base strings first).
    std::string_view str(uint32_t off) const {
        if (off < base_str_len_) {
            return base_->str(off);
        }
        off -= base_str_len_;
        if (off >= str_len_) {
            return {};
        }
        return std::string_view(strs_ + off);
    }
    std::string_view name(const type& t) const { return str(t.name_off()); }
    std::string_view name(uint32_t id) const { return name(get(id)); }

    // Returns the ids of every type called `name` of kind `kind` in this spec (not its base).
    // The first question indexes the names it needs: functions (most of vmlinux's names) in one
    // index, every other kind in another, so CO-RE never pays for the functions.
    std::vector<uint32_t> find(std::string_view name, uint32_t kind) const {
        std::vector<uint32_t> out;
        lookup(kind == BTF_KIND_FUNC ? 1 : 0, name, out);
        std::erase_if(out, [&](uint32_t id) { return get(id).kind() != kind; });
        return out;
    }
    // Returns the ids of every type called `name`, of any kind.
    std::vector<uint32_t> find(std::string_view name) const {
        std::vector<uint32_t> out;
        lookup(0, name, out);
        lookup(1, name, out);
        return out;
    }

    // Returns the ids, in order, of this spec's named types other than functions (not its base's).
    std::span<const uint32_t> named_types() const { return named_types_; }

    // Follows typedefs, modifiers and type tags to the underlying type.
    result<type> skip_modifiers(uint32_t id) const {
        type t = get(id);
        for (int depth = 0; t.is_modifier(); ++depth) {
            if (depth > max_depth) [[unlikely]] {
                return loop_error(id);
            }
            t = get(t.ref());
        }
        return t;
    }

    // Returns the size in bytes of a type (pointers are 8 bytes).
    result<uint32_t> size_of(uint32_t id) const {
        uint64_t mult = 1;
        type t = get(id);
        for (int depth = 0;; ++depth) {
            if (depth > max_depth) [[unlikely]] {
                return loop_error(id);
            }
            switch (t.kind()) {
                case BTF_KIND_INT:
                case BTF_KIND_STRUCT:
                case BTF_KIND_UNION:
                case BTF_KIND_ENUM:
                case BTF_KIND_ENUM64:
                case BTF_KIND_FLOAT:
                case BTF_KIND_DATASEC: {
                    uint64_t total = mult * t.size();
                    if (total > UINT32_MAX) {
                        return error(E2BIG, "size of BTF type " + std::to_string(id),
                                     "larger than 4 GiB");
                    }
                    return uint32_t(total);
                }
                case BTF_KIND_PTR:
                    return uint32_t(mult * 8);
                case BTF_KIND_TYPEDEF:
                case BTF_KIND_VOLATILE:
                case BTF_KIND_CONST:
                case BTF_KIND_RESTRICT:
                case BTF_KIND_TYPE_TAG:
                case BTF_KIND_VAR:
                    t = get(t.ref());
                    break;
                case BTF_KIND_ARRAY:
                    mult *= t.array().nelems;
                    if (mult > UINT32_MAX) {
                        return error(E2BIG, "size of BTF type " + std::to_string(id),
                                     "array larger than 4 GiB");
                    }
                    t = get(t.array().type);
                    break;
                default:
                    return error(EINVAL, "size of BTF type " + std::to_string(id),
                                 std::string("a ") + kind_name(t.kind()) + " has no size");
            }
        }
    }

    // Returns the raw bytes the spec was parsed from.
    std::span<const std::byte> bytes() const { return bytes_; }

    static constexpr int max_depth = 32;

  private:
    error loop_error(uint32_t id) const {
        return error(ELOOP, "resolve BTF type " + std::to_string(id),
                     "more than " + std::to_string(max_depth) + " levels: a type loop");
    }

    result<void> index() {
        const size_t n = bytes_.size();
        if (n < sizeof(btf_header)) {
            return error(EINVAL, "header", std::to_string(n) + " bytes, fewer than a header");
        }
        btf_header h;
        std::memcpy(&h, bytes_.data(), sizeof h);
        if (h.magic == 0x9FEB) {
            return error(EINVAL, "header", "big-endian BTF is not supported");
        }
        if (h.magic != BTF_MAGIC) {
            return error(EINVAL, "header", "bad magic " + hex(h.magic));
        }
        if (h.version != BTF_VERSION) {
            return error(EINVAL, "header", "unsupported version " + std::to_string(h.version));
        }
        if (h.hdr_len < sizeof(btf_header) || h.hdr_len > n) {
            return error(EINVAL, "header", "header length " + std::to_string(h.hdr_len));
        }
        if (h.hdr_len % 4 != 0) {
            // The types follow the header and are read in place: they must stay aligned.
            return error(EINVAL, "header",
                         "header length " + std::to_string(h.hdr_len) + " is not a multiple of 4");
        }
        const uint64_t body = n - h.hdr_len;
        if (uint64_t(h.type_off) + h.type_len > body || uint64_t(h.str_off) + h.str_len > body) {
            return error(EINVAL, "header",
                         "type or string section past the end of " + std::to_string(n) + " bytes");
        }
        if (h.type_off % 4 != 0) {
            return error(EINVAL, "header", "type section not 4-byte aligned");
        }
        types_ = bytes_.data() + h.hdr_len + h.type_off;
        strs_ = reinterpret_cast<const char*>(bytes_.data() + h.hdr_len + h.str_off);
        str_len_ = h.str_len;
        if (base_) {
            first_id_ = base_->count();
            base_str_len_ = base_->base_str_len_ + base_->str_len_;
        } else {
            if (str_len_ == 0 || strs_[0] != '\0') {
                return error(EINVAL, "string section", "does not start with the empty string");
            }
        }
        if (str_len_ > 0 && strs_[str_len_ - 1] != '\0') {
            return error(EINVAL, "string section", "not NUL-terminated");
        }

        // One pass: where each type starts, that it fits and has a known kind, and the largest
        // type id and string offset anything refers to. Only when those are out of range is a
        // second, slower pass made to name the culprit.
        offsets_.clear();
        offsets_.reserve(h.type_len / sizeof(btf_type) + 1);
        named_types_.clear();
        uint32_t off = 0;
        uint32_t max_ref = 0;
        uint32_t max_name = 0;
        while (off < h.type_len) {
            const uint32_t id = first_id_ + uint32_t(offsets_.size());
            if (h.type_len - off < sizeof(btf_type)) {
                return error(EINVAL, where(id, off), "truncated type header");
            }
            const btf_type& t = *reinterpret_cast<const btf_type*>(types_ + off);
            const int64_t extra = detail::extra_size(t);
            if (extra < 0) {
                return error(EINVAL, where(id, off),
                             "unknown kind " + std::to_string(BTF_INFO_KIND(t.info)));
            }
            if (uint64_t(h.type_len - off) < sizeof(btf_type) + uint64_t(extra)) {
                return error(EINVAL, where(id, off),
                             std::string("truncated ") + kind_name(BTF_INFO_KIND(t.info)));
            }
            offsets_.push_back(off);
            if (t.name_off != 0 && BTF_INFO_KIND(t.info) != BTF_KIND_FUNC) {
                named_types_.push_back(id);
            }
            max_name = std::max(max_name, t.name_off);
            max_ref = std::max(max_ref, refs_max(type(id, &t), max_name));
            off += uint32_t(sizeof(btf_type) + extra);
        }
        if (max_ref >= count() || max_name >= base_str_len_ + str_len_) [[unlikely]] {
            for (uint32_t i = 0; i < offsets_.size(); ++i) {
                EBPF_TRY(check_refs(get(first_id_ + i)));
            }
        }
        return {};
    }

    // Returns the largest type id `t` refers to, raising `max_name` to its largest string offset.
    static uint32_t refs_max(const type& t, uint32_t& max_name) {
        uint32_t m = 0;
        switch (t.kind()) {
            case BTF_KIND_PTR:
            case BTF_KIND_TYPEDEF:
            case BTF_KIND_VOLATILE:
            case BTF_KIND_CONST:
            case BTF_KIND_RESTRICT:
            case BTF_KIND_FUNC:
            case BTF_KIND_VAR:
            case BTF_KIND_DECL_TAG:
            case BTF_KIND_TYPE_TAG:
                return t.ref();
            case BTF_KIND_ARRAY:
                return std::max(t.array().type, t.array().index_type);
            case BTF_KIND_STRUCT:
            case BTF_KIND_UNION:
                for (const auto& mem : t.members()) {
                    m = std::max(m, mem.type);
                    max_name = std::max(max_name, mem.name_off);
                }
                return m;
            case BTF_KIND_FUNC_PROTO:
                m = t.ref();
                for (const auto& p : t.params()) {
                    m = std::max(m, p.type);
                    max_name = std::max(max_name, p.name_off);
                }
                return m;
            case BTF_KIND_DATASEC:
                for (const auto& v : t.vars()) {
                    m = std::max(m, v.type);
                }
                return m;
            case BTF_KIND_ENUM:
                for (const auto& e : t.enums()) {
                    max_name = std::max(max_name, e.name_off);
                }
                return 0;
            case BTF_KIND_ENUM64:
                for (const auto& e : t.enums64()) {
                    max_name = std::max(max_name, e.name_off);
                }
                return 0;
            default:
                return 0;
        }
    }

    result<void> check_refs(const type& t) const {
        const uint32_t n = count();
        auto ref = [&](uint32_t id, const char* what) -> result<void> {
            if (id < n) {
                return {};
            }
            return error(EINVAL, where(t.id(), offsets_[t.id() - first_id_]),
                         std::string(kind_name(t.kind())) + " " + what + " refers to type " +
                             std::to_string(id) + ", past the last type " + std::to_string(n - 1));
        };
        auto name = [&](uint32_t off) -> result<void> {
            if (off < base_str_len_ + str_len_) {
                return {};
            }
            return error(EINVAL, where(t.id(), offsets_[t.id() - first_id_]),
                         "name offset " + std::to_string(off) + " past the string section");
        };
        EBPF_TRY(name(t.name_off()));
        switch (t.kind()) {
            case BTF_KIND_PTR:
            case BTF_KIND_TYPEDEF:
            case BTF_KIND_VOLATILE:
            case BTF_KIND_CONST:
            case BTF_KIND_RESTRICT:
            case BTF_KIND_FUNC:
            case BTF_KIND_VAR:
            case BTF_KIND_DECL_TAG:
            case BTF_KIND_TYPE_TAG:
                return ref(t.ref(), "target");
            case BTF_KIND_ARRAY:
                EBPF_TRY(ref(t.array().type, "element"));
                return ref(t.array().index_type, "index");
            case BTF_KIND_STRUCT:
            case BTF_KIND_UNION:
                for (const auto& m : t.members()) {
                    EBPF_TRY(ref(m.type, "member"));
                    EBPF_TRY(name(m.name_off));
                }
                return {};
            case BTF_KIND_FUNC_PROTO:
                EBPF_TRY(ref(t.ref(), "return"));
                for (const auto& p : t.params()) {
                    EBPF_TRY(ref(p.type, "parameter"));
                    EBPF_TRY(name(p.name_off));
                }
                return {};
            case BTF_KIND_DATASEC:
                for (const auto& v : t.vars()) {
                    EBPF_TRY(ref(v.type, "variable"));
                }
                return {};
            case BTF_KIND_ENUM:
                for (const auto& e : t.enums()) {
                    EBPF_TRY(name(e.name_off));
                }
                return {};
            case BTF_KIND_ENUM64:
                for (const auto& e : t.enums64()) {
                    EBPF_TRY(name(e.name_off));
                }
                return {};
            default:
                return {};
        }
    }

    struct name_index {
        std::vector<uint32_t> slots;  // open addressing; 0 is empty
        std::once_flag once;
    };

    void lookup(int which, std::string_view name, std::vector<uint32_t>& out) const {
        name_index& ix = indexes_[which];
        // Built once, also when several threads ask at the same time.
        std::call_once(ix.once, [&] { fill_index(which, ix.slots); });
        if (name.empty() || ix.slots.empty()) {
            return;
        }
        const uint64_t mask = ix.slots.size() - 1;
        for (uint64_t i = detail::hash_name(name) & mask;; i = (i + 1) & mask) {
            const uint32_t id = ix.slots[i];
            if (id == 0) {
                return;
            }
            if (this->name(id) == name) {
                out.push_back(id);
            }
        }
    }

    void fill_index(int which, std::vector<uint32_t>& slots) const {
        // Index 0 takes the named non-function types the parse pass listed; index 1 the
        // functions, found by a scan when first asked for.
        std::vector<uint32_t> funcs;
        if (which == 1) {
            for (uint32_t i = 0; i < offsets_.size(); ++i) {
                const type t = get(first_id_ + i);
                if (t.kind() == BTF_KIND_FUNC && t.name_off() != 0) {
                    funcs.push_back(t.id());
                }
            }
        }
        const std::vector<uint32_t>& ids = which == 1 ? funcs : named_types_;
        size_t cap = 16;
        while (cap < ids.size() * 2) {
            cap *= 2;
        }
        slots.assign(cap, 0);
        const uint64_t mask = cap - 1;
        for (uint32_t id : ids) {
            uint64_t slot = detail::hash_name(name(id)) & mask;
            while (slots[slot] != 0) {
                slot = (slot + 1) & mask;
            }
            slots[slot] = id;
        }
    }

    static std::string where(uint32_t id, uint32_t off) {
        return "type " + std::to_string(id) + " at offset " + std::to_string(off);
    }
    static std::string hex(uint32_t v) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "0x%x", v);
        return buf;
    }

    std::shared_ptr<const void> owner_;  // keeps bytes_ alive
    std::span<const std::byte> bytes_;
    const spec* base_ = nullptr;
    const std::byte* types_ = nullptr;
    const char* strs_ = nullptr;
    uint32_t str_len_ = 0;
    uint32_t base_str_len_ = 0;
    uint32_t first_id_ = 1;
    std::vector<uint32_t> offsets_;
    std::vector<uint32_t> named_types_;  // named, not functions: what index 0 holds
    std::unique_ptr<name_index[]> indexes_ = std::make_unique<name_index[]>(2);
};

}  // namespace ebpf::btf
