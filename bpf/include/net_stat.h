/* net_stat's interface with user space: the maps' keys and values, shared by the BPF programs
 * (net_stat_tx, net_stat_rx, net_stat_dc_tx, net_stat_dc_rx) and the agent. Plain C. */
#ifndef EBPF_AGENT_NET_STAT_H
#define EBPF_AGENT_NET_STAT_H

#include <linux/types.h>

/* Map names (at most 15 characters: the kernel keeps no more), as the agent and the tests
 * look them up.
 *
 * NET_STAT_MAP_CGROUP: BPF_MAP_TYPE_PERCPU_HASH, struct net_stat_key ->
 *   struct net_stat_counters. Traffic of each cgroup (the cgroup of the socket, never the
 *   current task's), both directions in one entry: net_stat_tx adds to tx_*, net_stat_rx to
 *   rx_*. Sum the per-CPU values.
 * NET_STAT_MAP_DC: BPF_MAP_TYPE_PERCPU_HASH, struct net_stat_dc_key -> struct net_stat_counters.
 *   The same broken down by the peer's (datacenter, network type), found from the packet's
 *   address (egress: destination, ingress: source); net_stat_dc_tx adds to tx_*,
 *   net_stat_dc_rx to rx_*. A peer in no known network is counted under dc 0, net type 0.
 *   One entry for both directions (not a map per direction) halves the entries a reader
 *   walks: a batch read of a per-CPU hash costs the kernel some 400 ns per entry, little of it
 *   in copying the value (it locks and copies out each bucket on its own). Measured with
 *   bench/agent_bench.cpp, 10,000 cgroups x 8 dcs on 2 CPUs: 50-56 ms to read a map per
 *   direction (2 x 80,000 + 2 x 10,000 entries, on two threads), 37-41 ms to read these two
 *   maps (80,000 + 10,000 entries, on one). The programs' cost did not change: +42..44 ns
 *   (net_stat_tx) and +68..71 ns (net_stat_dc_tx) over an empty program, as before.
 * NET_STAT_MAP_DC_1: the second half of NET_STAT_MAP_DC, the same layout. Each dc key lives in
 *   one of the two, by net_stat_dc_shard(): a reader reads the halves at once on two threads
 *   (the kernel's walk of a hash is memory-bound, some 350 ns an entry here, and at 80,000
 *   entries it was most of a scrape: bench/agent_bench.cpp read_maps 29 ms in one map).
 * NET_STAT_MAP_NETWORKS: BPF_MAP_TYPE_HASH, struct net_stat_prefix -> struct net_stat_network.
 *   The operators' networks, each stored with the address bits past its prefix length cleared;
 *   IPv4 prefixes are stored v4-mapped (::ffff:a.b.c.d) with 96 added to the prefix length
 *   (the layout of ebpf::lpm_key, whose masked() gives the key).
 * NET_STAT_MAP_NETWORK_LENS: BPF_MAP_TYPE_ARRAY, one struct net_stat_prefix_lens at index 0:
 *   the prefix lengths in use, longest first, one list for IPv6 packets and one for IPv4
 *   packets (v4-mapped lengths, 96..128, plus any shorter length whose prefix covers
 *   ::ffff:0:0/96). A packet's peer is looked up at each length of its list in turn, the
 *   address masked to it; the first hit is the longest matching prefix. Measured with
 *   bench/net_stat_bench.cpp (a few hundred prefixes, /32../64 and IPv4), over an empty
 *   program: an LPM trie with the address read by bpf_skb_load_bytes +119 ns; this layout
 *   +100 ns with the same read and +82 ns with direct packet access, for a peer in a
 *   longest-length network (one probe); +149 ns for a peer in no network (a probe per length
 *   in use: markers for a binary search over the lengths would cut that).
 *   Update order keeps lookups consistent: add a network before its length, and remove a
 *   length before its last network. The dc programs remember the network of recent peers (an
 *   LRU hash keyed by the address, peer_cache): changing the networks of a loaded collection
 *   leaves cached peers on their old answer, so the agent loads a new collection with the new
 *   table (and the same counter maps) instead.
 * NET_STAT_MAP_ERRORS: BPF_MAP_TYPE_PERCPU_ARRAY, __u32 index (enum net_stat_error: one per
 *   counter map and direction) -> struct net_stat_value. Traffic that could not be counted
 *   because a counter map was full: never lost silently.
 *
 * The counter maps are sized by user space before load (the object's max_entries is a
 * placeholder); when one is full, a new key's traffic goes to the errors map. The agent removes
 * the keys of cgroups that no longer exist. */
