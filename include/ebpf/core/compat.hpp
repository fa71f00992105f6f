// ebpf::core::detail type relations CO-RE decides candidates by: compatible fields, compatible
// types and matching types, with libbpf's rules (layer: pure).
#pragma once

#include <linux/btf.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/core/candidate_cache.hpp"

namespace ebpf::core::detail {

// Recursion bounds, libbpf's: how deep pointer/array chains and nested function prototypes or
// members may go before the types are taken for a loop.
inline constexpr int max_chain_depth = 32;
inline constexpr int max_nesting = 32;

inline error compat_too_deep(const char* what, uint32_t local_id, uint32_t target_id) {
    return error(ELOOP, what,
                 "local type " + std::to_string(local_id) + " and target type " +
                     std::to_string(target_id) + " nest deeper than " +
                     std::to_string(max_chain_depth) + " levels: a type loop");
}

// Returns true when two names are equal once their flavors are cut; two anonymous names match.
inline bool names_match(std::string_view local, std::string_view target) {
    return essential_name(local) == essential_name(target);
}

// Tells whether a local member's type can be relocated to a target member's type (libbpf's
// bpf_core_fields_are_compat): any two structs or unions, any two pointers or floats, enums
// and forward declarations of the same essential name (or anonymous), ints that are not old
// style bitfield ints, and arrays of compatible elements whatever their length.
inline result<bool> fields_compatible(const btf::spec& ls, uint32_t lid, const btf::spec& ts,
                                      uint32_t tid) {
    for (int depth = 0;; ++depth) {
        if (depth > max_chain_depth) {
            return compat_too_deep("compare field types", lid, tid);
        }
        auto l = ls.skip_modifiers(lid);
        if (!l) {
            return std::move(l).error();
        }
        auto t = ts.skip_modifiers(tid);
        if (!t) {
            return std::move(t).error();
        }
        if (l->is_composite() && t->is_composite()) {
            return true;
        }
        if (!kinds_compatible(l->kind(), t->kind())) {
            return false;
        }
        switch (l->kind()) {
            case BTF_KIND_PTR:
            case BTF_KIND_FLOAT:
                return true;
            case BTF_KIND_FWD:
            case BTF_KIND_ENUM:
            case BTF_KIND_ENUM64: {
                std::string_view ln = ls.name(*l);
                std::string_view tn = ts.name(*t);
                return ln.empty() || tn.empty() || names_match(ln, tn);
            }
            case BTF_KIND_INT:
                return l->int_offset() == 0 && t->int_offset() == 0;
            case BTF_KIND_ARRAY:
                lid = l->array().type;
                tid = t->array().type;
                break;
            default:
                return false;
        }
    }
}

// Tells whether a local type is compatible with a target type for the type-based relocations
// other than type_matches (libbpf's bpf_core_types_are_compat): the caller matched the names;
// modifiers are skipped; structs, unions, enums and forward declarations are compatible with
// their kind; pointers, arrays and function prototypes are compared through what they refer to.
inline result<bool> types_compatible(const btf::spec& ls, uint32_t lid, const btf::spec& ts,
                                     uint32_t tid, int level = max_nesting) {
    if (!kinds_compatible(ls.get(lid).kind(), ts.get(tid).kind())) {
        return false;
    }
    for (int depth = 0;; ++depth) {
        if (depth > max_chain_depth) {
            return compat_too_deep("compare types", lid, tid);
        }
        auto l = ls.skip_modifiers(lid);
        if (!l) {
            return std::move(l).error();
        }
        auto t = ts.skip_modifiers(tid);
        if (!t) {
            return std::move(t).error();
        }
        if (!kinds_compatible(l->kind(), t->kind())) {
            return false;
        }
        switch (l->kind()) {
            case BTF_KIND_UNKN:
            case BTF_KIND_STRUCT:
            case BTF_KIND_UNION:
            case BTF_KIND_ENUM:
            case BTF_KIND_ENUM64:
            case BTF_KIND_FWD:
                return true;
            case BTF_KIND_INT:
                return l->int_offset() == 0 && t->int_offset() == 0;
            case BTF_KIND_PTR:
                lid = l->ref();
                tid = t->ref();
                break;
            case BTF_KIND_ARRAY:
                lid = l->array().type;
                tid = t->array().type;
                break;
            case BTF_KIND_FUNC_PROTO: {
                auto lp = l->params();
                auto tp = t->params();
                if (lp.size() != tp.size()) {
                    return false;
                }
                for (size_t i = 0; i < lp.size(); ++i) {
                    if (level <= 0) {
                        return compat_too_deep("compare function prototypes", lid, tid);
                    }
                    auto la = ls.skip_modifiers(lp[i].type);
                    if (!la) {
                        return std::move(la).error();
                    }
                    auto ta = ts.skip_modifiers(tp[i].type);
                    if (!ta) {
                        return std::move(ta).error();
                    }
                    auto same = types_compatible(ls, la->id(), ts, ta->id(), level - 1);
                    if (!same || !*same) {
                        return same;
                    }
                }
                lid = l->ref();
                tid = t->ref();
                break;
            }
            default:
                return false;
        }
    }
}

inline result<bool> types_match(const btf::spec& ls, uint32_t lid, const btf::spec& ts,
                                uint32_t tid, bool behind_ptr = false, int level = max_nesting);

// Tells whether every local enumerator has a target enumerator of the same essential name,
// the enums being of one size.
inline bool enums_match(const btf::spec& ls, const btf::type& l, const btf::spec& ts,
                        const btf::type& t) {
    if (l.size() != t.size() || l.vlen() > t.vlen()) {
        return false;
    }
    auto name_at = [](const btf::spec& s, const btf::type& e, size_t i) {
        return s.str(e.kind() == BTF_KIND_ENUM ? e.enums()[i].name_off : e.enums64()[i].name_off);
    };
    for (size_t i = 0; i < l.vlen(); ++i) {
        bool found = false;
        for (size_t j = 0; j < t.vlen() && !found; ++j) {
            found = names_match(name_at(ls, l, i), name_at(ts, t, j));
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

// Tells whether every local member has a target member of the same essential name whose type
// matches.
inline result<bool> composites_match(const btf::spec& ls, const btf::type& l, const btf::spec& ts,
                                     const btf::type& t, bool behind_ptr, int level) {
    if (l.vlen() > t.vlen()) {
        return false;
    }
    for (const btf_member& lm : l.members()) {
        bool found = false;
        for (const btf_member& tm : t.members()) {
            if (!names_match(ls.str(lm.name_off), ts.str(tm.name_off))) {
                continue;
            }
            auto same = types_match(ls, lm.type, ts, tm.type, behind_ptr, level - 1);
            if (!same) {
                return same;
            }
            if (*same) {
                found = true;
                break;
            }
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

// Tells whether a local type matches a target type (libbpf's bpf_core_types_match, the
// type_matches relocation of kernel 6.2+): modifiers are skipped and names compared without
// flavors at every level; kinds must be equal except that a struct or union behind a pointer
// may match a forward declaration of it and an enum may match an enum64; ints match on size
// and signedness; enums when the target has every local enumerator; structs and unions when
// the target has every local member with a matching type; pointers, arrays (of equal length)
// and function prototypes (of equal arity) through what they refer to.
inline result<bool> types_match(const btf::spec& ls, uint32_t lid, const btf::spec& ts,
                                uint32_t tid, bool behind_ptr, int level) {
    if (level <= 0) {
        return compat_too_deep("match types", lid, tid);
    }
    for (int depth = 0;; ++depth) {
        if (depth > max_chain_depth) {
            return compat_too_deep("match types", lid, tid);
        }
        auto l = ls.skip_modifiers(lid);
        if (!l) {
            return std::move(l).error();
        }
        auto t = ts.skip_modifiers(tid);
        if (!t) {
            return std::move(t).error();
        }
        if (!names_match(ls.name(*l), ts.name(*t))) {
            return false;
        }
        const uint32_t lk = l->kind();
        const uint32_t tk = t->kind();
        switch (lk) {
            case BTF_KIND_UNKN:
                return lk == tk;
            case BTF_KIND_FWD:
                if (lk == tk) {
                    return l->kflag() == t->kflag();
                }
                // Behind a pointer, a forward declaration matches the struct (kflag 0) or union
                // (kflag 1) it declares.
                return behind_ptr && ((tk == BTF_KIND_STRUCT && !l->kflag()) ||
                                      (tk == BTF_KIND_UNION && l->kflag()));
            case BTF_KIND_ENUM:
            case BTF_KIND_ENUM64:
                return is_any_enum(tk) && enums_match(ls, *l, ts, *t);
            case BTF_KIND_STRUCT:
            case BTF_KIND_UNION:
                if (behind_ptr) {
                    if (lk == tk) {
                        return true;
                    }
                    return tk == BTF_KIND_FWD && (lk == BTF_KIND_UNION) == t->kflag();
                }
                if (lk != tk) {
                    return false;
                }
                return composites_match(ls, *l, ts, *t, behind_ptr, level);
            case BTF_KIND_INT:
                return lk == tk && l->size() == t->size() &&
                       (l->int_encoding() & BTF_INT_SIGNED) == (t->int_encoding() & BTF_INT_SIGNED);
            case BTF_KIND_PTR:
                if (lk != tk) {
                    return false;
                }
                behind_ptr = true;
                lid = l->ref();
                tid = t->ref();
                break;
            case BTF_KIND_ARRAY:
                if (lk != tk || l->array().nelems != t->array().nelems) {
                    return false;
                }
                lid = l->array().type;
                tid = t->array().type;
                break;
            case BTF_KIND_FUNC_PROTO: {
                if (lk != tk || l->vlen() != t->vlen()) {
                    return false;
                }
                auto lp = l->params();
                auto tp = t->params();
                for (size_t i = 0; i < lp.size(); ++i) {
                    auto same = types_match(ls, lp[i].type, ts, tp[i].type, behind_ptr, level - 1);
                    if (!same || !*same) {
                        return same;
                    }
                }
                lid = l->ref();
                tid = t->ref();
                break;
            }
            default:
                return false;
        }
    }
}

}  // namespace ebpf::core::detail
