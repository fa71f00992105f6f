// The single entry point of every bpf(2) call, replaceable by tests (layer: sys).
#pragma once

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "ebpf/base/result.hpp"
#include "ebpf/sys/attr.hpp"
#include "ebpf/sys/fd.hpp"

namespace ebpf::sys {

// Signature of the bpf(2) entry point: returns the syscall's value (>= 0) or -errno.
using syscall_fn = long (*)(int cmd, void* attr, unsigned size);

namespace detail {
inline syscall_fn hook = nullptr;
}

// Replaces the bpf(2) entry point for this process (nullptr restores the real syscall) and
// returns the previous one. For tests: not thread-safe against concurrent bpf calls.
inline syscall_fn set_syscall(syscall_fn fn) {
    syscall_fn old = detail::hook;
    detail::hook = fn;
    return old;
}

// Makes one bpf(2) call through the entry point, retrying while it is interrupted (the verifier
// and map iteration can return EINTR on a signal). Returns the value or -errno.
inline long call(int cmd, void* attr, unsigned size) {
    for (;;) {
        long r;
        if (detail::hook) [[unlikely]] {
            r = detail::hook(cmd, attr, size);
        } else {
            r = ::syscall(__NR_bpf, cmd, attr, size);
            if (r < 0) {
                r = -errno;
            }
        }
        if (r != -EINTR) [[likely]] {
            return r;
        }
    }
}

// Returns the name of a bpf command, e.g. "BPF_MAP_CREATE".
inline const char* command_name(int cmd) {
    switch (cmd) {
#define EBPF_CMD(c) \
    case c:         \
        return #c
        EBPF_CMD(BPF_MAP_CREATE);
        EBPF_CMD(BPF_MAP_LOOKUP_ELEM);
        EBPF_CMD(BPF_MAP_UPDATE_ELEM);
        EBPF_CMD(BPF_MAP_DELETE_ELEM);
        EBPF_CMD(BPF_MAP_GET_NEXT_KEY);
        EBPF_CMD(BPF_PROG_LOAD);
        EBPF_CMD(BPF_OBJ_PIN);
        EBPF_CMD(BPF_OBJ_GET);
        EBPF_CMD(BPF_PROG_ATTACH);
        EBPF_CMD(BPF_PROG_DETACH);
        EBPF_CMD(BPF_PROG_TEST_RUN);
        EBPF_CMD(BPF_PROG_GET_NEXT_ID);
        EBPF_CMD(BPF_MAP_GET_NEXT_ID);
        EBPF_CMD(BPF_PROG_GET_FD_BY_ID);
        EBPF_CMD(BPF_MAP_GET_FD_BY_ID);
        EBPF_CMD(BPF_OBJ_GET_INFO_BY_FD);
        EBPF_CMD(BPF_PROG_QUERY);
        EBPF_CMD(BPF_BTF_LOAD);
        EBPF_CMD(BPF_BTF_GET_FD_BY_ID);
        EBPF_CMD(BPF_MAP_LOOKUP_AND_DELETE_ELEM);
        EBPF_CMD(BPF_MAP_FREEZE);
        EBPF_CMD(BPF_BTF_GET_NEXT_ID);
        EBPF_CMD(BPF_MAP_LOOKUP_BATCH);
        EBPF_CMD(BPF_MAP_LOOKUP_AND_DELETE_BATCH);
        EBPF_CMD(BPF_MAP_UPDATE_BATCH);
        EBPF_CMD(BPF_MAP_DELETE_BATCH);
        EBPF_CMD(BPF_LINK_CREATE);
        EBPF_CMD(BPF_LINK_UPDATE);
        EBPF_CMD(BPF_LINK_GET_FD_BY_ID);
        EBPF_CMD(BPF_LINK_GET_NEXT_ID);
        EBPF_CMD(BPF_ENABLE_STATS);
        EBPF_CMD(BPF_LINK_DETACH);
#undef EBPF_CMD
        default:
            return "BPF_(unknown command)";
    }
}

// Makes a call whose result is only success or failure.
template <class Attr>
inline result<void> call_void(int cmd, Attr& attr) {
    long r = call(cmd, &attr, attr_size<Attr>);
    if (r < 0) [[unlikely]] {
        return error(static_cast<int>(-r), command_name(cmd));
    }
    return {};
}

// Makes a call that returns a new file descriptor and takes ownership of it.
template <class Attr>
inline result<fd> call_fd(int cmd, Attr& attr) {
    long r = call(cmd, &attr, attr_size<Attr>);
    if (r < 0) [[unlikely]] {
        return error(static_cast<int>(-r), command_name(cmd));
    }
    auto f = fd::adopt(static_cast<int>(r));
    if (!f) [[unlikely]] {
        return std::move(f).error().context(command_name(cmd));
    }
    return f;
}

}  // namespace ebpf::sys
