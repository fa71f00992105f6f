// Per-command bpf_attr layouts, including fields newer than the host's 6.1 uapi (layer: sys).
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>

namespace ebpf::sys {

// Each struct is the prefix of union bpf_attr that one command reads, laid out as the kernel
// lays it out. The size passed to bpf(2) is `attr_size<T>` (up to the end of the last field we
// may set), so kernels that are older than a trailing field see only bytes they know.

struct map_create_attr {
    uint32_t map_type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t max_entries;
    uint32_t map_flags;
    uint32_t inner_map_fd;
    uint32_t numa_node;
    char map_name[BPF_OBJ_NAME_LEN];
    uint32_t map_ifindex;
    uint32_t btf_fd;
    uint32_t btf_key_type_id;
    uint32_t btf_value_type_id;
    uint32_t btf_vmlinux_value_type_id;
    uint64_t map_extra;
};

struct map_elem_attr {
    uint32_t map_fd;
    uint32_t pad0_;
    uint64_t key;
    uint64_t value;  // next_key for BPF_MAP_GET_NEXT_KEY
    uint64_t flags;
};

struct map_batch_attr {
    uint64_t in_batch;
    uint64_t out_batch;
    uint64_t keys;
    uint64_t values;
    uint32_t count;
    uint32_t map_fd;
    uint64_t elem_flags;
    uint64_t flags;
};

struct map_freeze_attr {
    uint32_t map_fd;
};

struct prog_load_attr {
    uint32_t prog_type;
    uint32_t insn_cnt;
    uint64_t insns;
    uint64_t license;
    uint32_t log_level;
    uint32_t log_size;
    uint64_t log_buf;
    uint32_t kern_version;
    uint32_t prog_flags;
    char prog_name[BPF_OBJ_NAME_LEN];
    uint32_t prog_ifindex;
    uint32_t expected_attach_type;
    uint32_t prog_btf_fd;
    uint32_t func_info_rec_size;
    uint64_t func_info;
    uint32_t func_info_cnt;
    uint32_t line_info_rec_size;
    uint64_t line_info;
    uint32_t line_info_cnt;
    uint32_t attach_btf_id;
    uint32_t attach_prog_fd;  // attach_btf_obj_fd
    uint32_t core_relo_cnt;
    uint64_t fd_array;
    uint64_t core_relos;
    uint32_t core_relo_rec_size;
    uint32_t log_true_size;  // 6.4+: written back by the kernel
};

struct obj_attr {
    uint64_t pathname;
    uint32_t bpf_fd;
    uint32_t file_flags;
};

struct prog_attach_attr {
    uint32_t target_fd;
    uint32_t attach_bpf_fd;
    uint32_t attach_type;
    uint32_t attach_flags;
    uint32_t replace_bpf_fd;
};

struct prog_query_attr {
    uint32_t target_fd;
    uint32_t attach_type;
    uint32_t query_flags;
    uint32_t attach_flags;
    uint64_t prog_ids;
    uint32_t prog_cnt;
    uint32_t pad0_;
    uint64_t prog_attach_flags;
    uint64_t link_ids;           // 6.6+
    uint64_t link_attach_flags;  // 6.6+
    uint64_t revision;           // 6.6+: output
};

struct link_create_attr {
    uint32_t prog_fd;
    uint32_t target_fd;
    uint32_t attach_type;
    uint32_t flags;
};

struct link_update_attr {
    uint32_t link_fd;
    uint32_t new_prog_fd;
    uint32_t flags;
    uint32_t old_prog_fd;
};

struct link_detach_attr {
    uint32_t link_fd;
};

struct btf_load_attr {
    uint64_t btf;
    uint64_t btf_log_buf;
    uint32_t btf_size;
    uint32_t btf_log_size;
    uint32_t btf_log_level;
    uint32_t btf_log_true_size;  // 6.4+: written back by the kernel
};

struct get_id_attr {
    uint32_t id;  // start_id, prog_id, map_id, btf_id or link_id
    uint32_t next_id;
    uint32_t open_flags;
};

struct info_attr {
    uint32_t bpf_fd;
    uint32_t info_len;
    uint64_t info;
};

struct test_run_attr {
    uint32_t prog_fd;
    uint32_t retval;
    uint32_t data_size_in;
    uint32_t data_size_out;
    uint64_t data_in;
    uint64_t data_out;
    uint32_t repeat;
    uint32_t duration;
    uint32_t ctx_size_in;
    uint32_t ctx_size_out;
    uint64_t ctx_in;
    uint64_t ctx_out;
    uint32_t flags;
    uint32_t cpu;
    uint32_t batch_size;
};

struct enable_stats_attr {
    uint32_t type;
};

namespace detail {
template <class T>
struct attr_end;
#define EBPF_ATTR_END(T, last)                                                 \
    template <>                                                                \
    struct attr_end<T> {                                                       \
        static constexpr unsigned value = offsetof(T, last) + sizeof(T::last); \
    }
EBPF_ATTR_END(map_create_attr, map_extra);
EBPF_ATTR_END(map_elem_attr, flags);
EBPF_ATTR_END(map_batch_attr, flags);
EBPF_ATTR_END(map_freeze_attr, map_fd);
EBPF_ATTR_END(prog_load_attr, log_true_size);
EBPF_ATTR_END(obj_attr, file_flags);
EBPF_ATTR_END(prog_attach_attr, replace_bpf_fd);
EBPF_ATTR_END(prog_query_attr, revision);
EBPF_ATTR_END(link_create_attr, flags);
EBPF_ATTR_END(link_update_attr, old_prog_fd);
EBPF_ATTR_END(link_detach_attr, link_fd);
EBPF_ATTR_END(btf_load_attr, btf_log_true_size);
EBPF_ATTR_END(get_id_attr, open_flags);
EBPF_ATTR_END(info_attr, info);
EBPF_ATTR_END(test_run_attr, batch_size);
EBPF_ATTR_END(enable_stats_attr, type);
#undef EBPF_ATTR_END
}  // namespace detail

// The number of attr bytes a command passes: up to the end of the last field it uses.
template <class T>
inline constexpr unsigned attr_size = detail::attr_end<T>::value;

// The layouts must match the kernel's; the 6.1 uapi header checks every field it has.
#define EBPF_SAME_OFFSET(T, f, uf) \
    static_assert(offsetof(T, f) == offsetof(union bpf_attr, uf), #T "." #f " offset")
EBPF_SAME_OFFSET(map_create_attr, map_name, map_name);
EBPF_SAME_OFFSET(map_create_attr, btf_vmlinux_value_type_id, btf_vmlinux_value_type_id);
EBPF_SAME_OFFSET(map_create_attr, map_extra, map_extra);
EBPF_SAME_OFFSET(map_elem_attr, key, key);
EBPF_SAME_OFFSET(map_elem_attr, value, value);
EBPF_SAME_OFFSET(map_elem_attr, flags, flags);
EBPF_SAME_OFFSET(map_batch_attr, count, batch.count);
EBPF_SAME_OFFSET(map_batch_attr, map_fd, batch.map_fd);
EBPF_SAME_OFFSET(map_batch_attr, flags, batch.flags);
EBPF_SAME_OFFSET(prog_load_attr, prog_name, prog_name);
EBPF_SAME_OFFSET(prog_load_attr, expected_attach_type, expected_attach_type);
EBPF_SAME_OFFSET(prog_load_attr, func_info, func_info);
EBPF_SAME_OFFSET(prog_load_attr, line_info_cnt, line_info_cnt);
EBPF_SAME_OFFSET(prog_load_attr, attach_prog_fd, attach_prog_fd);
EBPF_SAME_OFFSET(prog_load_attr, fd_array, fd_array);
EBPF_SAME_OFFSET(prog_load_attr, core_relo_rec_size, core_relo_rec_size);
EBPF_SAME_OFFSET(obj_attr, file_flags, file_flags);
EBPF_SAME_OFFSET(prog_attach_attr, replace_bpf_fd, replace_bpf_fd);
EBPF_SAME_OFFSET(prog_query_attr, prog_cnt, query.prog_cnt);
EBPF_SAME_OFFSET(prog_query_attr, prog_attach_flags, query.prog_attach_flags);
EBPF_SAME_OFFSET(link_create_attr, flags, link_create.flags);
EBPF_SAME_OFFSET(link_update_attr, old_prog_fd, link_update.old_prog_fd);
EBPF_SAME_OFFSET(btf_load_attr, btf_log_level, btf_log_level);
EBPF_SAME_OFFSET(get_id_attr, open_flags, open_flags);
EBPF_SAME_OFFSET(info_attr, info, info.info);
EBPF_SAME_OFFSET(test_run_attr, ctx_out, test.ctx_out);
EBPF_SAME_OFFSET(test_run_attr, batch_size, test.batch_size);
#undef EBPF_SAME_OFFSET
static_assert(offsetof(prog_load_attr, log_true_size) == 140);
static_assert(offsetof(btf_load_attr, btf_log_true_size) == 28);
static_assert(offsetof(prog_query_attr, revision) == 56);

}  // namespace ebpf::sys
