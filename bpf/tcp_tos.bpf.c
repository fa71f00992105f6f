/* tcp_tos (sock_ops): sets the DSCP of TCP connections by the peer's network, same or cross
 * datacenter, and the project sets of the addresses' project ids (policy.h).
 *
 * Active side: TCP_CONNECT_CB, before the SYN is built, so every packet carries the class.
 * Passive side: a listener default at TCP_LISTEN_CB colours SYN-ACKs (request sockets cannot
 * setsockopt), then PASSIVE_ESTABLISHED_CB sets the per-peer class on the accepted socket.
 * IPv4 and v4-mapped peers get IP_TOS (IPV6_TCLASS does not reach IPv4 packets). The kernel
 * keeps a stream socket's ECN bits. ECN on the SYN: the answer to BPF_SOCK_OPS_NEEDS_ECN. */
#include "ebpf_bpf.h"
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define SOL_IP 0
#define IP_TOS 1
#define SOL_IPV6 41
#define IPV6_TCLASS 67

static __always_inline void set_dscp(struct bpf_sock_ops* s, int ipv4, __u8 dscp) {
    int tos = dscp << 2;
    if (ipv4)
        bpf_setsockopt(s, SOL_IP, IP_TOS, &tos, sizeof(tos));
    else
        bpf_setsockopt(s, SOL_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
}

SEC("sockops")
int tcp_tos(struct bpf_sock_ops* s) {
    struct policy_peer peer;
    struct policy_network net;
    struct policy_rule* r;
    __u32 zero = 0;

    switch (s->op) {
        case BPF_SOCK_OPS_TCP_LISTEN_CB: {
            struct policy_config* cfg = bpf_map_lookup_elem(&config, &zero);
            if (cfg && cfg->listen_dscp != POLICY_DSCP_UNSET) {
                /* Listeners are not connected: colour both families where the socket allows. */
                set_dscp(s, s->family == AF_INET, cfg->listen_dscp);
                if (s->family == AF_INET6)
                    set_dscp(s, 1, cfg->listen_dscp);
            }
            break;
        }
        case BPF_SOCK_OPS_TCP_CONNECT_CB:
        case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
            r = policy_decide(s, &peer, &net);
            if (r && r->dscp != POLICY_DSCP_UNSET)
                set_dscp(s, peer.sends_ipv4, r->dscp);
            break;
        case BPF_SOCK_OPS_NEEDS_ECN:
            r = policy_decide(s, &peer, &net);
            if (r && r->ecn_syn)
                s->reply = 1;
            break;
    }
    return 1;
}
