/* Test programs for the object loader: maps of every shape, global data, subprograms,
 * .kconfig externs, CO-RE against the kernel's BTF, tail calls and maps of maps. Each program
 * is a socket filter that the tests run with BPF_PROG_TEST_RUN and whose return value they
 * check. */
#include "ebpf_bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* A type the kernel has: CO-RE finds its real layout. */
struct task_struct {
    int pid;
    int tgid;
} __core;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 16);
} counters SEC(".maps");

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u32);
    __uint(max_entries, 1);
} inner SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, __u32);
    __array(values, struct inner_map);
} outer SEC(".maps") = {
    .values = {[1] = &inner},
};

int tail_target(struct __sk_buff *skb);

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __array(values, int(void *));
} jumps SEC(".maps") = {
    .values = {[2] = (void *)&tail_target},
};

volatile const __u32 answer = 40;  /* .rodata: set by the user before load */
__u32 data_var = 2;                /* .data */
__u32 bss_var;                     /* .bss */

extern unsigned long CONFIG_HZ __kconfig;
extern int CONFIG_EBPF_LOADER_TEST_MISSING __kconfig __weak;
extern __u32 LINUX_KERNEL_VERSION __kconfig;

static __noinline __u32 add(__u32 a, __u32 b) { return a + b; }

__noinline int global_mul(int a) { return a * 3; }

SEC("socket")
int globals(struct __sk_buff *skb) {
    bss_var += 1;
    return answer + data_var + bss_var;
}

SEC("socket")
int calls(struct __sk_buff *skb) {
    /* add(3, 4) = 7; global_mul(7) = 21; + add(0, 1) = 22 */
    return global_mul(add(3, 4)) + add(0, 1);
}

SEC("socket")
int kconfig(struct __sk_buff *skb) {
    if (CONFIG_EBPF_LOADER_TEST_MISSING != 0)
        return -1;
    if (LINUX_KERNEL_VERSION < (5 << 16))
        return -2;
    return CONFIG_HZ;
}

SEC("socket")
int core_offset(struct __sk_buff *skb) {
    struct task_struct *t = 0;
    return bpf_core_field_offset(t->pid);
}

SEC("socket")
int core_size(struct __sk_buff *skb) { return bpf_core_type_size(struct task_struct); }

SEC("socket")
int counting(struct __sk_buff *skb) {
    __u32 key = skb->len;
    __u64 one = 1, *v = bpf_map_lookup_elem(&counters, &key);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return *v;
    }
    bpf_map_update_elem(&counters, &key, &one, BPF_NOEXIST);
    return 1;
}

SEC("socket")
int tail_target(struct __sk_buff *skb) { return 42; }

SEC("socket")
int tail_entry(struct __sk_buff *skb) {
    bpf_tail_call(skb, &jumps, 2);
    return 1;
}

SEC("socket")
int map_in_map(struct __sk_buff *skb) {
    __u32 key = 1, zero = 0;
    void *in = bpf_map_lookup_elem(&outer, &key);
    if (!in)
        return -1;
    __u32 *v = bpf_map_lookup_elem(in, &zero);
    return v ? *v : -2;
}

SEC("?socket")
int not_by_default(struct __sk_buff *skb) { return 0; }

/* A kernel function called directly (a kfunc every program type may call), and a weak one
 * the kernel does not have, which the program must not call. */
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

SEC("socket")
int kfunc(struct __sk_buff *skb) {
    bpf_rcu_read_lock();
    bpf_rcu_read_unlock();
    return 7;
}

/* A map in the legacy "maps" section, as older objects declare them. */
struct bpf_map_def {
    unsigned int type, key_size, value_size, max_entries, map_flags;
};
struct bpf_map_def SEC("maps") legacy = {
    .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4};

SEC("socket")
int legacy_map(struct __sk_buff *skb) {
    __u32 k = 1;
    __u64 *v = bpf_map_lookup_elem(&legacy, &k);
    return v ? *v : -1;
}

/* A callback: its address is a BPF_PSEUDO_FUNC load the loader relocates like a call. */
static int add_index(__u32 index, void *ctx) {
    *(__u32 *)ctx += index;
    return 0;
}

SEC("socket")
int callback(struct __sk_buff *skb) {
    __u32 sum = 0;
    bpf_loop(5, add_index, &sum, 0);
    return sum; /* 0 + 1 + 2 + 3 + 4 */
}
