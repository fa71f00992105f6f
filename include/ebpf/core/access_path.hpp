// ebpf::core::detail::access_path: a CO-RE access string ("0:1:2") resolved in local BTF, and
// the same access found in a target type (layer: pure).
#pragma once

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/ext.hpp"
#include "ebpf/core/candidate_cache.hpp"
#include "ebpf/core/compat.hpp"

namespace ebpf::core::detail {

// What a relocation kind (enum bpf_core_relo_kind) looks at.
enum class relo_class { field, type, enumval, unknown };

inline relo_class classify(uint32_t kind) {
    switch (kind) {
        case BPF_CORE_FIELD_BYTE_OFFSET:
        case BPF_CORE_FIELD_BYTE_SIZE:
        case BPF_CORE_FIELD_EXISTS:
        case BPF_CORE_FIELD_SIGNED:
        case BPF_CORE_FIELD_LSHIFT_U64:
        case BPF_CORE_FIELD_RSHIFT_U64:
            return relo_class::field;
        case BPF_CORE_TYPE_ID_LOCAL:
        case BPF_CORE_TYPE_ID_TARGET:
        case BPF_CORE_TYPE_EXISTS:
        case BPF_CORE_TYPE_SIZE:
        case BPF_CORE_TYPE_MATCHES:
            return relo_class::type;
        case BPF_CORE_ENUMVAL_EXISTS:
        case BPF_CORE_ENUMVAL_VALUE:
            return relo_class::enumval;
        default:
            return relo_class::unknown;
    }
}

// The longest access string, libbpf's BPF_CORE_SPEC_MAX_LEN.
inline constexpr size_t max_access_len = 64;

// One step of an access that means the same in every BTF: a named member, an array index (the
// first step is the index on the root pointer), or an enumerator.
struct accessor {
    uint32_t type_id;       // the struct or union holding the member, the element type, the enum
    uint32_t idx;           // the member, element or enumerator index
    std::string_view name;  // the member or enumerator name; empty for an index
};

// An access resolved in one BTF: its meaningful steps (anonymous members left out), every raw
// index, and the bit offset it reaches. Type-based relocations have no steps.
struct access_path {
    const btf::spec* btf = nullptr;
    uint32_t root_id = 0;
    uint32_t kind = 0;
    std::vector<accessor> steps;
    std::vector<uint32_t> raw;
    uint64_t bit_offset = 0;

