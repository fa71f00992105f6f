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

namespace detail {
// Appends types (raw 32-bit words) and strings to BTF bytes, fixing up the header.
inline std::vector<std::byte> append_types(const std::vector<std::byte>& raw,
                                           const std::vector<uint32_t>& words,
                                           const std::string& strings) {
    btf_header h;
    std::memcpy(&h, raw.data(), sizeof h);
    const std::byte* types = raw.data() + h.hdr_len + h.type_off;
    const std::byte* strs = raw.data() + h.hdr_len + h.str_off;
    std::vector<std::byte> out(raw.begin(), raw.begin() + h.hdr_len);
    out.insert(out.end(), types, types + h.type_len);
    const auto* w = reinterpret_cast<const std::byte*>(words.data());
    out.insert(out.end(), w, w + words.size() * 4);
    out.insert(out.end(), strs, strs + h.str_len);
    const auto* sp = reinterpret_cast<const std::byte*>(strings.data());
    out.insert(out.end(), sp, sp + strings.size());
    btf_header nh = h;
    nh.type_off = 0;
    nh.type_len = uint32_t(h.type_len + words.size() * 4);
    nh.str_off = nh.type_len;
    nh.str_len = uint32_t(h.str_len + strings.size());
    std::memcpy(out.data(), &nh, sizeof nh);
    return out;
}
}  // namespace detail

// Returns a copy of `b`'s bytes for BTF_LOAD: extern VARs and FUNCs become global ones, the
// .kconfig DATASEC gets the loader's layout (`kconfig`, by variable name, of `kconfig_size`
// bytes), the .ksyms DATASEC gets 4-byte placeholder slots (the kernel takes no functions or
// sizeless variables there; the real ids come from the kernel's BTF at load), and unsupported
// kinds are rewritten. Any other empty DATASEC (the kernel refuses size 0) is an error naming
// it.
inline result<std::vector<std::byte>> sanitize_for_kernel(
    const spec& b, const kernel_support& k, const std::map<std::string, extern_layout>& kconfig,
    uint32_t kconfig_size) {
    std::vector<std::byte> raw(b.bytes().begin(), b.bytes().end());
    auto at = [&](const type& t) {
        return reinterpret_cast<btf_type*>(
            raw.data() + (reinterpret_cast<const std::byte*>(t.raw()) - b.bytes().data()));
    };
    // Placeholders for .ksyms: an int and a variable of it, appended after the last type.
    std::vector<uint32_t> extra_words;
    std::string extra_strings;
    uint32_t placeholder_var = 0;
    uint32_t placeholder_name = 0;
    for (uint32_t id = b.first_id(); id < b.count(); ++id) {
        if (b.get(id).kind() == BTF_KIND_DATASEC && b.name(id) == ".ksyms") {
            btf_header h;
            std::memcpy(&h, raw.data(), sizeof h);
            const uint32_t int_name = h.str_len;
            extra_strings += std::string("int") + '\0';
            const uint32_t var_name = uint32_t(h.str_len + extra_strings.size());
            placeholder_name = var_name;
            extra_strings += std::string("ebpf_ksym") + '\0';
            const uint32_t int_id = b.count();
            placeholder_var = b.count() + 1;
            extra_words = {int_name, BTF_KIND_INT << 24, 4,      (BTF_INT_SIGNED << 24) | 32,
                           var_name, BTF_KIND_VAR << 24, int_id, BTF_VAR_GLOBAL_ALLOCATED};
            break;
        }
    }
    for (uint32_t id = b.first_id(); id < b.count(); ++id) {
        const type t = b.get(id);
        btf_type* w = at(t);
        const uint32_t vlen = t.vlen();
        switch (t.kind()) {
            case BTF_KIND_VAR: {
                auto* var = reinterpret_cast<struct btf_var*>(w + 1);
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
                if (name == ".ksyms" && placeholder_var) {
                    for (uint32_t i = 0; i < vlen; ++i) {
                        vars[i].type = placeholder_var;
                        vars[i].offset = 4 * i;
                        vars[i].size = 4;
                    }
                    w->size = 4 * vlen;
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
                if (vlen == 2 /* extern */ && placeholder_name) {
                    // The kernel wants named parameters on global functions.
                    const type proto = b.get(t.ref());
                    if (proto.kind() == BTF_KIND_FUNC_PROTO) {
                        auto* params = reinterpret_cast<btf_param*>(at(proto) + 1);
                        for (uint32_t i = 0; i < proto.vlen(); ++i) {
                            if (params[i].name_off == 0 && params[i].type != 0) {
                                params[i].name_off = placeholder_name;
                            }
                        }
                    }
                }
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
    if (!extra_words.empty()) {
        return detail::append_types(raw, extra_words, extra_strings);
    }
    return raw;
}

}  // namespace ebpf::btf
