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
#define EEXIST 17

/* max_entries of the counter maps are placeholders: the agent sizes them from its config.
 * Not preallocated: a preallocated per-CPU hash costs max_entries x possible CPUs of memory at
 * once and most of the agent's start-up time (29 ms of 62 measured). Each entry holds both
 * directions: a reader walks half as many entries as with a map per direction (net_stat.h). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct net_stat_key);
    __type(value, struct net_stat_counters);
} stat_cgroup SEC(".maps");

/* The dc keys, in two halves (net_stat_dc_shard()) that a reader reads at once. */
struct dc_counter_map {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct net_stat_dc_key);
    __type(value, struct net_stat_counters);
};
struct dc_counter_map stat_dc SEC(".maps");
struct dc_counter_map stat_dc_1 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct net_stat_prefix);
    __type(value, struct net_stat_network);
} networks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct net_stat_prefix_lens);
} network_lens SEC(".maps");

/* The network of each recently seen peer (none: dc 0): most packets skip the prefix probes. An
 * LRU keyed by the address, not socket storage: a storage's allocation and free on every new
 * socket cost more than the probes they save (e2e_bench: a new connection 2.3 us dearer with
 * an SK_STORAGE cache). A host talking to more peers than it holds evicts the least recently
 * seen, which then costs the probes again. A reload loads a new map, so no entry outlives the
 * networks it came from. */
struct peer_addr {
    __u64 hi, lo; /* network order; IPv4 v4-mapped */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct peer_addr);
    __type(value, struct net_stat_network);
} peer_cache SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, NET_STAT_ERR_MAX);
    __type(key, __u32);
    __type(value, struct net_stat_value);
} stat_errors SEC(".maps");

/* Atomic adds although the values are per CPU: on one CPU a softirq can interrupt a program
 * that is between its read and its write of the same counter (an egress program interrupted by
 * an ingress one shares the entry, not the fields). */
static __always_inline void add_to(__u64* bytes_field, __u64* packets_field, __u64 bytes,
                                   __u64 packets) {
    __sync_fetch_and_add(bytes_field, bytes);
    __sync_fetch_and_add(packets_field, packets);
}

static __always_inline void add_dir(struct net_stat_counters* c, int egress, __u64 bytes,
                                    __u64 packets) {
    if (egress)
        add_to(&c->tx_bytes, &c->tx_packets, bytes, packets);
    else
        add_to(&c->rx_bytes, &c->rx_packets, bytes, packets);
}

/* Adds to the tx (egress) or rx counters of `key`, creating it; traffic a full map cannot take
 * goes to the errors map under `err`. */
static __always_inline void count(void* map, const void* key, int egress, __u32 err, __u64 bytes,
                                  __u64 packets) {
    struct net_stat_counters* c = bpf_map_lookup_elem(map, key);
    if (c) {
        add_dir(c, egress, bytes, packets);
        return;
    }
    /* From a program, an update writes this CPU's value and zeroes the other CPUs'. */
    struct net_stat_counters first = {};
    if (egress) {
        first.tx_bytes = bytes;
        first.tx_packets = packets;
    } else {
        first.rx_bytes = bytes;
        first.rx_packets = packets;
    }
    long r = bpf_map_update_elem(map, key, &first, BPF_NOEXIST);
    if (r == 0) {
        return;
    }
    if (r == -EEXIST) {
        /* Another CPU (or the other direction) created it meanwhile. */
        c = bpf_map_lookup_elem(map, key);
        if (c) {
            add_dir(c, egress, bytes, packets);
            return;
        }
    }
    /* -E2BIG: the map is full (or -ENOMEM). */
    struct net_stat_value* v = bpf_map_lookup_elem(&stat_errors, &err);
    if (v) {
        add_to(&v->bytes, &v->packets, bytes, packets);
    }
}

static __always_inline __u64 wire_packets(const struct __sk_buff* skb) {
    __u32 segs = skb->gso_segs;
    return segs ? segs : 1;
}

static __always_inline int count_cgroup(struct __sk_buff* skb, int egress, __u32 err) {
    struct net_stat_key key = {.cgroup_id = bpf_skb_cgroup_id(skb)};
    count(&stat_cgroup, &key, egress, err, skb->len, wire_packets(skb));
    return 1;
}

/* Offsets of the addresses in the IP headers (the data starts at the network header). */
#define IPV6_SADDR 8
#define IPV6_DADDR 24
#define IPV4_SADDR 12
#define IPV4_DADDR 16

/* The first `bits` bits set, as a 64-bit word read from network byte order (bits 0..64). */
static __always_inline __u64 mask64(__u32 bits) {
    if (bits >= 64) {
        return ~0ULL;
    }
    if (bits == 0) {
        return 0;
    }
    return __builtin_bswap64(~0ULL << (64 - bits));
}

/* The peer lookup's state, in the caller's frame: bpf_loop runs one probe per prefix length. */
struct peer_probe {
    __u64 hi, lo;                 /* the address, as read from the packet (network order) */
    __u8 lens[NET_STAT_MAX_LENS]; /* prefix lengths in use, longest first */
    __u32 count;
    __u32 dc, net_type; /* the result; 0 when no network holds the address */
};

