// ebpf::core::apply: computes one CO-RE relocation against a target BTF and patches the
// instruction it points at, with libbpf's semantics (layer: pure; no syscalls, deterministic).
#pragma once

#include <linux/bpf.h>
#include <linux/btf.h>

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/ext.hpp"
#include "ebpf/core/access_path.hpp"
#include "ebpf/core/candidate_cache.hpp"
#include "ebpf/core/compat.hpp"

namespace ebpf::core {

// The helper id a poisoned instruction calls: the verifier rejects it as "invalid func
// unknown#195896080" if the instruction is reachable, and drops it as dead code otherwise.
inline constexpr int32_t poison_helper_id = 0xbad2310;

// Returns the name of a relocation kind (enum bpf_core_relo_kind), e.g. "field_byte_offset".
inline const char* relo_kind_name(uint32_t kind) {
    static constexpr const char* names[] = {
        "field_byte_offset", "field_byte_size",  "field_exists",   "field_signed",
        "field_lshift_u64",  "field_rshift_u64", "type_id_local",  "type_id_target",
        "type_exists",       "type_size",        "enumval_exists", "enumval_value",
        "type_matches"};
    return kind < std::size(names) ? names[kind] : "unknown";
}

// Returns what a relocation is about, for messages: "field_byte_offset of struct sk_buff::len
// via 0:1", "enumval_value of enum state::TWO via 1", "type_size of typedef u64 via 0".
inline std::string describe(const btf::core_relo& r, const btf::spec& local) {
    std::string s = relo_kind_name(r.kind);
    s += " of ";
    if (r.type_id >= local.count()) {
        s += "type " + std::to_string(r.type_id);
    } else {
        const btf::type t = local.get(r.type_id);
        std::string_view name = local.name(t);
        s += btf::kind_name(t.kind());
        s += ' ';
        s += name.empty() ? "<anon>" : std::string(name);
        // The path is rendered when the access string resolves; otherwise the raw string says it.
        auto p = detail::access_path::parse(local, r);
        if (p) {
            bool named = false;
            for (size_t i = 0; i < p->steps.size(); ++i) {
                const detail::accessor& a = p->steps[i];
                if (!a.name.empty()) {
                    s += named ? "." : "::";
                    s += a.name;
                    named = true;
                } else if (i > 0 || a.idx > 0) {
                    s += "[" + std::to_string(a.idx) + "]";
                }
            }
        }
    }
    s += " via ";
    s += local.str(r.access_str_off);
    return s;
}

// What applying a relocation did.
struct outcome {
    // True when no target type had what the relocation asks for and the instruction was
    // replaced by a call to helper poison_helper_id (both halves of an ld_imm64).
    bool poisoned = false;
    // Empty unless poisoned: describe() and the reason, e.g. "field_byte_offset of struct
    // sk_buff::len via 0:1: no candidate in target BTF". The loader prefixes its own context.
    std::string why;
    // The value computed in the local BTF (what the compiler wrote into the instruction).
    uint64_t local_value = 0;
    // The value written for the target (0 when poisoned, and for a missing field, type or
    // enumerator the *_exists, type_matches, type_size and type_id_target kinds ask about).
    uint64_t target_value = 0;
    // The first target type that matched, 0 when none did (and for type_id_local).
    uint32_t target_id = 0;
};

namespace detail {

// libbpf's bpf_core_relo_res: the decision for one relocation, before patching.
struct decision {
    uint64_t local_value = 0;
    uint64_t target_value = 0;
    bool poison = false;
    // Whether the instruction must hold local_value before it is patched.
    bool validate = true;
    // The load/store sizes of a plain field or array element (0: none, e.g. a bitfield), and
    // whether an LDX/ST/STX may be resized from one to the other.
    uint32_t local_size = 0;
    uint32_t target_size = 0;
    bool resize_unsafe = false;
    uint32_t target_id = 0;
    std::string reason;  // why it poisons
};

struct field_value {
    uint64_t value = 0;
    uint32_t mem_size = 0;
    uint32_t type_id = 0;
    bool validate = true;
};

// Computes a field relocation's value for an access resolved in one BTF (libbpf's
// bpf_core_calc_field_relo); bitfields are read with the smallest aligned load that holds them.
inline result<field_value> field_relo_value(uint32_t kind, const access_path& p) {
    field_value out;
    if (kind == BPF_CORE_FIELD_EXISTS) {
        out.value = 1;
        return out;
    }
    const btf::spec& s = *p.btf;
    const accessor& last = p.steps.back();
    if (last.name.empty()) {
        auto size = s.size_of(last.type_id);
        if (!size) {
            return std::move(size).error();
        }
        if (kind == BPF_CORE_FIELD_BYTE_OFFSET) {
            out.value = p.bit_offset / 8;
            out.mem_size = *size;
            out.type_id = last.type_id;
        } else if (kind == BPF_CORE_FIELD_BYTE_SIZE) {
            out.value = *size;
        } else {
            return error(EINVAL, "compute value",
                         std::string(relo_kind_name(kind)) + " does not apply to an array element");
        }
        return out;
    }
    const btf::type holder = s.get(last.type_id);
    const btf_member& m = holder.members()[last.idx];
    auto mt = s.skip_modifiers(m.type);
    if (!mt) {
        return std::move(mt).error();
    }
    const uint64_t bit_off = p.bit_offset;
    uint64_t bit_size = holder.member_bitfield_size(m);
    const bool bitfield = bit_size > 0;
    uint64_t byte_off = 0;
    uint64_t byte_size = 0;
    if (bitfield) {
        byte_size = mt->size();
        if (byte_size == 0) {
            return error(EINVAL, "compute value",
                         std::string("a bitfield of a ") + btf::kind_name(mt->kind()));
        }
        byte_off = bit_off / 8 / byte_size * byte_size;
        // Grow the load until it covers the whole bitfield.
        while (bit_off + bit_size - byte_off * 8 > byte_size * 8) {
            if (byte_size >= 8) {
                return error(E2BIG, "compute value",
                             "the bitfield at bit " + std::to_string(bit_off) + " (" +
                                 std::to_string(bit_size) +
                                 " bits) does not fit in one aligned 64-bit load");
            }
            byte_size *= 2;
            byte_off = bit_off / 8 / byte_size * byte_size;
        }
    } else {
        auto size = s.size_of(mt->id());
        if (!size) {
            return std::move(size).error();
        }
        byte_size = *size;
        byte_off = bit_off / 8;
        bit_size = byte_size * 8;
    }
    // The compiler and libbpf may place a bitfield load differently, so only signedness and the
    // right shift, which are never ambiguous, are checked against the instruction for them.
    out.validate = !bitfield;
    switch (kind) {
        case BPF_CORE_FIELD_BYTE_OFFSET:
            out.value = byte_off;
            if (!bitfield) {
                out.mem_size = uint32_t(byte_size);
                out.type_id = mt->id();
            }
            break;
        case BPF_CORE_FIELD_BYTE_SIZE:
            out.value = byte_size;
            break;
        case BPF_CORE_FIELD_SIGNED:
            out.value = (is_any_enum(mt->kind()) && mt->kflag()) ||
                        (mt->kind() == BTF_KIND_INT && (mt->int_encoding() & BTF_INT_SIGNED));
            out.validate = true;
            break;
        case BPF_CORE_FIELD_LSHIFT_U64:
            if constexpr (std::endian::native == std::endian::little) {
                out.value = 64 - (bit_off + bit_size - byte_off * 8);
            } else {
                out.value = (8 - byte_size) * 8 + (bit_off - byte_off * 8);
            }
            break;
        case BPF_CORE_FIELD_RSHIFT_U64:
            out.value = 64 - bit_size;
            out.validate = true;
            break;
        default:
            return error(EINVAL, "compute value", "not a field relocation");
    }
    return out;
}

// Computes a type relocation's value for a type found in one BTF.
inline result<uint64_t> type_relo_value(uint32_t kind, const access_path& p) {
    switch (kind) {
        case BPF_CORE_TYPE_ID_TARGET:
            return uint64_t(p.root_id);
        case BPF_CORE_TYPE_EXISTS:
        case BPF_CORE_TYPE_MATCHES:
            return uint64_t(1);
        case BPF_CORE_TYPE_SIZE: {
            auto size = p.btf->size_of(p.root_id);
            if (!size) {
                return std::move(size).error();
            }
            return uint64_t(*size);
        }
        default:
            return error(EINVAL, "compute value", "not a type relocation");
    }
}

// Computes an enumerator relocation's value; 32-bit enumerators are sign-extended as libbpf does.
inline uint64_t enumval_relo_value(uint32_t kind, const access_path& p) {
    if (kind == BPF_CORE_ENUMVAL_EXISTS) {
        return 1;
    }
    const accessor& a = p.steps[0];
    const btf::type e = p.btf->get(a.type_id);
    if (e.kind() == BTF_KIND_ENUM) {
        return uint64_t(int64_t(e.enums()[a.idx].val));
    }
    const struct btf_enum64& v = e.enums64()[a.idx];
    return (uint64_t(v.val_hi32) << 32) | v.val_lo32;
}

// Decides one relocation for a local access and a matched target access (`target` null when no
// candidate matched): the values, and whether to poison (libbpf's bpf_core_calc_relo).
inline result<decision> decide(const access_path& local, const access_path* target) {
    decision d;
    const uint32_t kind = local.kind;
    switch (classify(kind)) {
        case relo_class::field: {
            auto l = field_relo_value(kind, local);
            if (!l) {
                return std::move(l).error();
            }
            d.local_value = l->value;
            d.validate = l->validate;
            d.local_size = l->mem_size;
            if (!target) {
                d.poison = kind != BPF_CORE_FIELD_EXISTS;
                return d;
            }
            auto t = field_relo_value(kind, *target);
            if (!t) {
                return std::move(t).error();
            }
            d.target_value = t->value;
            d.target_size = t->mem_size;
            if (d.local_size != d.target_size) {
                // Resizing a load keeps the value only for pointers (a 32-bit target's pointers)
                // and unsigned integers, which are zero-extended.
                const btf::type lt = local.btf->get(l->type_id);
                const btf::type tt = target->btf->get(t->type_id);
                const bool pointers = lt.kind() == BTF_KIND_PTR && tt.kind() == BTF_KIND_PTR;
                const bool unsigned_ints = lt.kind() == BTF_KIND_INT && tt.kind() == BTF_KIND_INT &&
                                           lt.int_encoding() != BTF_INT_SIGNED &&
                                           tt.int_encoding() != BTF_INT_SIGNED;
                d.resize_unsafe = !pointers && !unsigned_ints;
            }
            return d;
        }
        case relo_class::type: {
            auto l = type_relo_value(kind, local);
            if (!l) {
                return std::move(l).error();
            }
            d.local_value = *l;
            // Type ids change when objects are linked, so the instruction's is not checked.
            d.validate = kind != BPF_CORE_TYPE_ID_TARGET;
            if (target) {
                auto t = type_relo_value(kind, *target);
                if (!t) {
                    return std::move(t).error();
                }
                d.target_value = *t;
            }
            return d;
        }
        case relo_class::enumval:
            d.local_value = enumval_relo_value(kind, local);
            if (target) {
                d.target_value = enumval_relo_value(kind, *target);
            } else {
                d.poison = kind == BPF_CORE_ENUMVAL_VALUE;
            }
            return d;
        case relo_class::unknown:
            break;
    }
    return error(EINVAL, "relocation kind", "unknown kind " + std::to_string(kind));
}

inline std::string type_label(const btf::spec& s, uint32_t id) {
    const btf::type t = s.get(id);
    std::string_view name = s.name(t);
    return std::string(btf::kind_name(t.kind())) + " " +
           (name.empty() ? std::string("<anon>") : std::string(name)) + " [" + std::to_string(id) +
           "]";
}

// Finds the relocation's candidates in the target, matches each and requires every match to
// agree (libbpf's bpf_core_calc_relo_insn).
inline result<decision> resolve(const btf::core_relo& r, const btf::spec& local,
                                const candidate_cache& targets) {
    auto lp = access_path::parse(local, r);
    if (!lp) {
        return std::move(lp).error();
    }
    if (r.kind == BPF_CORE_TYPE_ID_LOCAL) {
        decision d;
        d.local_value = d.target_value = r.type_id;
        d.validate = false;  // ids move when objects are linked
        return d;
    }
    const btf::type lt = local.get(r.type_id);
    const std::string_view name = local.name(lt);
    if (name.empty()) {
        return error(EINVAL, "find candidates",
                     "the local type is anonymous: only type_id_local relocates anonymous types");
    }
    const btf::spec& ts = targets.target();
    const std::vector<uint32_t> candidates = targets.find(name, lt.kind());

    decision chosen;
    access_path chosen_path;
    access_path path;
    size_t matched = 0;
    for (uint32_t id : candidates) {
        auto found = lp->match(ts, id, path);
        if (!found) {
            return std::move(found).error().context("candidate " + type_label(ts, id));
        }
        if (!*found) {
            continue;
        }
        auto d = decide(*lp, &path);
        if (!d) {
            return std::move(d).error().context("candidate " + type_label(ts, id));
        }
        d->target_id = id;
        if (matched == 0) {
            chosen = std::move(*d);
            chosen_path = std::move(path);
            path = access_path{};
        } else if (path.bit_offset != chosen_path.bit_offset) {
            return error(EINVAL, "field offset ambiguous",
                         type_label(ts, chosen.target_id) + " has it at bit " +
                             std::to_string(chosen_path.bit_offset) + ", " + type_label(ts, id) +
                             " at bit " + std::to_string(path.bit_offset));
        } else if (d->poison != chosen.poison || d->target_value != chosen.target_value) {
            return error(EINVAL, "relocation decision ambiguous",
                         type_label(ts, chosen.target_id) + " gives " +
                             std::to_string(chosen.target_value) + ", " + type_label(ts, id) +
                             " gives " + std::to_string(d->target_value));
        }
        ++matched;
    }
    if (matched > 0) {
        return chosen;
    }
    auto d = decide(*lp, nullptr);
    if (!d) {
        return std::move(d).error();
    }
    if (d->poison) {
        d->reason = candidates.empty()
                        ? "no candidate in target BTF"
                        : "not found in any of the " + std::to_string(candidates.size()) +
                              " candidates in target BTF (first: " + type_label(ts, candidates[0]) +
                              ")";
    }
    return d;
}

inline bool is_ld_imm64(const bpf_insn& insn) {
    return insn.code == (BPF_LD | BPF_IMM | BPF_DW);
}

inline void poison(bpf_insn& insn) {
    insn.code = BPF_JMP | BPF_CALL;
    insn.dst_reg = 0;
    insn.src_reg = 0;
    insn.off = 0;
    insn.imm = poison_helper_id;
}

inline int bytes_of_size(uint8_t code) {
    switch (BPF_SIZE(code)) {
        case BPF_DW:
            return 8;
        case BPF_W:
            return 4;
        case BPF_H:
            return 2;
        case BPF_B:
            return 1;
        default:
            return -1;
    }
}

inline int size_of_bytes(uint32_t bytes) {
    switch (bytes) {
        case 8:
            return BPF_DW;
        case 4:
            return BPF_W;
        case 2:
            return BPF_H;
        case 1:
            return BPF_B;
        default:
            return -1;
    }
}

// Writes a decision into instruction `index` (libbpf's bpf_core_patch_insn): the immediate of
// an ALU/ALU64 instruction, the offset (and, when the field changed size, the size) of an
// LDX/ST/STX, or the 64-bit value of an ld_imm64. Returns true when it poisoned.
inline result<bool> patch(std::span<bpf_insn> insns, size_t index, decision& d) {
    if (index >= insns.size()) {
        return error(EINVAL, "patch instruction #" + std::to_string(index),
                     "past the end of the " + std::to_string(insns.size()) + " instructions");
    }
    bpf_insn& insn = insns[index];
    auto poison_here = [&] {
        if (is_ld_imm64(insn) && index + 1 < insns.size()) {
            poison(insns[index + 1]);
        }
        poison(insn);
        return true;
    };
    if (d.poison) {
        return poison_here();
    }
    auto fail = [&](std::string detail) {
        return error(EINVAL, "patch instruction #" + std::to_string(index), std::move(detail));
    };
    auto mismatch = [&](const char* what, int64_t got) {
        return fail(std::string(what) + " holds " + std::to_string(got) + ", not the local value " +
                    std::to_string(d.local_value));
    };
    switch (BPF_CLASS(insn.code)) {
        case BPF_ALU:
        case BPF_ALU64:
            if (BPF_SRC(insn.code) != BPF_K) {
                return fail("an ALU instruction with a register operand has no immediate");
            }
            if (d.validate && uint64_t(int64_t(insn.imm)) != d.local_value) {
                return mismatch("the immediate", insn.imm);
            }
            insn.imm = int32_t(uint32_t(d.target_value));
            return false;
        case BPF_LDX:
        case BPF_ST:
        case BPF_STX: {
            if (d.validate && uint64_t(int64_t(insn.off)) != d.local_value) {
                return mismatch("the offset", insn.off);
            }
            if (d.target_value > uint64_t(INT16_MAX)) {
                return error(ERANGE, "patch instruction #" + std::to_string(index),
                             "offset " + std::to_string(d.target_value) + " does not fit");
            }
            if (d.resize_unsafe) {
                d.reason = "the field is " + std::to_string(d.target_size) +
                           " bytes in the target and " + std::to_string(d.local_size) +
                           " locally, and only unsigned integers and pointers can be loaded or "
                           "stored with another size";
                return poison_here();
            }
            insn.off = int16_t(d.target_value);
            if (d.local_size != d.target_size) {
                if (bytes_of_size(insn.code) != int(d.local_size)) {
                    return fail("accesses " + std::to_string(bytes_of_size(insn.code)) +
                                " bytes, not the field's " + std::to_string(d.local_size));
                }
                const int size = size_of_bytes(d.target_size);
                if (size < 0) {
                    return fail("cannot load or store the field's " +
                                std::to_string(d.target_size) + " bytes in one instruction");
                }
                // The mode (plain or sign-extending) and class stay; only the size changes.
                insn.code = uint8_t(BPF_MODE(insn.code) | size | BPF_CLASS(insn.code));
            }
            return false;
        }
        case BPF_LD: {
            if (!is_ld_imm64(insn) || index + 1 >= insns.size() || insn.src_reg != 0 ||
                insn.off != 0 || insns[index + 1].code != 0 || insns[index + 1].dst_reg != 0 ||
                insns[index + 1].src_reg != 0 || insns[index + 1].off != 0) {
                return fail("not a plain two-instruction ld_imm64");
            }
            const uint64_t imm =
                uint64_t(uint32_t(insn.imm)) | (uint64_t(uint32_t(insns[index + 1].imm)) << 32);
            if (d.validate && imm != d.local_value) {
                return fail("the 64-bit immediate holds " + std::to_string(imm) +
                            ", not the local value " + std::to_string(d.local_value));
            }
            insn.imm = int32_t(uint32_t(d.target_value));
            insns[index + 1].imm = int32_t(uint32_t(d.target_value >> 32));
            return false;
        }
        default: {
            char code[8];
            std::snprintf(code, sizeof code, "0x%02x", insn.code);
            return fail(std::string("opcode ") + code + " cannot be relocated");
        }
    }
}

}  // namespace detail

// Applies one CO-RE relocation to instruction `index` of `insns` (the caller turns r.insn_off,
// in bytes from the section start, into an index in the span it passes), with libbpf's
// semantics: candidates are the types of `target` with the local type's essential name and a
// compatible kind, looked up in `cache` (built over `target`); every candidate that matches must
// agree, or the relocation fails as ambiguous; when none matches, the *_exists, type_matches,
// type_size and type_id_target kinds write 0 and the others poison the instruction
// (outcome::why says why). An instruction that does not hold the local value fails. A load or
// store of a field whose size changed is resized when the field is an unsigned integer or a
// pointer, and poisoned otherwise. Errors read "CO-RE relocation: field_byte_offset of struct
// foo::a via 0:1: ...".
inline result<outcome> apply(std::span<bpf_insn> insns, size_t index, const btf::core_relo& r,
                             const btf::spec& local, const btf::spec& target,
                             const candidate_cache& cache) {
    if (&cache.target() != &target) {
        return error(EINVAL, "CO-RE relocation",
                     "the candidate cache was built over another target BTF");
    }
    auto d = detail::resolve(r, local, cache);
    if (!d) {
        return std::move(d).error().context(describe(r, local)).context("CO-RE relocation");
    }
    auto poisoned = detail::patch(insns, index, *d);
    if (!poisoned) {
        return std::move(poisoned).error().context(describe(r, local)).context("CO-RE relocation");
    }
    outcome out;
    out.local_value = d->local_value;
    out.target_id = d->target_id;
    if (*poisoned) {
        out.poisoned = true;
        out.why = describe(r, local) + ": " + d->reason;
    } else {
        out.target_value = d->target_value;
    }
    return out;
}

}  // namespace ebpf::core
