/* The policy lookup of the sock_ops programs: maps (see policy.h) and the decision for a socket's
 * peer. Each program's object has its own copy of these maps; the agent fills each. */
#ifndef EBPF_AGENT_POLICY_BPF_H
#define EBPF_AGENT_POLICY_BPF_H

#include "ebpf_bpf.h"
#include "policy.h"

#define AF_INET 2
#define AF_INET6 10

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __type(key, struct policy_key);
    __type(value, struct policy_network);
    __uint(max_entries, 16384);
    __uint(map_flags, BPF_F_NO_PREALLOC);
} networks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u32);
    __type(value, __u32);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
} project_sets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct policy_rule);
    __uint(max_entries, POLICY_MAX_RULES);
} rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct policy_config);
    __uint(max_entries, 1);
} config SEC(".maps");

/* Decisions already made, by peer (decisions in policy.h): most callbacks skip the
 * lookups and the rule loop. An LRU: a host with more peers than it holds decides again for the
 * least recently seen. Filled by the programs only; a reload loads new maps, so no entry
 * outlives the tables it was decided from. */
struct policy_decision_key {
    __u8 remote[16]; /* the peer's address (IPv4 v4-mapped) */
    __u32 local_project;
};

struct policy_decision {
    __s32 rule; /* the deciding rule's index, or -1 */
    struct policy_network net;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, struct policy_decision_key);
    __type(value, struct policy_decision);
    __uint(max_entries, 16384);
} decisions SEC(".maps");

/* The peer as the policy sees it. */
struct policy_peer {
    struct policy_key key; /* full-length: /128, IPv4 as v4-mapped */
    int sends_ipv4;        /* IPv4 on the wire: AF_INET, or a v4-mapped peer */
    __u32 remote_project;
    __u32 local_project;
};

static __always_inline void policy_peer_of(struct bpf_sock_ops* s, struct policy_peer* p) {
    __builtin_memset(p, 0, sizeof(*p));
    p->key.prefixlen = 128;
    __u32* w = (__u32*)p->key.addr;
    if (s->family == AF_INET) {
        w[2] = bpf_htonl(0xffff);
        w[3] = s->remote_ip4;
        p->sends_ipv4 = 1;
        return;
    }
    w[0] = s->remote_ip6[0];
    w[1] = s->remote_ip6[1];
    w[2] = s->remote_ip6[2];
    w[3] = s->remote_ip6[3];
    p->sends_ipv4 = w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
    if (!p->sends_ipv4) {
        p->remote_project = bpf_ntohl(s->remote_ip6[2]);
        p->local_project = bpf_ntohl(s->local_ip6[2]);
    }
}

/* What the rule loop needs, copied from the caller (the callback sees it through its ctx). */
struct policy_match {
    __u32 net_type;
    __u32 dc;
    __u32 same_dc;
    __u32 remote_sets;
    __u32 local_sets;
    __u32 rule_count;
    __s32 found; /* the first matching rule, or -1 */
};

/* One rule of the loop: 1 stops it (a match, or past the rules in use), 0 goes on. Run by
 * bpf_loop, so the verifier checks it once instead of once per rule per call site. */
static long policy_match_rule(__u32 i, struct policy_match* m) {
    if (i >= m->rule_count)
        return 1;
    __u32 idx = i;
    struct policy_rule* r = bpf_map_lookup_elem(&rules, &idx);
    if (!r)
        return 1;
    if (r->net_type && r->net_type != m->net_type)
        return 0;
    if (r->scope == POLICY_SCOPE_SAME_DC && !m->same_dc)
        return 0;
    if (r->scope == POLICY_SCOPE_CROSS_DC && (m->same_dc || m->dc == 0))
        return 0;
    if (r->set_side == POLICY_SET_REMOTE && !(m->remote_sets & (1u << (r->set_id & 31))))
        return 0;
    if (r->set_side == POLICY_SET_LOCAL && !(m->local_sets & (1u << (r->set_id & 31))))
        return 0;
    m->found = (__s32)i;
    return 1;
}

/* The decision for the peer in `peer` under `cfg` (rules in use): the rule's index, or -1. */
static __always_inline int policy_lookup(const struct policy_config* cfg, struct policy_peer* peer,
                                         struct policy_network* net) {
    struct policy_network* found = bpf_map_lookup_elem(&networks, &peer->key);
    if (found)
        *net = *found;
    struct policy_match m = {
        .net_type = net->net_type,
        .dc = net->dc,
        .same_dc = net->dc != 0 && net->dc == cfg->local_dc,
        .rule_count = cfg->rule_count,
        .found = -1,
    };
    __u32* sets = bpf_map_lookup_elem(&project_sets, &peer->remote_project);
    if (sets && peer->remote_project)
        m.remote_sets = *sets;
    sets = bpf_map_lookup_elem(&project_sets, &peer->local_project);
    if (sets && peer->local_project)
        m.local_sets = *sets;
    bpf_loop(POLICY_MAX_RULES, policy_match_rule, &m, 0);
    return m.found;
}

/* Fills `peer` and `net` (zeroes when the peer is in no network) and returns the index of the
 * rule that decides for this peer, or -1 when none matches. A global function: the verifier
 * checks it once per program, not once per call site.
 *
 * The answer is remembered by peer (decisions), not by socket: an SK_STORAGE cache was tried
 * and a new connection cost 1.1 us more in e2e_bench, the storage's allocation and free on
 * every socket outweighing the lookups it saved. Nothing is remembered while the tables are
 * empty (rule_count 0), so a cache cannot outlive their filling. */
__attribute__((noinline)) int policy_decide_index(struct bpf_sock_ops* s, struct policy_peer* peer,
                                                  struct policy_network* net) {
    if (!s || !peer || !net)
        return -1;
    policy_peer_of(s, peer);
    __builtin_memset(net, 0, sizeof(*net));
    struct policy_decision_key k;
    __builtin_memcpy(k.remote, peer->key.addr, 16);
    k.local_project = peer->local_project;
    struct policy_decision* d = bpf_map_lookup_elem(&decisions, &k);
    if (d) {
        *net = d->net;
        return d->rule;
    }
    __u32 zero = 0;
    struct policy_config* cfg = bpf_map_lookup_elem(&config, &zero);
    if (!cfg || cfg->rule_count == 0)
        return -1;
    struct policy_decision made = {.rule = policy_lookup(cfg, peer, net)};
    made.net = *net;
    bpf_map_update_elem(&decisions, &k, &made, BPF_ANY);
    return made.rule;
}

/* Returns the rule that decides for this peer, or 0 when none matches. `net` gets the network
 * (zeroes when the peer is in none). */
static __always_inline struct policy_rule* policy_decide(struct bpf_sock_ops* s,
                                                         struct policy_peer* peer,
                                                         struct policy_network* net) {
    __builtin_memset(peer, 0, sizeof(*peer));
    __builtin_memset(net, 0, sizeof(*net));
    int i = policy_decide_index(s, peer, net);
    if (i < 0)
        return 0;
    __u32 idx = (__u32)i;
    return bpf_map_lookup_elem(&rules, &idx);
}

#endif