/* Probes the networks at the i-th length: 1 stops the loop (a hit, or past the lengths). Run
 * by bpf_loop, so the verifier checks one probe instead of sixteen per address family. */
static long probe_length(__u32 i, struct peer_probe* p) {
    if (i >= p->count || i >= NET_STAT_MAX_LENS)
        return 1;
    __u32 len = p->lens[i];
    struct net_stat_prefix k = {.prefixlen = len};
    __u64 h = p->hi & mask64(len);
    __u64 l = len > 64 ? p->lo & mask64(len - 64) : 0;
    __builtin_memcpy(&k.addr[0], &h, 8);
    __builtin_memcpy(&k.addr[8], &l, 8);
    struct net_stat_network* n = bpf_map_lookup_elem(&networks, &k);
    if (!n)
        return 0;
    p->dc = n->dc;
    p->net_type = n->net_type;
    return 1;
}

/* Finds the longest network that holds `addr` among the lengths `lens` (longest first). */
static __always_inline void longest_match(const __u8* addr, const __u8* lens, __u32 count,
                                          struct net_stat_dc_key* key) {
    struct peer_probe p = {.count = count};
    __builtin_memcpy(&p.hi, addr, 8);
    __builtin_memcpy(&p.lo, addr + 8, 8);
    __builtin_memcpy(p.lens, lens, NET_STAT_MAX_LENS);
    bpf_loop(NET_STAT_MAX_LENS, probe_length, &p, 0);
    key->dc = p.dc;
    key->net_type = p.net_type;
}

/* Copies `len` bytes at `off` from the packet: straight from the linear data when it holds
 * them (the IP header always is, in these hooks), else through the helper. */
static __always_inline int load(struct __sk_buff* skb, __u32 off, void* to, __u32 len) {
    void* data = (void*)(long)skb->data;
    void* end = (void*)(long)skb->data_end;
    if (len == 16 && data + off + 16 <= end) {
        __builtin_memcpy(to, data + off, 16);
        return 0;
    }
    if (len == 4 && data + off + 4 <= end) {
        __builtin_memcpy(to, data + off, 4);
        return 0;
    }
    return bpf_skb_load_bytes(skb, off, to, len);
}

/* Fills key->dc and key->net_type from the peer's address; both stay 0 when the header cannot
 * be read or no network holds the address. */
static __always_inline void find_peer(struct __sk_buff* skb, int egress,
                                      struct net_stat_dc_key* key) {
    __u8 addr[16] = {};
    int v6;
    if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (load(skb, egress ? IPV6_DADDR : IPV6_SADDR, addr, 16) < 0)
            return;
        v6 = 1;
    } else if (skb->protocol == bpf_htons(ETH_P_IP)) {
        addr[10] = 0xff;
        addr[11] = 0xff;
        if (load(skb, egress ? IPV4_DADDR : IPV4_SADDR, &addr[12], 4) < 0)
            return;
        v6 = 0;
    } else {
        return;
    }
    struct peer_addr peer;
    __builtin_memcpy(&peer.hi, addr, 8);
    __builtin_memcpy(&peer.lo, addr + 8, 8);
    struct net_stat_network* cached = bpf_map_lookup_elem(&peer_cache, &peer);
    if (cached) {
        key->dc = cached->dc;
        key->net_type = cached->net_type;
        return;
    }
    __u32 zero = 0;
    struct net_stat_prefix_lens* lens = bpf_map_lookup_elem(&network_lens, &zero);
    if (!lens)
        return;
    if (v6) {
        if (lens->v6_count)
            longest_match(addr, lens->v6, lens->v6_count, key);
    } else if (lens->v4_count) {
        longest_match(addr, lens->v4, lens->v4_count, key);
    }
    struct net_stat_network found = {.dc = key->dc, .net_type = key->net_type};
    bpf_map_update_elem(&peer_cache, &peer, &found, BPF_ANY);
}

static __always_inline int count_dc(struct __sk_buff* skb, int egress, __u32 err) {
    struct net_stat_dc_key key = {.cgroup_id = bpf_skb_cgroup_id(skb)};
    find_peer(skb, egress, &key);
    /* Two call sites, one map each: the verifier inlines a lookup only where its map is known. */
    if (net_stat_dc_shard(&key))
        count(&stat_dc_1, &key, egress, err, skb->len, wire_packets(skb));
    else
        count(&stat_dc, &key, egress, err, skb->len, wire_packets(skb));
    return 1;
}

SEC("cgroup_skb/egress")
int net_stat_tx(struct __sk_buff* skb) {
    return count_cgroup(skb, 1, NET_STAT_ERR_CGROUP_TX_FULL);
}

SEC("cgroup_skb/ingress")
int net_stat_rx(struct __sk_buff* skb) {
    return count_cgroup(skb, 0, NET_STAT_ERR_CGROUP_RX_FULL);
}

SEC("cgroup_skb/egress")
int net_stat_dc_tx(struct __sk_buff* skb) {
    return count_dc(skb, 1, NET_STAT_ERR_DC_TX_FULL);
}

SEC("cgroup_skb/ingress")
int net_stat_dc_rx(struct __sk_buff* skb) {
    return count_dc(skb, 0, NET_STAT_ERR_DC_RX_FULL);
}
