/* tcp_rto (sock_ops): per destination (policy.h), the initial RTO, the minimum RTO and the
 * congestion control once established, the IPv6 flow-label mode, and YaTTL: on the first SYN
 * retransmit (the second SYN on the wire) the class selector goes up by one (CS0..CS5) with
 * the first SYN's flow label; the next retransmit puts both back, and so does the connection
 * being established by the marked SYN (its data carries the first SYN's class and, in rehash
 * mode, a new label on each RTO). The per-RTO callback YaTTL needs is cleared once established.
 *
 * Flow label "fixed": SO_TXREHASH 0 at TCP_CONNECT_CB (active side: SYN retransmits, data and
 * data retransmits keep one label) and at PASSIVE_ESTABLISHED_CB (passive side: data and data
 * retransmits, which start with the last SYN-ACK's label). Limit on 6.18: SYN-ACK retransmits
 * cannot be fixed per peer. tcp_rtx_synack() rehashes them by the listener's SO_TXREHASH, and no
 * callback where the peer is known can change it: the request socket's callbacks (TIMEOUT_INIT,
 * RWND_INIT, NEEDS_ECN) get -EINVAL from bpf_setsockopt, and none runs per SYN-ACK retransmit.
 * TCP_LISTEN_CB could set it, but a listener has no peer: it would fix the SYN-ACK labels of
 * every peer, rehash ones included. That is left to the application's SO_TXREHASH on its
 * listener (or net.core.txrehash).
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

/* YaTTL. mark: the first SYN retransmit is next; raise the class selector by one and keep the
 * first SYN's label. !mark: the second SYN retransmit is next, or the connection was
 * established by the marked SYN; put both back. A class ending in 1 (CS0+1..CS5+1) is taken
 * as the mark: the rule asks for YaTTL, and YaTTL owns those values. */
static __always_inline void yattl(struct bpf_sock_ops* s, const struct policy_peer* peer,
                                  const struct policy_rule* r, const struct policy_network* net,
                                  int mark) {
    const int level = peer->sends_ipv4 ? SOL_IP : SOL_IPV6;
    const int opt = peer->sends_ipv4 ? IP_TOS : IPV6_TCLASS;
    int tos = 0;
    if (bpf_getsockopt(s, level, opt, &tos, sizeof(tos)) != 0)
        return;
    const int dscp = (tos >> 2) & 0x3f;
    if (mark) {
        if ((dscp & 7) != 0 || (dscp >> 3) > 5)
            return; /* only class selectors CS0..CS5 */
        set_int(s, level, opt, tos | YATTL_BIT);
        /* The kernel rethinks the hash after this callback: keep the first SYN's label. */
        set_int(s, SOL_SOCKET, SO_TXREHASH, 0);
        count(TCP_RTO_STAT_YATTL);
    } else if ((dscp & 7) == 1) {
        set_int(s, level, opt, tos & ~YATTL_BIT);
        if (!fixed_label(r, net))
            set_int(s, SOL_SOCKET, SO_TXREHASH, -1); /* the host's default (net.core.txrehash) */
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
            /* args[0]: SYN retransmits so far. */
            if (s->state != BPF_TCP_SYN_SENT || s->args[0] > 1)
                break;
            r = policy_decide(s, &peer, &net);
            if (r && wants_yattl(r, &net))
                yattl(s, &peer, r, &net, s->args[0] == 0);
            break;
        case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
        case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
            if (s->bpf_sock_ops_cb_flags & BPF_SOCK_OPS_RTO_CB_FLAG)
                /* YaTTL is for SYNs: no per-RTO callback once established. */
                bpf_sock_ops_cb_flags_set(s, s->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTO_CB_FLAG);
            r = policy_decide(s, &peer, &net);
            if (!r)
                break;
            /* Established by the marked SYN (the only retransmit): the data must not keep the
             * mark, nor the first SYN's label in rehash mode. */
            if (s->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && s->total_retrans == 1 &&
                wants_yattl(r, &net))
                yattl(s, &peer, r, &net, 0);
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
