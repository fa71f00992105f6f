// Names of map and program types, as bpftool prints them (layer: pure).
#pragma once

#include <cstdint>
#include <iterator>
#include <string>

namespace ebpf {

// Returns the name of a map type ("hash", "lpm_trie"), or its number for types newer than
// this table.
inline std::string map_type_name(uint32_t type) {
    static constexpr const char* names[] = {
        "unspec",
        "hash",
        "array",
        "prog_array",
        "perf_event_array",
        "percpu_hash",
        "percpu_array",
        "stack_trace",
        "cgroup_array",
        "lru_hash",
        "lru_percpu_hash",
        "lpm_trie",
        "array_of_maps",
        "hash_of_maps",
        "devmap",
        "sockmap",
        "cpumap",
        "xskmap",
        "sockhash",
        "cgroup_storage",
        "reuseport_sockarray",
        "percpu_cgroup_storage",
        "queue",
        "stack",
        "sk_storage",
        "devmap_hash",
        "struct_ops",
        "ringbuf",
        "inode_storage",
        "task_storage",
        "bloom_filter",
        "user_ringbuf",
        "cgrp_storage",
        "arena",
    };
    return type < std::size(names) ? names[type] : std::to_string(type);
}

// Returns the name of a program type ("sock_ops", "cgroup_skb"), or its number.
inline std::string prog_type_name(uint32_t type) {
    static constexpr const char* names[] = {
        "unspec",
        "socket_filter",
        "kprobe",
        "sched_cls",
        "sched_act",
        "tracepoint",
        "xdp",
        "perf_event",
        "cgroup_skb",
        "cgroup_sock",
        "lwt_in",
        "lwt_out",
        "lwt_xmit",
        "sock_ops",
        "sk_skb",
        "cgroup_device",
        "sk_msg",
        "raw_tracepoint",
        "cgroup_sock_addr",
        "lwt_seg6local",
        "lirc_mode2",
        "sk_reuseport",
        "flow_dissector",
        "cgroup_sysctl",
        "raw_tracepoint_writable",
        "cgroup_sockopt",
        "tracing",
        "struct_ops",
        "ext",
        "lsm",
        "sk_lookup",
        "syscall",
        "netfilter",
    };
    return type < std::size(names) ? names[type] : std::to_string(type);
}

}  // namespace ebpf
