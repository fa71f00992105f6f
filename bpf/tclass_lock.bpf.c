/* tclass_lock (cgroup/setsockopt): an application's setsockopt(SOL_IPV6, IPV6_TCLASS) succeeds
 * and changes nothing, so the agent's DSCP policy stands; optionally the same for
 * setsockopt(SOL_IP, IP_TOS). Every other option goes to the kernel untouched.
 *
 * Known bypasses on 6.x (see the tests): 32-bit processes do not run the hook (compat
 * setsockopt skips it), and a per-packet IPV6_TCLASS control message (sendmsg cmsg) is never
 * seen by it. */
#include "tclass_lock.h"
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent before load. */
volatile const __u32 lock_ip_tos = 0;

#define SOL_IP 0
#define IP_TOS 1
#define SOL_IPV6 41
#define IPV6_TCLASS 67

SEC("cgroup/setsockopt")
int tclass_lock(struct bpf_sockopt* ctx) {
    if ((ctx->level == SOL_IPV6 && ctx->optname == IPV6_TCLASS) ||
        (lock_ip_tos && ctx->level == SOL_IP && ctx->optname == IP_TOS)) {
        /* -1: skip the kernel's handler; the syscall returns 0. */
        ctx->optlen = -1;
        return 1;
    }
    /* 0: the kernel uses the caller's own buffer (no copy; safe past a page). */
    ctx->optlen = 0;
    return 1;
}
