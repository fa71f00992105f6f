// One thin inline function per bpf(2) command, each named after it (layer: sys).
#pragma once

#include <linux/bpf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "ebpf/base/result.hpp"
#include "ebpf/sys/attr.hpp"
#include "ebpf/sys/fd.hpp"
#include "ebpf/sys/syscall.hpp"

namespace ebpf::sys {

inline uint64_t ptr(const void* p) {
    return reinterpret_cast<uintptr_t>(p);
}

// Copies `name` into a kernel object name field, truncating to 15 bytes plus the NUL.
inline void set_name(char (&dst)[BPF_OBJ_NAME_LEN], std::string_view name) {
    size_t n = std::min(name.size(), sizeof dst - 1);
    std::memcpy(dst, name.data(), n);
    dst[n] = '\0';
}

// Creates a map (BPF_MAP_CREATE).
inline result<fd> map_create(map_create_attr& attr) {
    return call_fd(BPF_MAP_CREATE, attr);
}

namespace detail {
// Element commands whose ENOENT means "absent", an ordinary answer rather than a failure.
inline result<bool> elem_call(int cmd, uint32_t map_fd, const void* key, void* value,
                              uint64_t flags) {
    map_elem_attr attr{};
    attr.map_fd = map_fd;
    attr.key = ptr(key);
    attr.value = ptr(value);
    attr.flags = flags;
    long r = call(cmd, &attr, attr_size<map_elem_attr>);
    if (r < 0) [[unlikely]] {
        if (r == -ENOENT) {
            return false;
        }
        return error(static_cast<int>(-r), command_name(cmd));
    }
    return true;
}
}  // namespace detail

// Copies the value of `key` into `value` (BPF_MAP_LOOKUP_ELEM); false when the key is absent.
inline result<bool> map_lookup_elem(int map_fd, const void* key, void* value, uint64_t flags = 0) {
    return detail::elem_call(BPF_MAP_LOOKUP_ELEM, map_fd, key, value, flags);
}

// Sets `key` to `value` (BPF_MAP_UPDATE_ELEM) with BPF_ANY, BPF_NOEXIST, BPF_EXIST or BPF_F_LOCK.
inline result<void> map_update_elem(int map_fd, const void* key, const void* value,
                                    uint64_t flags = BPF_ANY) {
    map_elem_attr attr{};
    attr.map_fd = map_fd;
    attr.key = ptr(key);
    attr.value = ptr(value);
    attr.flags = flags;
    return call_void(BPF_MAP_UPDATE_ELEM, attr);
}

// Deletes `key` (BPF_MAP_DELETE_ELEM); false when it was absent.
inline result<bool> map_delete_elem(int map_fd, const void* key) {
    return detail::elem_call(BPF_MAP_DELETE_ELEM, map_fd, key, nullptr, 0);
}

// Writes the key after `key` (nullptr: the first key) into `next` (BPF_MAP_GET_NEXT_KEY);
// false when there is none.
inline result<bool> map_get_next_key(int map_fd, const void* key, void* next) {
    return detail::elem_call(BPF_MAP_GET_NEXT_KEY, map_fd, key, next, 0);
}

// Copies the value of `key` into `value` and deletes it (BPF_MAP_LOOKUP_AND_DELETE_ELEM; for
// queues and stacks `key` is nullptr); false when it was absent.
inline result<bool> map_lookup_and_delete_elem(int map_fd, const void* key, void* value,
                                               uint64_t flags = 0) {
    return detail::elem_call(BPF_MAP_LOOKUP_AND_DELETE_ELEM, map_fd, key, value, flags);
}

namespace detail {
// Batch commands: ENOENT means "the walk reached the end" with attr.count entries done.
inline result<bool> batch_call(int cmd, map_batch_attr& attr) {
    long r = call(cmd, &attr, attr_size<map_batch_attr>);
    if (r < 0) [[unlikely]] {
        if (r == -ENOENT && cmd != BPF_MAP_UPDATE_BATCH && cmd != BPF_MAP_DELETE_BATCH) {
            return false;
        }
        return error(static_cast<int>(-r), command_name(cmd),
                     std::to_string(attr.count) + " elements done");
    }
    return true;
}
}  // namespace detail

// Reads up to attr.count entries from the position attr.in_batch (0: start), writing the next
// position to attr.out_batch and the number read to attr.count (BPF_MAP_LOOKUP_BATCH, 5.6+).
// Returns false when the walk reached the end.
inline result<bool> map_lookup_batch(map_batch_attr& attr) {
    return detail::batch_call(BPF_MAP_LOOKUP_BATCH, attr);
}

// As map_lookup_batch, deleting what it reads (BPF_MAP_LOOKUP_AND_DELETE_BATCH, 5.6+).
inline result<bool> map_lookup_and_delete_batch(map_batch_attr& attr) {
    return detail::batch_call(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr);
}

// Writes attr.count entries (BPF_MAP_UPDATE_BATCH, 5.6+); attr.count says how many were written.
inline result<void> map_update_batch(map_batch_attr& attr) {
    auto r = detail::batch_call(BPF_MAP_UPDATE_BATCH, attr);
    if (!r) [[unlikely]] {
        return std::move(r).error();
    }
    return {};
}

// Deletes attr.count keys (BPF_MAP_DELETE_BATCH, 5.6+); attr.count says how many were deleted.
inline result<void> map_delete_batch(map_batch_attr& attr) {
    auto r = detail::batch_call(BPF_MAP_DELETE_BATCH, attr);
    if (!r) [[unlikely]] {
        return std::move(r).error();
    }
    return {};
}

// Makes the map read-only for user space (BPF_MAP_FREEZE, 5.2+).
inline result<void> map_freeze(int map_fd) {
    map_freeze_attr attr{};
    attr.map_fd = map_fd;
    return call_void(BPF_MAP_FREEZE, attr);
}

// How a load collects the kernel's log (verifier log for programs, BTF log for BTF).
struct log_options {
    // 0: load without a log, and only on failure load again with level 1 to explain it.
    // 1 or 2 (or with BPF_LOG_STATS): collect the log on every load.
    uint32_t level = 0;
    // The first buffer size; the kernel rejects less than 128 bytes.
    uint32_t initial_size = 64 * 1024;
    // The largest buffer tried (the kernel's own limit is UINT32_MAX >> 2). A log that does not
    // fit keeps its tail and is marked truncated in the error.
    uint32_t max_size = UINT32_MAX >> 2;
};

namespace detail {
// The load-with-log policy shared by PROG_LOAD and BTF_LOAD: try without a log; on failure
// retry with one, sized by what the kernel says it needed (6.4+) or grown 4x on ENOSPC; report
// the first attempt's errno (ENOSPC from a small log would hide it) and the log, marked when
// truncated. `log` receives the log of a successful load when opts.level > 0.
template <class Attr, class SetLog, class TrueSize>
inline result<fd> load_with_log(int cmd, Attr& attr, const log_options& opts, std::string* log,
                                SetLog set_log, TrueSize true_size) {
    int first_errno = 0;
    if (opts.level == 0) {
        set_log(attr, 0, 0, nullptr);
        long r = call(cmd, &attr, attr_size<Attr>);
        // The verifier can answer EAGAIN when it is asked to give way; libbpf retries too.
        for (int i = 0; i < 4 && r == -EAGAIN; ++i) {
            r = call(cmd, &attr, attr_size<Attr>);
        }
        if (r >= 0) [[likely]] {
            return fd::adopt(static_cast<int>(r));
        }
        first_errno = static_cast<int>(-r);
    }
    const uint32_t level = opts.level ? opts.level : 1;
    const uint32_t max_size = std::max<uint32_t>(opts.max_size, 128);
    uint32_t size = std::clamp<uint32_t>(opts.initial_size, 128, max_size);
    std::string buf;
    for (;;) {
        buf.assign(size, '\0');
        set_log(attr, level, size, buf.data());
        long r = call(cmd, &attr, attr_size<Attr>);
        for (int i = 0; i < 4 && r == -EAGAIN; ++i) {
            r = call(cmd, &attr, attr_size<Attr>);
        }
        const bool full = r == -ENOSPC;
        if (full && size < max_size) {
            uint32_t needed = true_size(attr);
            uint64_t next = needed > size ? needed : uint64_t(size) * 4;
            size = static_cast<uint32_t>(std::min<uint64_t>(next, max_size));
            continue;
        }
        buf.resize(strnlen(buf.data(), buf.size()));
        if (r >= 0) {
            // A load that failed without a log can pass with one (a transient EAGAIN).
            if (log) {
                *log = std::move(buf);
            }
            set_log(attr, 0, 0, nullptr);
            return fd::adopt(static_cast<int>(r));
        }
        int err = static_cast<int>(-r);
        if (full && first_errno != 0) {
            err = first_errno;
        }
        set_log(attr, 0, 0, nullptr);
        return error(err, command_name(cmd)).with_log(std::move(buf), full);
    }
}
}  // namespace detail

// Loads a program (BPF_PROG_LOAD). On failure the error carries the verifier log; see
// log_options for how it is collected. attr.log_* are managed here and left zero on return.
inline result<fd> prog_load(prog_load_attr& attr, const log_options& opts = {},
                            std::string* log = nullptr) {
    return detail::load_with_log(
        BPF_PROG_LOAD, attr, opts, log,
        [](prog_load_attr& a, uint32_t level, uint32_t size, char* buf) {
            a.log_level = level;
            a.log_size = size;
            a.log_buf = ptr(buf);
            a.log_true_size = 0;
        },
        [](const prog_load_attr& a) { return a.log_true_size; });
}

// Loads BTF into the kernel (BPF_BTF_LOAD), with the same log handling as prog_load.
inline result<fd> btf_load(btf_load_attr& attr, const log_options& opts = {},
                           std::string* log = nullptr) {
    return detail::load_with_log(
        BPF_BTF_LOAD, attr, opts, log,
        [](btf_load_attr& a, uint32_t level, uint32_t size, char* buf) {
            a.btf_log_level = level;
            a.btf_log_size = size;
            a.btf_log_buf = ptr(buf);
            a.btf_log_true_size = 0;
        },
        [](const btf_load_attr& a) { return a.btf_log_true_size; });
}

// Pins a map, program, link or BTF object at `path` in a bpffs (BPF_OBJ_PIN).
inline result<void> obj_pin(const char* path, int bpf_fd) {
    obj_attr attr{};
    attr.pathname = ptr(path);
    attr.bpf_fd = bpf_fd;
    auto r = call_void(BPF_OBJ_PIN, attr);
    if (!r) [[unlikely]] {
        return std::move(r).error().context(std::string("pin ") + path);
    }
    return r;
}

// Opens the object pinned at `path` (BPF_OBJ_GET); flags BPF_F_RDONLY or BPF_F_WRONLY.
inline result<fd> obj_get(const char* path, uint32_t file_flags = 0) {
    obj_attr attr{};
    attr.pathname = ptr(path);
    attr.file_flags = file_flags;
    auto r = call_fd(BPF_OBJ_GET, attr);
    if (!r) [[unlikely]] {
        return std::move(r).error().context(std::string("open pin ") + path);
    }
    return r;
}

// Attaches a program the legacy way (BPF_PROG_ATTACH).
inline result<void> prog_attach(prog_attach_attr& attr) {
    return call_void(BPF_PROG_ATTACH, attr);
}

// Detaches a legacy attachment (BPF_PROG_DETACH).
inline result<void> prog_detach(prog_attach_attr& attr) {
    return call_void(BPF_PROG_DETACH, attr);
}

// Lists the programs attached to a target (BPF_PROG_QUERY); attr.prog_cnt is in/out.
inline result<void> prog_query(prog_query_attr& attr) {
    return call_void(BPF_PROG_QUERY, attr);
}

// Creates a link (BPF_LINK_CREATE, 5.7+ for cgroups).
inline result<fd> link_create(link_create_attr& attr) {
    return call_fd(BPF_LINK_CREATE, attr);
}

// Replaces a link's program atomically (BPF_LINK_UPDATE, 5.7+).
inline result<void> link_update(link_update_attr& attr) {
    return call_void(BPF_LINK_UPDATE, attr);
}

// Detaches a link without closing it (BPF_LINK_DETACH, 5.9+).
inline result<void> link_detach(int link_fd) {
    link_detach_attr attr{};
    attr.link_fd = link_fd;
    return call_void(BPF_LINK_DETACH, attr);
}

namespace detail {
inline result<fd> get_fd_by_id(int cmd, uint32_t id, uint32_t open_flags) {
    get_id_attr attr{};
    attr.id = id;
    attr.open_flags = open_flags;
    auto r = call_fd(cmd, attr);
    if (!r) [[unlikely]] {
        return std::move(r).error().context("id " + std::to_string(id));
    }
    return r;
}
inline result<uint32_t> get_next_id(int cmd, uint32_t start) {
    get_id_attr attr{};
    attr.id = start;
    long r = call(cmd, &attr, attr_size<get_id_attr>);
    if (r < 0) [[unlikely]] {
        if (r == -ENOENT) {
            return uint32_t{0};
        }
        return error(static_cast<int>(-r), command_name(cmd));
    }
    return attr.next_id;
}
}  // namespace detail

// Opens the program with this id (BPF_PROG_GET_FD_BY_ID).
inline result<fd> prog_get_fd_by_id(uint32_t id) {
    return detail::get_fd_by_id(BPF_PROG_GET_FD_BY_ID, id, 0);
}
// Opens the map with this id (BPF_MAP_GET_FD_BY_ID); flags BPF_F_RDONLY or BPF_F_WRONLY.
inline result<fd> map_get_fd_by_id(uint32_t id, uint32_t open_flags = 0) {
    return detail::get_fd_by_id(BPF_MAP_GET_FD_BY_ID, id, open_flags);
}
// Opens the link with this id (BPF_LINK_GET_FD_BY_ID, 5.8+).
inline result<fd> link_get_fd_by_id(uint32_t id) {
    return detail::get_fd_by_id(BPF_LINK_GET_FD_BY_ID, id, 0);
}
// Opens the BTF object with this id (BPF_BTF_GET_FD_BY_ID).
inline result<fd> btf_get_fd_by_id(uint32_t id) {
    return detail::get_fd_by_id(BPF_BTF_GET_FD_BY_ID, id, 0);
}

// Returns the next program id after `start` (BPF_PROG_GET_NEXT_ID); 0 when there is none.
inline result<uint32_t> prog_get_next_id(uint32_t start) {
    return detail::get_next_id(BPF_PROG_GET_NEXT_ID, start);
}
// Returns the next map id after `start` (BPF_MAP_GET_NEXT_ID); 0 when there is none.
inline result<uint32_t> map_get_next_id(uint32_t start) {
    return detail::get_next_id(BPF_MAP_GET_NEXT_ID, start);
}
// Returns the next link id after `start` (BPF_LINK_GET_NEXT_ID, 5.8+); 0 when there is none.
inline result<uint32_t> link_get_next_id(uint32_t start) {
    return detail::get_next_id(BPF_LINK_GET_NEXT_ID, start);
}
// Returns the next BTF id after `start` (BPF_BTF_GET_NEXT_ID); 0 when there is none.
inline result<uint32_t> btf_get_next_id(uint32_t start) {
    return detail::get_next_id(BPF_BTF_GET_NEXT_ID, start);
}

// Fills `info` (a bpf_prog_info, bpf_map_info, bpf_link_info or bpf_btf_info) for the object
// (BPF_OBJ_GET_INFO_BY_FD). `len` is in/out: the kernel writes back how much it filled.
inline result<void> obj_get_info_by_fd(int bpf_fd, void* info, uint32_t& len) {
    info_attr attr{};
    attr.bpf_fd = bpf_fd;
    attr.info_len = len;
    attr.info = ptr(info);
    auto r = call_void(BPF_OBJ_GET_INFO_BY_FD, attr);
    len = attr.info_len;
    return r;
}

// Runs a program on test input (BPF_PROG_TEST_RUN); retval, duration and sizes are written back.
inline result<void> prog_test_run(test_run_attr& attr) {
    return call_void(BPF_PROG_TEST_RUN, attr);
}

// Turns on kernel statistics such as BPF_STATS_RUN_TIME while the returned fd is open
// (BPF_ENABLE_STATS, 5.8+).
inline result<fd> enable_stats(uint32_t type) {
    enable_stats_attr attr{};
    attr.type = type;
    return call_fd(BPF_ENABLE_STATS, attr);
}

}  // namespace ebpf::sys
