/* net_stat (cgroup_skb egress/ingress): bytes and packets per cgroup, and per cgroup and the
 * peer's (datacenter, network type). See net_stat.h for the maps.
 *
 * Every path returns 1: a cgroup_skb program that returns 0 drops the packet, and these run
 * for the whole host. Counters are keyed by bpf_skb_cgroup_id(), the cgroup of the socket: the
 * current task is unrelated in softirq (ACKs, retransmits, every ingress packet). Packets are
 * wire segments (a GSO skb stands for gso_segs of them); bytes are skb->len, the IP length with
 * one header per skb. The peer is taken from the packet's header, not from the socket: an
 * unconnected UDP socket has no remote address. */
#include "net_stat.h"
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define E2BIG 7
#define EEXIST 17

/* max_entries of the counter maps are placeholders: the agent sizes them from its config. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct net_stat_key);
    __type(value, struct net_stat_value);
} stat_tx SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct net_stat_key);
    __type(value, struct net_stat_value);
} stat_rx SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct net_stat_dc_key);
    __type(value, struct net_stat_value);
} stat_dc_tx SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct net_stat_dc_key);
    __type(value, struct net_stat_value);
} stat_dc_rx SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct net_stat_prefix);
    __type(value, struct net_stat_network);
} networks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, NET_STAT_ERR_MAX);
    __type(key, __u32);
    __type(value, struct net_stat_value);
} stat_errors SEC(".maps");

/* Atomic adds although the values are per CPU: on one CPU a softirq can interrupt a program
 * that is between its read and its write of the same counter. */
static __always_inline void add_to(struct net_stat_value* v, __u64 bytes, __u64 packets) {
    __sync_fetch_and_add(&v->bytes, bytes);
    __sync_fetch_and_add(&v->packets, packets);
}

/* Adds to the counter of `key`, creating it; traffic a full map cannot take goes to the errors
 * map under `err`. */
static __always_inline void count(void* map, const void* key, __u32 err, __u64 bytes,
                                  __u64 packets) {
    struct net_stat_value* v = bpf_map_lookup_elem(map, key);
    if (v) {
        add_to(v, bytes, packets);
        return;
    }
    struct net_stat_value first = {.bytes = bytes, .packets = packets};
    long r = bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
    if (r == 0) {
        return;
    }
    if (r == -EEXIST) {
        /* Another CPU created it meanwhile. */
        v = bpf_map_lookup_elem(map, key);
        if (v) {
            add_to(v, bytes, packets);
            return;
        }
    }
    /* -E2BIG: the map is full (or -ENOMEM). */
    v = bpf_map_lookup_elem(&stat_errors, &err);
    if (v) {
        add_to(v, bytes, packets);
    }
}

static __always_inline __u64 wire_packets(const struct __sk_buff* skb) {
    __u32 segs = skb->gso_segs;
    return segs ? segs : 1;
}

static __always_inline int count_cgroup(struct __sk_buff* skb, void* map, __u32 err) {
    struct net_stat_key key = {.cgroup_id = bpf_skb_cgroup_id(skb)};
    count(map, &key, err, skb->len, wire_packets(skb));
    return 1;
}

/* Offsets of the addresses in the IP headers (the data starts at the network header). */
#define IPV6_SADDR 8
#define IPV6_DADDR 24
#define IPV4_SADDR 12
#define IPV4_DADDR 16

/* Fills key->dc and key->net_type from the peer's address; both stay 0 when the header cannot
 * be read or no network holds the address. */
static __always_inline void find_peer(struct __sk_buff* skb, int egress,
                                      struct net_stat_dc_key* key) {
    struct net_stat_prefix p = {.prefixlen = 128};
    if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (bpf_skb_load_bytes(skb, egress ? IPV6_DADDR : IPV6_SADDR, p.addr, 16) < 0) {
            return;
        }
    } else if (skb->protocol == bpf_htons(ETH_P_IP)) {
        p.addr[10] = 0xff;
        p.addr[11] = 0xff;
        if (bpf_skb_load_bytes(skb, egress ? IPV4_DADDR : IPV4_SADDR, &p.addr[12], 4) < 0) {
            return;
        }
    } else {
        return;
    }
    struct net_stat_network* n = bpf_map_lookup_elem(&networks, &p);
    if (n) {
        key->dc = n->dc;
        key->net_type = n->net_type;
    }
}

static __always_inline int count_dc(struct __sk_buff* skb, int egress, void* map, __u32 err) {
    struct net_stat_dc_key key = {.cgroup_id = bpf_skb_cgroup_id(skb)};
    find_peer(skb, egress, &key);
    count(map, &key, err, skb->len, wire_packets(skb));
    return 1;
}

SEC("cgroup_skb/egress")
int net_stat_tx(struct __sk_buff* skb) {
    return count_cgroup(skb, &stat_tx, NET_STAT_ERR_TX_FULL);
}

SEC("cgroup_skb/ingress")
int net_stat_rx(struct __sk_buff* skb) {
    return count_cgroup(skb, &stat_rx, NET_STAT_ERR_RX_FULL);
}

SEC("cgroup_skb/egress")
int net_stat_dc_tx(struct __sk_buff* skb) {
    return count_dc(skb, 1, &stat_dc_tx, NET_STAT_ERR_DC_TX_FULL);
}

SEC("cgroup_skb/ingress")
int net_stat_dc_rx(struct __sk_buff* skb) {
    return count_dc(skb, 0, &stat_dc_rx, NET_STAT_ERR_DC_RX_FULL);
}
