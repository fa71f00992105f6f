/* A benchmark object for the loaders: six tracing programs that read kernel structures through
 * CO-RE relocations (resolved against the running kernel's BTF at load), and a few maps. */
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct sock_common {
    unsigned short skc_family;
    __u32 skc_daddr;
    __u32 skc_rcv_saddr;
    __u16 skc_dport;
    __u16 skc_num;
} __core;

struct sock {
    struct sock_common __sk_common;
    int sk_rcvbuf;
    int sk_sndbuf;
    __u32 sk_mark;
    __u32 sk_priority;
} __core;

struct tcp_sock {
    __u32 srtt_us;
    __u32 snd_cwnd;
    __u32 total_retrans;
    __u32 rcv_nxt;
    __u32 snd_nxt;
} __core;

struct task_struct {
    int pid;
    int tgid;
    struct task_struct* real_parent;
} __core;

struct pt_regs {
    unsigned long di;
    unsigned long si;
} __core;

struct event {
    __u64 a, b, c, d;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u32);
    __type(value, struct event);
    __uint(max_entries, 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 8);
} counts SEC(".maps");

#define READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

static __always_inline void store(__u32 key, struct event* e) {
    bpf_map_update_elem(&events, &key, e, BPF_ANY);
    __u64* n = bpf_map_lookup_elem(&counts, &key);
    if (n)
        *n += 1;
}

SEC("kprobe/tcp_connect")
int sock_addrs(struct pt_regs* ctx) {
    struct sock* sk = (struct sock*)ctx->di;
    struct event e = {};
    READ(e.a, sk->__sk_common.skc_daddr);
    READ(e.b, sk->__sk_common.skc_rcv_saddr);
    READ(e.c, sk->__sk_common.skc_dport);
    READ(e.d, sk->__sk_common.skc_num);
    store(0, &e);
    return 0;
}

SEC("kprobe/tcp_rcv_established")
int sock_buffers(struct pt_regs* ctx) {
    struct sock* sk = (struct sock*)ctx->di;
    struct event e = {};
    READ(e.a, sk->sk_rcvbuf);
    READ(e.b, sk->sk_sndbuf);
    READ(e.c, sk->sk_mark);
    READ(e.d, sk->sk_priority);
    store(1, &e);
    return 0;
}

SEC("kprobe/tcp_retransmit_skb")
int tcp_state(struct pt_regs* ctx) {
    struct tcp_sock* tp = (struct tcp_sock*)ctx->di;
    struct event e = {};
    READ(e.a, tp->srtt_us);
    READ(e.b, tp->snd_cwnd);
    READ(e.c, tp->total_retrans);
    READ(e.d, tp->rcv_nxt);
    store(2, &e);
    return 0;
}

SEC("kprobe/tcp_sendmsg")
int tcp_seq(struct pt_regs* ctx) {
    struct tcp_sock* tp = (struct tcp_sock*)ctx->di;
    struct event e = {};
    READ(e.a, tp->snd_nxt);
    READ(e.b, tp->rcv_nxt);
    e.c = bpf_core_field_offset(tp->snd_nxt);
    e.d = bpf_core_type_size(struct tcp_sock);
    store(3, &e);
    return 0;
}

SEC("kprobe/do_exit")
int task_ids(struct pt_regs* ctx) {
    struct task_struct* t = (struct task_struct*)ctx->di;
    struct task_struct* parent = 0;
    struct event e = {};
    READ(e.a, t->pid);
    READ(e.b, t->tgid);
    READ(parent, t->real_parent);
    if (parent)
        READ(e.c, parent->pid);
    e.d = bpf_core_field_exists(t->real_parent);
    store(4, &e);
    return 0;
}

SEC("kprobe/tcp_close")
int sock_family(struct pt_regs* ctx) {
    struct sock* sk = (struct sock*)ctx->si;
    struct event e = {};
    READ(e.a, sk->__sk_common.skc_family);
    e.b = bpf_core_field_size(sk->sk_rcvbuf);
    e.c = bpf_core_field_offset(sk->sk_mark);
    e.d = bpf_core_type_size(struct sock);
    store(5, &e);
    return 0;
}
