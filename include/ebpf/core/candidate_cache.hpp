// ebpf::core::candidate_cache: a target BTF's types by CO-RE essential name, where relocation
// candidates are looked up (layer: pure).
#pragma once

#include <linux/btf.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "ebpf/btf/btf.hpp"

namespace ebpf::core {

// Returns `name` without its flavor: everything before the last "___" that has a non-underscore
// character on both sides ("foo___v2" → "foo", "a___b___c" → "a___b", "foo___" → "foo___"), the
// rule libbpf applies (bpf_core_essential_name_len).
inline std::string_view essential_name(std::string_view name) {
    if (name.size() < 5) {
        return name;
    }
    for (size_t i = name.size() - 4; i-- > 0;) {
        if (name[i] != '_' && name[i + 1] == '_' && name[i + 2] == '_' && name[i + 3] == '_' &&
            name[i + 4] != '_') {
            return name.substr(0, i + 1);
        }
    }
    return name;
}

namespace detail {
inline bool is_any_enum(uint32_t kind) {
    return kind == BTF_KIND_ENUM || kind == BTF_KIND_ENUM64;
}
// Returns true when CO-RE may pair kinds `a` and `b`: the same kind, or enum with enum64.
inline bool kinds_compatible(uint32_t a, uint32_t b) {
    return a == b || (is_any_enum(a) && is_any_enum(b));
}
}  // namespace detail

// Finds relocation candidates in one target BTF (vmlinux, or a module's split BTF). The index
// is built on the first question and shared by every relocation against the same target; the
// target must outlive the cache and stay where it is. Safe to query from several threads.
class candidate_cache {
  public:
    explicit candidate_cache(const btf::spec& target)
        : target_(&target), index_(std::make_unique<index>()) {}
    candidate_cache(candidate_cache&&) noexcept = default;
    candidate_cache& operator=(candidate_cache&&) noexcept = default;

    const btf::spec& target() const { return *target_; }

    // Returns, in id order, the target's own types (not its base's) whose essential name equals
    // that of `name` and whose kind is compatible with `kind` (equal, or enum with enum64). The
    // first call indexes the named ints, floats, structs, unions, enums, forward declarations and
    // typedefs, the kinds CO-RE relocates; any other kind is looked up by a scan.
    std::vector<uint32_t> find(std::string_view name, uint32_t kind) const {
        std::vector<uint32_t> out;
        const std::string_view want = essential_name(name);
        if (want.empty()) {
            return out;
        }
        const btf::spec& t = *target_;
        auto fits = [&](uint32_t id) {
            return detail::kinds_compatible(kind, t.get(id).kind()) &&
                   essential_name(t.name(id)) == want;
        };
        if (!indexed(kind)) {
            for (uint32_t id = t.first_id(); id < t.count(); ++id) {
                if (t.get(id).name_off() != 0 && fits(id)) {
                    out.push_back(id);
                }
            }
            return out;
        }
        std::call_once(index_->once, [&] { build(index_->slots); });
        const std::vector<slot>& slots = index_->slots;
        const uint64_t h = btf::detail::hash_name(want);
        const uint64_t mask = slots.size() - 1;
        for (uint64_t i = h & mask; slots[i].id != 0; i = (i + 1) & mask) {
            if (slots[i].tag == uint32_t(h >> 32) && fits(slots[i].id)) {
                out.push_back(slots[i].id);
            }
        }
        std::sort(out.begin(), out.end());
        return out;
    }

  private:
    static bool indexed(uint32_t kind) {
        switch (kind) {
            case BTF_KIND_INT:
            case BTF_KIND_FLOAT:
            case BTF_KIND_STRUCT:
            case BTF_KIND_UNION:
            case BTF_KIND_ENUM:
            case BTF_KIND_ENUM64:
            case BTF_KIND_FWD:
            case BTF_KIND_TYPEDEF:
                return true;
            default:
                return false;
        }
    }

    // One open-addressing slot: a type id (0: empty) and the high half of its name's hash, so
    // that most collisions are told apart without reading the name.
    struct slot {
        uint32_t id;
        uint32_t tag;
    };
    struct index {
        std::vector<slot> slots;
        std::once_flag once;
    };

    void build(std::vector<slot>& slots) const {
        const btf::spec& t = *target_;
        // Sized for every named type (most are of the indexed kinds), so one pass suffices.
        size_t cap = 16;
        while (cap < t.named_types().size() * 2) {
            cap *= 2;
        }
        slots.assign(cap, slot{0, 0});
        const uint64_t mask = cap - 1;
        for (uint32_t id : t.named_types()) {
            const btf::type ty = t.get(id);
            if (!indexed(ty.kind())) {
                continue;
            }
            const uint64_t h = btf::detail::hash_name(essential_name(t.name(ty)));
            uint64_t i = h & mask;
            while (slots[i].id != 0) {
                i = (i + 1) & mask;
            }
            slots[i] = {id, uint32_t(h >> 32)};
        }
    }

    const btf::spec* target_;
    std::unique_ptr<index> index_;
};

}  // namespace ebpf::core
