// Hand-assembled programs of the kinds the agent runs, for the kernel tests.
#pragma once

#include <linux/bpf.h>

#include <initializer_list>
#include <vector>

#include "ebpf/spec/insn.hpp"

namespace ebpf::test {

using namespace ebpf::insn;

// Looks up key 0 of the array `map_fd`, then goes on with `rest`, r0 = the value's address or 0.
inline std::vector<bpf_insn> at_key0(int map_fd, std::initializer_list<bpf_insn> rest) {
    auto m = ld_map_fd(r1, map_fd);
    std::vector<bpf_insn> code = {
        st_mem(BPF_W, r10, -4, 0),      mov64_reg(r2, r10), alu64_imm(BPF_ADD, r2, -4), m.lo, m.hi,
        call(BPF_FUNC_map_lookup_elem),
    };
    code.insert(code.end(), rest);
    return code;
}

// cgroup_skb: adds skb->len and 1 to {u64 bytes, u64 packets} at key 0 of an array; passes.
inline std::vector<bpf_insn> count_skb_program(int map_fd) {
    auto m = ld_map_fd(r1, map_fd);
    return {
        mov64_reg(r6, r1),
        st_mem(BPF_W, r10, -4, 0),
        mov64_reg(r2, r10),
        alu64_imm(BPF_ADD, r2, -4),
        m.lo,
        m.hi,
        call(BPF_FUNC_map_lookup_elem),
        jmp_imm(BPF_JEQ, r0, 0, 4),
        ldx_mem(BPF_W, r1, r6, 0),  // __sk_buff.len
        atomic_add(BPF_DW, r0, r1, 0),
        mov64_imm(r1, 1),
        atomic_add(BPF_DW, r0, r1, 8),
        mov64_imm(r0, 1),
        exit(),
    };
}

// sock_ops: adds `inc` to the u64 at key = the callback's op (0..15) of an array; returns 1.
inline std::vector<bpf_insn> count_sock_ops_program(int map_fd, int32_t inc) {
    auto m = ld_map_fd(r1, map_fd);
    return {
        ldx_mem(BPF_W, r2, r1, 0),  // bpf_sock_ops.op
        jmp_imm(BPF_JGT, r2, 15, 9),
        stx_mem(BPF_W, r10, r2, -4),
        mov64_reg(r2, r10),
        alu64_imm(BPF_ADD, r2, -4),
        m.lo,
        m.hi,
        call(BPF_FUNC_map_lookup_elem),
        jmp_imm(BPF_JEQ, r0, 0, 2),
        mov64_imm(r1, inc),
        atomic_add(BPF_DW, r0, r1, 0),
        mov64_imm(r0, 1),
        exit(),
    };
}

// cgroup/setsockopt: setsockopt(SOL_IPV6, IPV6_TCLASS) succeeds and does nothing
// (optlen = -1 skips the kernel's handler); every other option passes to the kernel.
inline std::vector<bpf_insn> tclass_lock_program() {
    return {
        ldx_mem(BPF_W, r2, r1, 24),  // bpf_sockopt.level
        jmp_imm(BPF_JNE, r2, 41 /* SOL_IPV6 */, 4),
        ldx_mem(BPF_W, r2, r1, 28),  // bpf_sockopt.optname
        jmp_imm(BPF_JNE, r2, 67 /* IPV6_TCLASS */, 2),
        mov64_imm(r2, -1),
        stx_mem(BPF_W, r1, r2, 32),  // bpf_sockopt.optlen
        mov64_imm(r0, 1),
        exit(),
    };
}

// socket filter: returns the u32 at key 0 of an array (0 if the lookup fails).
inline std::vector<bpf_insn> read_array_program(int map_fd) {
    return at_key0(map_fd, {
                               jmp_imm(BPF_JEQ, r0, 0, 2),
                               ldx_mem(BPF_W, r0, r0, 0),
                               exit(),
                               mov64_imm(r0, 0),
                               exit(),
                           });
}

}  // namespace ebpf::test
