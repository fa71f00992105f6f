// Feature probes: which map types, program types and cgroup links the running kernel has,
// each probed once per process and cached (layer: objects).
#pragma once

#include <linux/bpf.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>

#include "ebpf/base/result.hpp"
#include "ebpf/spec/insn.hpp"
#include "ebpf/sys/bpf.hpp"

namespace ebpf::features {

namespace detail {
// A cached probe answer: 0 not probed yet, 1 absent, 2 present. Failures that say nothing about
// the feature (EPERM, ENOMEM) are returned and not cached.
inline constexpr uint32_t max_kinds = 128;
inline std::atomic<uint8_t> map_cache[max_kinds];
inline std::atomic<uint8_t> prog_cache[max_kinds];
inline std::atomic<uint8_t> link_cache{0};

template <class Probe>
inline result<bool> cached(std::atomic<uint8_t>& slot, Probe probe) {
    uint8_t v = slot.load(std::memory_order_relaxed);
    if (v != 0) {
        return v == 2;
    }
    auto r = probe();
    if (r) {
        slot.store(*r ? 2 : 1, std::memory_order_relaxed);
    }
    return r;
}

// A kernel that lacks a type answers EINVAL (unknown type) or ENOTSUPP/EOPNOTSUPP.
inline result<bool> verdict(result<fd> r, const std::string& what) {
    if (r) {
        return true;
    }
    const int e = r.error().code();
    if (e == EINVAL || e == EOPNOTSUPP || e == 524 /* ENOTSUPP */) {
        return false;
    }
    return std::move(r).error().context("probe " + what);
}
}  // namespace detail

// Returns whether the kernel can create maps of `type` (enum bpf_map_type). Types that need
// BTF or a struct_ops value (the local storages, STRUCT_OPS) cannot be probed this simply and
// give an EOPNOTSUPP error.
inline result<bool> map_type(uint32_t type) {
    if (type >= detail::max_kinds) {
        return error(EINVAL, "probe map type " + std::to_string(type), "type out of range");
    }
    return detail::cached(detail::map_cache[type], [type]() -> result<bool> {
        sys::map_create_attr attr{};
        attr.map_type = type;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        fd inner;
        switch (type) {
            case BPF_MAP_TYPE_RINGBUF:
            case BPF_MAP_TYPE_USER_RINGBUF:
                attr.key_size = 0;
                attr.value_size = 0;
                attr.max_entries = uint32_t(::sysconf(_SC_PAGESIZE));
                break;
            case BPF_MAP_TYPE_LPM_TRIE:
                attr.key_size = 8;
                attr.map_flags = BPF_F_NO_PREALLOC;
                break;
            case BPF_MAP_TYPE_QUEUE:
            case BPF_MAP_TYPE_STACK:
            case BPF_MAP_TYPE_BLOOM_FILTER:
                attr.key_size = 0;
                break;
            case BPF_MAP_TYPE_ARRAY_OF_MAPS:
            case BPF_MAP_TYPE_HASH_OF_MAPS: {
                sys::map_create_attr in{};
                in.map_type = BPF_MAP_TYPE_ARRAY;
                in.key_size = 4;
                in.value_size = 4;
                in.max_entries = 1;
                auto f = sys::map_create(in);
                if (!f) {
                    return std::move(f).error().context("probe map type " + std::to_string(type) +
                                                        ": inner map");
                }
                inner = std::move(*f);
                attr.inner_map_fd = uint32_t(inner.get());
                break;
            }
            case BPF_MAP_TYPE_SK_STORAGE:
            case BPF_MAP_TYPE_INODE_STORAGE:
            case BPF_MAP_TYPE_TASK_STORAGE:
            case BPF_MAP_TYPE_STRUCT_OPS:
            case BPF_MAP_TYPE_CGROUP_STORAGE:
            case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
                return error(EOPNOTSUPP, "probe map type " + std::to_string(type),
                             "this type needs BTF to create; no simple probe");
            default:
                break;
        }
        return detail::verdict(sys::map_create(attr), "map type " + std::to_string(type));
    });
}

// Returns whether the kernel can load programs of `type` (enum bpf_prog_type), by loading
// "r0 = 0; exit". Tracing, LSM, EXT and struct_ops programs need a BTF target and give an
// EOPNOTSUPP error.
inline result<bool> prog_type(uint32_t type) {
    if (type >= detail::max_kinds) {
        return error(EINVAL, "probe program type " + std::to_string(type), "type out of range");
    }
    return detail::cached(detail::prog_cache[type], [type]() -> result<bool> {
        static constexpr bpf_insn code[] = {insn::mov64_imm(insn::r0, 0), insn::exit()};
        sys::prog_load_attr attr{};
        attr.prog_type = type;
        attr.insns = sys::ptr(code);
        attr.insn_cnt = 2;
        attr.license = sys::ptr("GPL");
        switch (type) {
            case BPF_PROG_TYPE_CGROUP_SOCKOPT:
                attr.expected_attach_type = BPF_CGROUP_SETSOCKOPT;
                break;
            case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
                attr.expected_attach_type = BPF_CGROUP_INET4_CONNECT;
                break;
            case BPF_PROG_TYPE_SK_LOOKUP:
                attr.expected_attach_type = BPF_SK_LOOKUP;
                break;
            case BPF_PROG_TYPE_TRACING:
            case BPF_PROG_TYPE_LSM:
            case BPF_PROG_TYPE_EXT:
            case BPF_PROG_TYPE_STRUCT_OPS:
                return error(EOPNOTSUPP, "probe program type " + std::to_string(type),
                             "this type needs a BTF attach target; no simple probe");
            default:
                break;
        }
        // Only presence matters here: skip the verifier log.
        sys::log_options quiet{.level = 0, .initial_size = 128, .max_size = 128};
        return detail::verdict(sys::prog_load(attr, quiet), "program type " + std::to_string(type));
    });
}

// Returns whether the kernel has bpf_link for cgroups (5.7+): LINK_CREATE with no program
// answers EBADF where the command exists and EINVAL where it does not. Nothing is attached.
inline result<bool> cgroup_links() {
    return detail::cached(detail::link_cache, []() -> result<bool> {
        sys::link_create_attr attr{};
        attr.prog_fd = uint32_t(-1);
        attr.target_fd = uint32_t(-1);
        attr.attach_type = BPF_CGROUP_INET_INGRESS;
        auto r = sys::link_create(attr);
        if (r) {
            return error(EINVAL, "probe cgroup links", "LINK_CREATE with no program succeeded");
        }
        const int e = r.error().code();
        if (e == EBADF) {
            return true;
        }
        if (e == EINVAL) {
            return false;
        }
        return std::move(r).error().context("probe cgroup links");
    });
}

}  // namespace ebpf::features
