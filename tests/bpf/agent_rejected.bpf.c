/* A stand-in for the agent's tcp_tos object whose program the verifier rejects (it reads a
 * map value without checking it for NULL): the agent must attach nothing and show the log. */
#include "ebpf_bpf.h"
#include "policy.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u32);
    __type(value, struct policy_config);
    __uint(max_entries, 1);
} lookups SEC(".maps");

SEC("sockops")
int tcp_tos(struct bpf_sock_ops* s) {
    __u32 zero = 0;
    struct policy_config* c = bpf_map_lookup_elem(&lookups, &zero);
    return c->rule_count; /* no NULL check */
}