#define NET_STAT_MAP_CGROUP "stat_cgroup"
#define NET_STAT_MAP_DC "stat_dc"
#define NET_STAT_MAP_DC_1 "stat_dc_1"
#define NET_STAT_MAP_NETWORKS "networks"
#define NET_STAT_MAP_NETWORK_LENS "network_lens"
#define NET_STAT_MAP_ERRORS "stat_errors"

struct net_stat_key {
    __u64 cgroup_id; /* bpf_skb_cgroup_id(): the socket's cgroup (its cgroupfs inode) */
};

struct net_stat_dc_key {
    __u64 cgroup_id;
    __u32 dc;       /* the peer's datacenter; 0: unknown */
    __u32 net_type; /* the peer's network type (backbone, fastbone...); 0: unknown */
};

/* Bytes are the IP length (skb->len: network header onwards, one header per GSO skb); packets
 * are wire segments (max(1, gso_segs) per skb). */
struct net_stat_counters {
    __u64 rx_bytes; /* ingress: added by net_stat_rx / net_stat_dc_rx */
    __u64 rx_packets;
    __u64 tx_bytes; /* egress: added by net_stat_tx / net_stat_dc_tx */
    __u64 tx_packets;
};

/* One direction's bytes and packets: the errors map's value. */
struct net_stat_value {
    __u64 bytes;
    __u64 packets;
};

struct net_stat_prefix {
    __u32 prefixlen; /* 0..128; an IPv4 /n is 96 + n */
    __u8 addr[16];   /* network byte order; IPv4 as ::ffff:a.b.c.d */
};

struct net_stat_network {
    __u32 dc;
    __u32 net_type;
};

#define NET_STAT_MAX_LENS 16

struct net_stat_prefix_lens {
    __u32 v6_count;             /* entries used in v6 */
    __u32 v4_count;             /* entries used in v4 */
    __u8 v6[NET_STAT_MAX_LENS]; /* prefix lengths 0..128, longest first */
    __u8 v4[NET_STAT_MAX_LENS]; /* the same, for IPv4 peers (as v4-mapped) */
};

/* Which dc map holds `k`: 0 for NET_STAT_MAP_DC, 1 for NET_STAT_MAP_DC_1. The top bit of a
 * multiplicative hash of the whole key: each half gets about half the keys however the kernel
 * spaces cgroup ids, and one cgroup's keys spread over both. */
static inline int net_stat_dc_shard(const struct net_stat_dc_key* k) {
    __u64 h = (k->cgroup_id ^ ((__u64)k->dc << 32) ^ (__u64)k->net_type) * 0x9E3779B97F4A7C15ULL;
    return (int)(h >> 63);
}

enum net_stat_error {
    NET_STAT_ERR_CGROUP_TX_FULL = 0, /* NET_STAT_MAP_CGROUP was full for net_stat_tx */
    NET_STAT_ERR_CGROUP_RX_FULL = 1, /* ... for net_stat_rx */
    NET_STAT_ERR_DC_TX_FULL = 2,     /* a dc map was full for net_stat_dc_tx */
    NET_STAT_ERR_DC_RX_FULL = 3,     /* ... for net_stat_dc_rx */
    NET_STAT_ERR_MAX = 4,
};

#ifdef __cplusplus
static_assert(sizeof(struct net_stat_key) == 8, "net_stat_key");
static_assert(sizeof(struct net_stat_dc_key) == 16, "net_stat_dc_key");
static_assert(sizeof(struct net_stat_counters) == 32, "net_stat_counters");
static_assert(sizeof(struct net_stat_value) == 16, "net_stat_value");
static_assert(sizeof(struct net_stat_prefix) == 20, "net_stat_prefix");
static_assert(sizeof(struct net_stat_network) == 8, "net_stat_network");
static_assert(sizeof(struct net_stat_prefix_lens) == 40, "net_stat_prefix_lens");
#else
_Static_assert(sizeof(struct net_stat_key) == 8, "net_stat_key");
_Static_assert(sizeof(struct net_stat_dc_key) == 16, "net_stat_dc_key");
_Static_assert(sizeof(struct net_stat_counters) == 32, "net_stat_counters");
_Static_assert(sizeof(struct net_stat_value) == 16, "net_stat_value");
_Static_assert(sizeof(struct net_stat_prefix) == 20, "net_stat_prefix");
_Static_assert(sizeof(struct net_stat_network) == 8, "net_stat_network");
_Static_assert(sizeof(struct net_stat_prefix_lens) == 40, "net_stat_prefix_lens");
#endif

#endif
