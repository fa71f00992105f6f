/* tcp_rto (sock_ops): per destination (policy.h), the initial RTO, the minimum RTO and the
 * congestion control once established, the IPv6 flow-label mode, and YaTTL: on the first SYN
 * retransmit (the second SYN on the wire) the class selector goes up by one (CS0..CS5) with
 * the first SYN's flow label; the next retransmit puts both back.
 *
 * TIMEOUT_INIT is answered only when a rule sets an RTO (the reply is shared by the chain: a
 * miss must not clobber another program's answer), has no side effects (the kernel asks again on
 * every SYN retransmit, and for SYN-ACKs), and every path returns 1. */
#include "tcp_rto.h"
#include "ebpf_bpf.h"
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

extern unsigned long CONFIG_HZ __kconfig;

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, TCP_RTO_STAT_COUNT);
} tcp_rto_stats SEC(".maps");

#define SOL_SOCKET 1
#define SO_TXREHASH 74
#define SOL_TCP 6
#define TCP_CONGESTION 13
#define TCP_BPF_RTO_MIN 1004
#define SOL_IP 0
#define IP_TOS 1
#define SOL_IPV6 41
#define IPV6_TCLASS 67
#define IPV6_AUTOFLOWLABEL 70
#define YATTL_BIT 0x04 /* the lowest DSCP bit in the TOS/TCLASS byte */

static __always_inline void count(__u32 stat) {
    __u64* v = bpf_map_lookup_elem(&tcp_rto_stats, &stat);
    if (v)
        *v += 1;
}

static __always_inline long set_int(struct bpf_sock_ops* s, int level, int opt, int value) {
    return bpf_setsockopt(s, level, opt, &value, sizeof(value));
}

static __always_inline int fixed_label(const struct policy_rule* r,
                                       const struct policy_network* net) {
    return r->flowlabel == POLICY_FLOWLABEL_FIXED || (net->flags & POLICY_NET_FIXED_FLOWLABEL);
}

static __always_inline int wants_yattl(const struct policy_rule* r,
                                       const struct policy_network* net) {
    return r->yattl && !(net->flags & POLICY_NET_NO_YATTL);
}

/* The first SYN retransmit is next: mark it; the second is next: unmark. */
static __always_inline void yattl(struct bpf_sock_ops* s) {
    struct policy_peer peer;
    struct policy_network net;
    struct policy_rule* r = policy_decide(s, &peer, &net);
    if (!r || !wants_yattl(r, &net))
        return;
    const int level = peer.sends_ipv4 ? SOL_IP : SOL_IPV6;
    const int opt = peer.sends_ipv4 ? IP_TOS : IPV6_TCLASS;
    int tos = 0;
    if (bpf_getsockopt(s, level, opt, &tos, sizeof(tos)) != 0)
        return;
    const int dscp = (tos >> 2) & 0x3f;
    if (s->args[0] == 0) {
        if ((dscp & 7) != 0 || (dscp >> 3) > 5)
            return; /* only class selectors CS0..CS5 */
        set_int(s, level, opt, tos | YATTL_BIT);
        /* The kernel rethinks the hash after this callback: keep the first SYN's label. */
        set_int(s, SOL_SOCKET, SO_TXREHASH, 0);
        count(TCP_RTO_STAT_YATTL);
    } else if (s->args[0] == 1 && (dscp & 7) == 1) {
        set_int(s, level, opt, tos & ~YATTL_BIT);
        if (!fixed_label(r, &net))
            set_int(s, SOL_SOCKET, SO_TXREHASH, 1);
    }
}

SEC("sockops")
int tcp_rto(struct bpf_sock_ops* s) {
    struct policy_peer peer;
    struct policy_network net;
    struct policy_rule* r;

    switch (s->op) {
        case BPF_SOCK_OPS_TIMEOUT_INIT:
            r = policy_decide(s, &peer, &net);
            if (r && r->rto_init_ms) {
                __u64 jiffies = (__u64)r->rto_init_ms * CONFIG_HZ / 1000;
                s->reply = jiffies ? jiffies : 1;
            }
            break;
        case BPF_SOCK_OPS_TCP_CONNECT_CB:
            r = policy_decide(s, &peer, &net);
            if (!r)
                break;
            if (r->rto_init_ms)
                count(TCP_RTO_STAT_RTO_INIT);
            if (!peer.sends_ipv4 && set_int(s, SOL_IPV6, IPV6_AUTOFLOWLABEL, 1) != 0)
                count(TCP_RTO_STAT_LABEL_FAILED);
            if (fixed_label(r, &net) && set_int(s, SOL_SOCKET, SO_TXREHASH, 0) != 0)
                count(TCP_RTO_STAT_LABEL_FAILED);
            if (wants_yattl(r, &net))
                /* The helper replaces the flags: keep the ones already set. */
                bpf_sock_ops_cb_flags_set(s, s->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTO_CB_FLAG);
            break;
        case BPF_SOCK_OPS_RTO_CB:
            if (s->state == BPF_TCP_SYN_SENT)
                yattl(s);
            break;
        case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
        case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
            if (s->bpf_sock_ops_cb_flags & BPF_SOCK_OPS_RTO_CB_FLAG)
                /* YaTTL is for SYNs: no per-RTO callback once established. */
                bpf_sock_ops_cb_flags_set(s, s->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTO_CB_FLAG);
            r = policy_decide(s, &peer, &net);
            if (!r)
                break;
            if (r->rto_min_us && set_int(s, SOL_TCP, TCP_BPF_RTO_MIN, r->rto_min_us) != 0)
                count(TCP_RTO_STAT_RTO_MIN_FAILED);
            if (r->cc[0]) {
                char cc[16];
                __builtin_memcpy(cc, r->cc, sizeof(cc));
                cc[15] = 0;
                if (bpf_setsockopt(s, SOL_TCP, TCP_CONGESTION, cc, sizeof(cc)) != 0)
                    count(TCP_RTO_STAT_CC_FAILED);
            }
            if (s->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && fixed_label(r, &net) &&
                set_int(s, SOL_SOCKET, SO_TXREHASH, 0) != 0)
                count(TCP_RTO_STAT_LABEL_FAILED);
            break;
    }
    return 1;
}
