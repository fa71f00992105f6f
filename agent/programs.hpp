// The agent's programs: which object holds each, where it attaches, and which config switch
// enables it; and the counter maps that must outlive a program (reloads, restarts in keep mode).
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string_view>

#include "config.hpp"
#include "net_stat.h"

namespace agent {

struct program_def {
    std::string_view name;         // the program's name in the kernel (and in bpftool)
    std::string_view object;       // the embedded object that holds it
    uint32_t attach_type;          // BPF_CGROUP_*
    std::string_view attach_name;  // how status and metrics call the hook
    bool program_set::*enabled;
};

inline constexpr program_def program_defs[] = {
    {"tcp_rto", "tcp_rto", BPF_CGROUP_SOCK_OPS, "sock_ops", &program_set::tcp_rto},
    {"tcp_tos", "tcp_tos", BPF_CGROUP_SOCK_OPS, "sock_ops", &program_set::tcp_tos},
    {"tclass_lock", "tclass_lock", BPF_CGROUP_SETSOCKOPT, "setsockopt", &program_set::tclass_lock},
    {"net_stat_tx", "net_stat", BPF_CGROUP_INET_EGRESS, "egress", &program_set::net_stat},
    {"net_stat_rx", "net_stat", BPF_CGROUP_INET_INGRESS, "ingress", &program_set::net_stat},
    {"net_stat_dc_tx", "net_stat", BPF_CGROUP_INET_EGRESS, "egress", &program_set::net_stat_dc},
    {"net_stat_dc_rx", "net_stat", BPF_CGROUP_INET_INGRESS, "ingress", &program_set::net_stat_dc},
};

// The attach types the agent uses, each once.
inline constexpr uint32_t agent_attach_types[] = {BPF_CGROUP_SOCK_OPS, BPF_CGROUP_SETSOCKOPT,
                                                  BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_INGRESS};

inline std::string_view attach_type_name(uint32_t t) {
    for (const auto& d : program_defs) {
        if (d.attach_type == t) {
            return d.attach_name;
        }
    }
    return "unknown";
}

inline const program_def* find_program_def(std::string_view name) {
    for (const auto& d : program_defs) {
        if (d.name == name) {
            return &d;
        }
    }
    return nullptr;
}

struct counter_map_def {
    std::string_view object;
    std::string_view map;
};

// Maps whose contents are counters: reused by a reload and, in keep mode, across restarts.
inline constexpr counter_map_def counter_map_defs[] = {
    {"net_stat", NET_STAT_MAP_CGROUP}, {"net_stat", NET_STAT_MAP_DC},
    {"net_stat", NET_STAT_MAP_DC_1},   {"net_stat", NET_STAT_MAP_ERRORS},
    {"tcp_rto", "tcp_rto_stats"},
};

}  // namespace agent
