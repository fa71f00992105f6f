/* e2e_bench's floor: programs that do nothing, one for each hook the agent's programs use. Attached
 * in the agent's programs' places, they measure what the kernel's hooks cost by themselves (the
 * run of a program array, the context set-up, the indirect call), which no program body can go
 * below; the benchmark reports the agent's programs against them too. */
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("sockops")
int floor_sockops(struct bpf_sock_ops* s) {
    (void)s;
    return 1;
}

SEC("cgroup/setsockopt")
int floor_setsockopt(struct bpf_sockopt* ctx) {
    (void)ctx;
    return 1;
}

SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff* skb) {
    (void)skb;
    return 1;
}

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff* skb) {
    (void)skb;
    return 1;
}
