// Rewrites an object's BTF into what the running kernel accepts: externs laid out, and kinds
// the kernel lacks replaced in place by ones it has, as libbpf does (layer: pure).
#pragma once

#include <linux/btf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"

namespace ebpf::btf {

// BTF kinds and features a kernel may lack, with the version that brought each.
struct kernel_support {
    bool datasec = true;      // VAR, DATASEC: 5.2
    bool float_kind = true;   // 5.13
    bool decl_tag = true;     // 5.16
    bool type_tag = true;     // 5.17
    bool enum64 = true;       // 6.0
    bool func_global = true;  // global function linkage: 5.6
};

// Where an extern lives in its DATASEC after the loader laid it out.
struct extern_layout {
    uint32_t offset;
    uint32_t size;
};

// Returns a copy of `b`'s bytes for BTF_LOAD: extern VARs and FUNCs become global ones, the
// .kconfig DATASEC gets the loader's layout (`kconfig`, by variable name, of `kconfig_size`
// bytes), and unsupported kinds are rewritten. A DATASEC that stays empty (size 0, which the
// kernel refuses) is an error naming it.
inline result<std::vector<std::byte>> sanitize_for_kernel(
    const spec& b, const kernel_support& k, const std::map<std::string, extern_layout>& kconfig,
    uint32_t kconfig_size) {
    std::vector<std::byte> raw(b.bytes().begin(), b.bytes().end());
    auto at = [&](const type& t) {
        return reinterpret_cast<btf_type*>(
            raw.data() + (reinterpret_cast<const std::byte*>(t.raw()) - b.bytes().data()));
    };
    for (uint32_t id = b.first_id(); id < b.count(); ++id) {
        const type t = b.get(id);
        btf_type* w = at(t);
        const uint32_t vlen = t.vlen();
        switch (t.kind()) {
            case BTF_KIND_VAR: {
                auto* var = reinterpret_cast<btf_var*>(w + 1);
                if (var->linkage == BTF_VAR_GLOBAL_EXTERN) {
                    var->linkage = BTF_VAR_GLOBAL_ALLOCATED;
                }
                if (!k.datasec) {
                    // VAR -> INT of one byte: both carry 4 bytes after the header.
                    w->info = BTF_KIND_INT << 24;
                    w->size = 1;
                    *reinterpret_cast<uint32_t*>(w + 1) = 8;
                }
                break;
            }
            case BTF_KIND_DATASEC: {
                auto* vars = reinterpret_cast<btf_var_secinfo*>(w + 1);
                const std::string_view name = b.name(t);
                if (name == ".kconfig") {
                    w->size = kconfig_size;
                    for (uint32_t i = 0; i < vlen; ++i) {
                        auto it = kconfig.find(std::string(b.name(vars[i].type)));
                        if (it != kconfig.end()) {
                            vars[i].offset = it->second.offset;
                            vars[i].size = it->second.size;
                        }
                    }
                }
                if (w->size == 0) {
                    return error(EINVAL, "prepare BTF for the kernel",
                                 "DATASEC " + std::string(name) + " is empty");
                }
                if (!k.datasec) {
                    // DATASEC -> STRUCT: a var_secinfo and a member are both 12 bytes.
                    w->info = (BTF_KIND_STRUCT << 24) | vlen;
                    for (uint32_t i = 0; i < vlen; ++i) {
                        const type var = b.get(vars[i].type);
                        btf_member m{var.name_off(), var.ref(), vars[i].offset * 8};
                        std::memcpy(&vars[i], &m, sizeof m);
                    }
                }
                break;
            }
            case BTF_KIND_FUNC:
                if (vlen == 2 /* extern */ || (vlen == BTF_FUNC_GLOBAL && !k.func_global)) {
                    w->info = (BTF_KIND_FUNC << 24) |
                              (k.func_global && vlen == 2 ? BTF_FUNC_GLOBAL : BTF_FUNC_STATIC);
                }
                break;
            case BTF_KIND_FLOAT:
                if (!k.float_kind) {
                    w->info = BTF_KIND_STRUCT << 24;  // same size, no members
                }
                break;
            case BTF_KIND_DECL_TAG:
                if (!k.decl_tag) {
                    // -> INT of one byte, nameless: both carry 4 bytes after the header.
                    w->name_off = 0;
                    w->info = BTF_KIND_INT << 24;
                    w->size = 1;
                    *reinterpret_cast<uint32_t*>(w + 1) = 8;
                }
                break;
            case BTF_KIND_TYPE_TAG:
                if (!k.type_tag) {
                    w->name_off = 0;
                    w->info = BTF_KIND_CONST << 24;
                }
                break;
            case BTF_KIND_ENUM64:
                if (!k.enum64) {
                    return error(EOPNOTSUPP, "prepare BTF for the kernel",
                                 "enum64 " + std::string(b.name(t)) +
                                     ": the kernel has no 64-bit enums (6.0+)");
                }
                break;
            default:
                break;
        }
    }
    return raw;
}

}  // namespace ebpf::btf
