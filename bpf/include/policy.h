/* The per-destination policy the sock_ops programs (tcp_tos, tcp_rto) carry out, as map
 * contents the agent writes: which network a peer is in, which project sets its address's
 * project id belongs to, and ordered rules from those facts to settings. Plain C, shared by the
 * BPF programs and the C++ agent and tests. */
#ifndef EBPF_AGENT_POLICY_H
#define EBPF_AGENT_POLICY_H

#include <linux/types.h>

/* networks (LPM_TRIE, BPF_F_NO_PREALLOC): prefix -> network. IPv4 is stored v4-mapped
 * (::ffff:a.b.c.d, prefixlen + 96), so one lookup serves IPv4, IPv6 and v4-mapped peers.
 * Exclusion and stateful-service prefixes are entries of their own, more specific than the
 * network they lie in, carrying that network's dc and type plus their flag. */
struct policy_key {
    __u32 prefixlen;
    __u8 addr[16];
};

#define POLICY_NET_NO_YATTL 0x1        /* exclusion prefix: YaTTL off */
#define POLICY_NET_FIXED_FLOWLABEL 0x2 /* stateful service (IPVS, NAT64, TUN64): fixed label */

struct policy_network {
    __u32 dc;       /* datacenter id, 1.. (0: unknown) */
    __u32 net_type; /* network type id, 1.. (e.g. backbone, fastbone) */
    __u32 flags;    /* POLICY_NET_* */
};

/* project_sets (HASH): project id (bits 64..95 of an IPv6 address, host order) -> bitmask of
 * the named sets it is in (bit n = set n). */

/* rules (ARRAY of POLICY_MAX_RULES): tried in order; the first that matches decides. */
#define POLICY_MAX_RULES 64

#define POLICY_SCOPE_ANY 0
#define POLICY_SCOPE_SAME_DC 1
#define POLICY_SCOPE_CROSS_DC 2

#define POLICY_SET_NONE 0   /* no project-set condition */
#define POLICY_SET_REMOTE 1 /* the remote address's project is in set `set_id` */
#define POLICY_SET_LOCAL 2  /* the local address's project is in set `set_id` */

#define POLICY_DSCP_UNSET 0xff
#define POLICY_FLOWLABEL_KERNEL 0 /* leave the kernel's behaviour */
#define POLICY_FLOWLABEL_REHASH 1 /* a new label on every RTO (the kernel's default) */
#define POLICY_FLOWLABEL_FIXED 2  /* one label for the whole connection */

struct policy_rule {
    /* match */
    __u32 net_type; /* 0: any network type (known or not) */
    __u8 scope;     /* POLICY_SCOPE_* */
    __u8 set_side;  /* POLICY_SET_* */
    __u8 set_id;    /* 0..31 */
    __u8 pad0;
    /* settings */
    __u32 rto_init_ms; /* 0: the kernel's default */
    __u32 rto_min_us;  /* 0: unset */
    char cc[16];       /* congestion control; "" = unset */
    __u8 dscp;         /* 0..63, or POLICY_DSCP_UNSET */
    __u8 ecn_syn;      /* 1: ECN on the SYN */
    __u8 flowlabel;    /* POLICY_FLOWLABEL_* */
    __u8 yattl;        /* 1: YaTTL on the first SYN retransmit */
};

/* config (ARRAY of 1). */
struct policy_config {
    __u32 local_dc;   /* the host's datacenter */
    __u32 rule_count; /* rules[0 .. rule_count) are in use */
    __u8 listen_dscp; /* class for listeners (SYN-ACKs), or POLICY_DSCP_UNSET */
    __u8 pad0[3];
};

/* decisions (LRU_HASH, policy.bpf.h): the programs remember the rule that decided for a peer
 * (its address and the local address's project id) and the peer's network. Filled by the
 * programs alone, after the tables: user space fills the tables before it attaches, and a
 * table change means a new collection (the agent's reload), whose decisions start empty. Shared
 * by the programs that share the tables. */

#endif