    // Resolves the relocation's access string against its local BTF, checking every index.
    static result<access_path> parse(const btf::spec& s, const btf::core_relo& r) {
        access_path p;
        p.btf = &s;
        p.root_id = r.type_id;
        p.kind = r.kind;
        if (r.type_id >= s.count()) {
            return error(EINVAL, "local type",
                         "id " + std::to_string(r.type_id) + " is past the last type " +
                             std::to_string(s.count() - 1));
        }
        const std::string_view str = s.str(r.access_str_off);
        const relo_class cls = classify(r.kind);
        if (cls == relo_class::unknown) {
            return error(EINVAL, "relocation kind", "unknown kind " + std::to_string(r.kind));
        }
        if (cls == relo_class::type) {
            if (str != "0") {
                return bad_string(str, "a type relocation takes \"0\"");
            }
            return p;
        }
        EBPF_TRY(p.parse_indexes(str));

        auto root = s.skip_modifiers(r.type_id);
        if (!root) {
            return std::move(root).error();
        }
        uint32_t id = root->id();
        p.steps.push_back({id, p.raw[0], {}});

        if (cls == relo_class::enumval) {
            if (!is_any_enum(root->kind())) {
                return error(EINVAL, "access string",
                             std::string("an enumerator of a ") + btf::kind_name(root->kind()));
            }
            if (p.raw.size() > 1 || p.raw[0] >= root->vlen()) {
                return bad_string(str, "not the index of an enumerator");
            }
            p.steps[0].name = enumerator_name(s, *root, p.raw[0]);
            return p;
        }

        auto size = s.size_of(id);
        if (!size) {
            return std::move(size).error();
        }
        p.bit_offset = uint64_t(p.raw[0]) * *size * 8;
        for (size_t i = 1; i < p.raw.size(); ++i) {
            auto t = s.skip_modifiers(id);
            if (!t) {
                return std::move(t).error();
            }
            const uint32_t idx = p.raw[i];
            if (t->is_composite()) {
                if (idx >= t->vlen()) {
                    return bad_string(str, "index " + std::to_string(i) + " (" +
                                               std::to_string(idx) + ") past the members of " +
                                               btf::kind_name(t->kind()) + " " +
                                               std::to_string(t->id()));
                }
                const btf_member& m = t->members()[idx];
                p.bit_offset += t->member_bit_offset(m);
                if (m.name_off != 0) {
                    std::string_view name = s.str(m.name_off);
                    if (name.empty()) {
                        return error(EINVAL, "access string", "member name is not a string");
                    }
                    p.steps.push_back({t->id(), idx, name});
                }
                id = m.type;
            } else if (t->kind() == BTF_KIND_ARRAY) {
                const struct btf_array& a = t->array();
                auto elem = s.skip_modifiers(a.type);
                if (!elem) {
                    return std::move(elem).error();
                }
                if (!is_flex_array(s, p.steps.back(), a) && idx >= a.nelems) {
                    return bad_string(str, "index " + std::to_string(i) + " (" +
                                               std::to_string(idx) + ") past an array of " +
                                               std::to_string(a.nelems));
                }
                id = elem->id();
                p.steps.push_back({id, idx, {}});
                auto esize = s.size_of(id);
                if (!esize) {
                    return std::move(esize).error();
                }
                p.bit_offset += uint64_t(idx) * *esize * 8;
            } else {
                return bad_string(str, "index " + std::to_string(i) + " goes into a " +
                                           btf::kind_name(t->kind()) +
                                           ", neither a struct, a union nor an array");
            }
        }
        return p;
    }

    // Finds this local access in target type `tid`: true (and `out` filled) when every named
    // member exists there with a compatible type and every index is within its array; for type
    // relocations, when the types are compatible (or match, for type_matches).
    result<bool> match(const btf::spec& ts, uint32_t tid, access_path& out) const {
        out = access_path{};
        out.btf = &ts;
        out.root_id = tid;
        out.kind = kind;
        switch (classify(kind)) {
            case relo_class::type:
                if (kind == BPF_CORE_TYPE_MATCHES) {
                    return types_match(*btf, root_id, ts, tid);
                }
                return types_compatible(*btf, root_id, ts, tid);
            case relo_class::enumval:
                return match_enumerator(ts, tid, out);
            case relo_class::field:
                break;
            case relo_class::unknown:
                return error(EINVAL, "relocation kind", "unknown kind " + std::to_string(kind));
        }
        uint32_t id = tid;
        for (size_t i = 0; i < steps.size(); ++i) {
            auto t = ts.skip_modifiers(id);
            if (!t) {
                return std::move(t).error();
            }
            id = t->id();
            const accessor& step = steps[i];
            if (!step.name.empty()) {
                auto found = match_member(step, ts, id, out, id);
                if (!found || !*found) {
                    return found;
                }
                continue;
            }
            // The first step indexes the root itself; later ones need an array here.
            if (i > 0) {
                if (t->kind() != BTF_KIND_ARRAY) {
                    return false;
                }
                const struct btf_array& a = t->array();
                if (!is_flex_array(ts, out.steps.back(), a) && step.idx >= a.nelems) {
                    return false;
                }
                auto elem = ts.skip_modifiers(a.type);
                if (!elem) {
                    return std::move(elem).error();
                }
                id = elem->id();
            }
            if (out.raw.size() == max_access_len) {
                return too_long();
            }
            out.steps.push_back({id, step.idx, {}});
            out.raw.push_back(step.idx);
            auto size = ts.size_of(id);
            if (!size) {
                return std::move(size).error();
            }
            out.bit_offset += uint64_t(step.idx) * *size * 8;
        }
        return true;
    }

