/* The BPF side of ebpf-agent: helper declarations, section and map-definition macros, byte
 * order and CO-RE builtins for programs built with clang -target bpf. No libbpf headers. */
#ifndef EBPF_BPF_H
#define EBPF_BPF_H

#include <linux/bpf.h>
#include <linux/types.h>

/* Sections and attributes. */
#define SEC(name) __attribute__((section(name), used))
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define __noinline __attribute__((noinline))
#define __weak __attribute__((weak))
#define __hidden __attribute__((visibility("hidden")))
#define __kconfig __attribute__((section(".kconfig")))
#define __ksym __attribute__((section(".ksyms")))

/* BTF-defined maps: struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u32); ... } m SEC(".maps"); */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]

/* Pinning values understood by the loader. */
#define PIN_NONE 0
#define PIN_BY_NAME 1

/* Byte order (the BPF target is little-endian here). */
#define bpf_htons(x) __builtin_bswap16(x)
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_htonl(x) __builtin_bswap32(x)
#define bpf_ntohl(x) __builtin_bswap32(x)

/* Helpers, by their numbers in enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
                                   __u64 flags) = (void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size,
                                     const void *unsafe_ptr) = (void *)BPF_FUNC_probe_read_kernel;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)BPF_FUNC_get_prandom_u32;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)BPF_FUNC_get_current_cgroup_id;
static __u64 (*bpf_skb_cgroup_id)(struct __sk_buff *skb) = (void *)BPF_FUNC_skb_cgroup_id;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
                                  __u32 len) = (void *)BPF_FUNC_skb_load_bytes;
static long (*bpf_tail_call)(void *ctx, void *prog_array, __u32 index) = (void *)BPF_FUNC_tail_call;
static long (*bpf_setsockopt)(void *bpf_socket, int level, int optname, void *optval,
                              int optlen) = (void *)BPF_FUNC_setsockopt;
static long (*bpf_getsockopt)(void *bpf_socket, int level, int optname, void *optval,
                              int optlen) = (void *)BPF_FUNC_getsockopt;
static long (*bpf_sock_ops_cb_flags_set)(struct bpf_sock_ops *bpf_sock,
                                         int argval) = (void *)BPF_FUNC_sock_ops_cb_flags_set;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
                                  __u64 flags) = (void *)BPF_FUNC_ringbuf_output;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)BPF_FUNC_trace_printk;
static void *(*bpf_get_local_storage)(void *map, __u64 flags) = (void *)BPF_FUNC_get_local_storage;
static struct bpf_sock *(*bpf_sk_fullsock)(struct bpf_sock *sk) = (void *)BPF_FUNC_sk_fullsock;
static void *(*bpf_sk_storage_get)(void *map, void *sk, void *value,
                                   __u64 flags) = (void *)BPF_FUNC_sk_storage_get;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx,
                        __u64 flags) = (void *)BPF_FUNC_loop;

/* CO-RE: field and type relocations resolved by the loader against the kernel's BTF. */
#define __core __attribute__((preserve_access_index))
enum ebpf_field_info_kind {
    EBPF_FIELD_BYTE_OFFSET = 0,
    EBPF_FIELD_BYTE_SIZE = 1,
    EBPF_FIELD_EXISTS = 2,
    EBPF_FIELD_SIGNED = 3,
    EBPF_FIELD_LSHIFT_U64 = 4,
    EBPF_FIELD_RSHIFT_U64 = 5,
};
enum ebpf_type_info_kind {
    EBPF_TYPE_EXISTS = 0,
    EBPF_TYPE_SIZE = 1,
    EBPF_TYPE_MATCHES = 2,
};
enum ebpf_type_id_kind {
    EBPF_TYPE_ID_LOCAL = 0,
    EBPF_TYPE_ID_TARGET = 1,
};
#define bpf_core_field_exists(field) __builtin_preserve_field_info(field, EBPF_FIELD_EXISTS)
#define bpf_core_field_size(field) __builtin_preserve_field_info(field, EBPF_FIELD_BYTE_SIZE)
#define bpf_core_field_offset(field) __builtin_preserve_field_info(field, EBPF_FIELD_BYTE_OFFSET)
#define bpf_core_type_exists(type) \
    __builtin_preserve_type_info(*(typeof(type) *)0, EBPF_TYPE_EXISTS)
#define bpf_core_type_size(type) __builtin_preserve_type_info(*(typeof(type) *)0, EBPF_TYPE_SIZE)
#define bpf_core_type_id_kernel(type) \
    __builtin_btf_type_id(*(typeof(type) *)0, EBPF_TYPE_ID_TARGET)

#endif
