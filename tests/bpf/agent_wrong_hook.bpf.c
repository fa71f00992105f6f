/* A stand-in for the agent's tclass_lock object that loads but cannot attach where tclass_lock
 * goes (a cgroup_skb program for the setsockopt hook): the programs the agent attached before
 * it must be rolled back. */
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

volatile const __u32 lock_ip_tos = 0;

SEC("cgroup_skb/egress")
int tclass_lock(struct __sk_buff* skb) {
    return 1 + lock_ip_tos * 0;
}