    static std::string_view enumerator_name(const btf::spec& s, const btf::type& e, size_t i) {
        return s.str(e.kind() == BTF_KIND_ENUM ? e.enums()[i].name_off : e.enums64()[i].name_off);
    }

  private:
    static error bad_string(std::string_view str, std::string why) {
        return error(EINVAL, "access string \"" + std::string(str) + "\"", std::move(why));
    }
    static error too_long() {
        return error(E2BIG, "access",
                     "nests deeper than " + std::to_string(max_access_len) + " members");
    }

    result<void> parse_indexes(std::string_view str) {
        if (str.empty() || str[0] == ':') {
            return bad_string(str, "not a list of indexes");
        }
        size_t at = 0;
        while (at < str.size()) {
            if (str[at] == ':') {
                ++at;
            }
            uint64_t v = 0;
            size_t digits = 0;
            for (; at < str.size() && str[at] >= '0' && str[at] <= '9'; ++at, ++digits) {
                v = v * 10 + uint64_t(str[at] - '0');
                if (v > INT32_MAX) {
                    return bad_string(str, "index out of range");
                }
            }
            if (digits == 0) {
                return bad_string(str, "not a list of indexes");
            }
            if (raw.size() == max_access_len) {
                return too_long();
            }
            raw.push_back(uint32_t(v));
        }
        return {};
    }

    // An array without elements is flexible when it is the last member of its struct, reached
    // by name (libbpf's rule), and then any index is allowed.
    static bool is_flex_array(const btf::spec& s, const accessor& holder, const struct btf_array& a) {
        return !holder.name.empty() && a.nelems == 0 &&
               holder.idx + 1 == s.get(holder.type_id).vlen();
    }

    result<bool> match_enumerator(const btf::spec& ts, uint32_t tid, access_path& out) const {
        auto t = ts.skip_modifiers(tid);
        if (!t) {
            return std::move(t).error();
        }
        if (!is_any_enum(t->kind())) {
            return false;
        }
        const std::string_view want = essential_name(steps[0].name);
        for (uint32_t i = 0; i < t->vlen(); ++i) {
            std::string_view name = enumerator_name(ts, *t, i);
            if (essential_name(name) == want) {
                out.steps.push_back({t->id(), i, name});
                out.raw.push_back(i);
                return true;
            }
        }
        return false;
    }

    // Looks for the member `step` names in target struct or union `tid`, descending into
    // anonymous members; on success records the steps and offset in `out` and sets `next` to
    // the member's type.
    result<bool> match_member(const accessor& step, const btf::spec& ts, uint32_t tid,
                              access_path& out, uint32_t& next) const {
        auto t = ts.skip_modifiers(tid);
        if (!t) {
            return std::move(t).error();
        }
        if (!t->is_composite()) {
            return false;
        }
        const btf_member& local_member = btf->get(step.type_id).members()[step.idx];
        const auto members = t->members();
        for (uint32_t i = 0; i < members.size(); ++i) {
            const btf_member& m = members[i];
            const uint32_t member_bits = t->member_bit_offset(m);
            if (out.raw.size() == max_access_len) {
                return too_long();
            }
            out.bit_offset += member_bits;
            out.raw.push_back(i);
            std::string_view name = ts.str(m.name_off);
            if (name.empty()) {
                auto found = match_member(step, ts, m.type, out, next);
                if (!found || *found) {
                    return found;
                }
            } else if (name == step.name) {
                auto compatible = fields_compatible(*btf, local_member.type, ts, m.type);
                if (!compatible) {
                    return compatible;
                }
                if (*compatible) {
                    out.steps.push_back({t->id(), i, name});
                    next = m.type;
                    return true;
                }
                out.bit_offset -= member_bits;
                out.raw.pop_back();
                return false;
            }
            out.bit_offset -= member_bits;
            out.raw.pop_back();
        }
        return false;
    }
};

}  // namespace ebpf::core::detail
