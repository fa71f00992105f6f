// Program types from ELF section names, by libbpf's conventions (layer: pure).
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace ebpf {

// Program and attach types newer than the host's 6.1 uapi header.
inline constexpr uint32_t prog_type_netfilter = 32;  // 6.4
inline constexpr uint32_t attach_struct_ops = 44;
inline constexpr uint32_t attach_netfilter = 45;
inline constexpr uint32_t attach_tcx_ingress = 46;  // 6.6
inline constexpr uint32_t attach_tcx_egress = 47;
inline constexpr uint32_t attach_trace_uprobe_multi = 48;
inline constexpr uint32_t attach_cgroup_unix_connect = 49;  // 6.7
inline constexpr uint32_t attach_cgroup_unix_sendmsg = 50;
inline constexpr uint32_t attach_cgroup_unix_recvmsg = 51;
inline constexpr uint32_t attach_cgroup_unix_getpeername = 52;
inline constexpr uint32_t attach_cgroup_unix_getsockname = 53;
inline constexpr uint32_t attach_netkit_primary = 54;  // 6.7
inline constexpr uint32_t attach_netkit_peer = 55;

// What a section name says about its programs.
struct section_kind {
    uint32_t prog_type;
    uint32_t expected_attach_type;
    bool sleepable;
    // The part after the matched prefix and '/', e.g. the function of "kprobe/tcp_connect".
    std::string_view attach_to;
};

namespace detail {
struct section_def {
    std::string_view name;
    uint32_t prog_type;
    uint32_t attach_type;
    bool sleepable;
    bool prefix;  // also matches "name/..." (libbpf's '+' entries); otherwise exact
};

// Longer names first where one is a prefix of another ("cgroup_skb/ingress" before the rest).
inline constexpr section_def section_defs[] = {
    {"socket", BPF_PROG_TYPE_SOCKET_FILTER, 0, false, true},
    {"sk_reuseport/migrate", BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, false,
     false},
    {"sk_reuseport", BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT, false, false},
    {"kprobe.multi", BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI, false, true},
    {"kretprobe.multi", BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI, false, true},
    {"uprobe.multi.s", BPF_PROG_TYPE_KPROBE, attach_trace_uprobe_multi, true, true},
    {"uretprobe.multi.s", BPF_PROG_TYPE_KPROBE, attach_trace_uprobe_multi, true, true},
    {"uprobe.multi", BPF_PROG_TYPE_KPROBE, attach_trace_uprobe_multi, false, true},
    {"uretprobe.multi", BPF_PROG_TYPE_KPROBE, attach_trace_uprobe_multi, false, true},
    {"kprobe", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"kretprobe", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"uprobe.s", BPF_PROG_TYPE_KPROBE, 0, true, true},
    {"uretprobe.s", BPF_PROG_TYPE_KPROBE, 0, true, true},
    {"uprobe", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"uretprobe", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"ksyscall", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"kretsyscall", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"usdt.s", BPF_PROG_TYPE_KPROBE, 0, true, true},
    {"usdt", BPF_PROG_TYPE_KPROBE, 0, false, true},
    {"tc/ingress", BPF_PROG_TYPE_SCHED_CLS, attach_tcx_ingress, false, false},
    {"tc/egress", BPF_PROG_TYPE_SCHED_CLS, attach_tcx_egress, false, false},
    {"tcx/ingress", BPF_PROG_TYPE_SCHED_CLS, attach_tcx_ingress, false, false},
    {"tcx/egress", BPF_PROG_TYPE_SCHED_CLS, attach_tcx_egress, false, false},
    {"netkit/primary", BPF_PROG_TYPE_SCHED_CLS, attach_netkit_primary, false, false},
    {"netkit/peer", BPF_PROG_TYPE_SCHED_CLS, attach_netkit_peer, false, false},
    {"tc", BPF_PROG_TYPE_SCHED_CLS, 0, false, true},
    {"classifier", BPF_PROG_TYPE_SCHED_CLS, 0, false, true},
    {"action", BPF_PROG_TYPE_SCHED_ACT, 0, false, true},
    {"tracepoint", BPF_PROG_TYPE_TRACEPOINT, 0, false, true},
    {"tp", BPF_PROG_TYPE_TRACEPOINT, 0, false, true},
    {"raw_tracepoint.w", BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0, false, true},
    {"raw_tp.w", BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, 0, false, true},
    {"raw_tracepoint", BPF_PROG_TYPE_RAW_TRACEPOINT, 0, false, true},
    {"raw_tp", BPF_PROG_TYPE_RAW_TRACEPOINT, 0, false, true},
    {"tp_btf", BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, false, true},
    {"fentry.s", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, true, true},
    {"fmod_ret.s", BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN, true, true},
    {"fexit.s", BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, true, true},
    {"fentry", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, false, true},
    {"fmod_ret", BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN, false, true},
    {"fexit", BPF_PROG_TYPE_TRACING, BPF_TRACE_FEXIT, false, true},
    {"freplace", BPF_PROG_TYPE_EXT, 0, false, true},
    {"lsm.s", BPF_PROG_TYPE_LSM, BPF_LSM_MAC, true, true},
    {"lsm_cgroup", BPF_PROG_TYPE_LSM, BPF_LSM_CGROUP, false, true},
    {"lsm", BPF_PROG_TYPE_LSM, BPF_LSM_MAC, false, true},
    {"iter.s", BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, true, true},
    {"iter", BPF_PROG_TYPE_TRACING, BPF_TRACE_ITER, false, true},
    {"syscall", BPF_PROG_TYPE_SYSCALL, 0, true, false},
    {"xdp.frags/devmap", BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP, false, false},
    {"xdp/devmap", BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP, false, false},
    {"xdp.frags/cpumap", BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP, false, false},
    {"xdp/cpumap", BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP, false, false},
    {"xdp.frags", BPF_PROG_TYPE_XDP, BPF_XDP, false, false},
    {"xdp", BPF_PROG_TYPE_XDP, BPF_XDP, false, true},
    {"perf_event", BPF_PROG_TYPE_PERF_EVENT, 0, false, false},
    {"lwt_in", BPF_PROG_TYPE_LWT_IN, 0, false, false},
    {"lwt_out", BPF_PROG_TYPE_LWT_OUT, 0, false, false},
    {"lwt_xmit", BPF_PROG_TYPE_LWT_XMIT, 0, false, false},
    {"lwt_seg6local", BPF_PROG_TYPE_LWT_SEG6LOCAL, 0, false, false},
    {"sockops", BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, false, true},
    {"sk_skb/stream_parser", BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_PARSER, false, false},
    {"sk_skb/stream_verdict", BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_VERDICT, false, false},
    {"sk_skb", BPF_PROG_TYPE_SK_SKB, 0, false, true},
    {"sk_msg", BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, false, true},
    {"lirc_mode2", BPF_PROG_TYPE_LIRC_MODE2, BPF_LIRC_MODE2, false, false},
    {"flow_dissector", BPF_PROG_TYPE_FLOW_DISSECTOR, BPF_FLOW_DISSECTOR, false, true},
    {"cgroup_skb/ingress", BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_INGRESS, false, false},
    {"cgroup_skb/egress", BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, false, false},
    {"cgroup/skb", BPF_PROG_TYPE_CGROUP_SKB, 0, false, false},
    {"cgroup/sock_create", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, false, false},
    {"cgroup/sock_release", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_RELEASE, false, false},
    {"cgroup/sock", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_CREATE, false, false},
    {"cgroup/post_bind4", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET4_POST_BIND, false, false},
    {"cgroup/post_bind6", BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET6_POST_BIND, false, false},
    {"cgroup/bind4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND, false, false},
    {"cgroup/bind6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_BIND, false, false},
    {"cgroup/connect4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, false, false},
    {"cgroup/connect6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT, false, false},
    {"cgroup/connect_unix", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach_cgroup_unix_connect, false,
     false},
    {"cgroup/sendmsg4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG, false, false},
    {"cgroup/sendmsg6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_SENDMSG, false, false},
    {"cgroup/sendmsg_unix", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach_cgroup_unix_sendmsg, false,
     false},
    {"cgroup/recvmsg4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG, false, false},
    {"cgroup/recvmsg6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_RECVMSG, false, false},
    {"cgroup/recvmsg_unix", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach_cgroup_unix_recvmsg, false,
     false},
    {"cgroup/getpeername4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME, false,
     false},
    {"cgroup/getpeername6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETPEERNAME, false,
     false},
    {"cgroup/getpeername_unix", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach_cgroup_unix_getpeername,
     false, false},
    {"cgroup/getsockname4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETSOCKNAME, false,
     false},
    {"cgroup/getsockname6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETSOCKNAME, false,
     false},
    {"cgroup/getsockname_unix", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach_cgroup_unix_getsockname,
     false, false},
    {"cgroup/sysctl", BPF_PROG_TYPE_CGROUP_SYSCTL, BPF_CGROUP_SYSCTL, false, false},
    {"cgroup/getsockopt", BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_GETSOCKOPT, false, false},
    {"cgroup/setsockopt", BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_CGROUP_SETSOCKOPT, false, false},
    {"cgroup/dev", BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, false, false},
    {"struct_ops.s", BPF_PROG_TYPE_STRUCT_OPS, 0, true, true},
    {"struct_ops", BPF_PROG_TYPE_STRUCT_OPS, 0, false, true},
    {"sk_lookup", BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP, false, true},
    {"netfilter", prog_type_netfilter, attach_netfilter, false, false},
};
}  // namespace detail

// Returns what a program section's name says (without a leading '?'), or nullopt for a name
// no convention covers. "kprobe/tcp_connect" gives KPROBE with attach_to "tcp_connect".
inline std::optional<section_kind> classify_section(std::string_view name) {
    const detail::section_def* best = nullptr;
    for (const auto& d : detail::section_defs) {
        const bool exact = name == d.name;
        const bool sub = d.prefix && name.size() > d.name.size() &&
                         name.substr(0, d.name.size()) == d.name && name[d.name.size()] == '/';
        if ((exact || sub) && (!best || d.name.size() > best->name.size())) {
            best = &d;
        }
    }
    if (!best) {
        return std::nullopt;
    }
    std::string_view rest =
        name.size() > best->name.size() ? name.substr(best->name.size() + 1) : std::string_view{};
    return section_kind{best->prog_type, best->attach_type, best->sleepable, rest};
}

}  // namespace ebpf
