// A tiny BPF instruction builder for hand-assembled programs and tests (layer: pure).
#pragma once

#include <linux/bpf.h>

#include <cstdint>

namespace ebpf::insn {

// Registers by their ABI names.
enum reg : uint8_t { r0 = 0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10 };

constexpr bpf_insn make(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

// dst = imm (64-bit, sign-extended).
constexpr bpf_insn mov64_imm(reg dst, int32_t imm) {
    return make(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
}
// dst = src (64-bit).
constexpr bpf_insn mov64_reg(reg dst, reg src) {
    return make(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}
// dst op= imm (64-bit), op one of BPF_ADD, BPF_SUB, BPF_AND, BPF_LSH, ...
constexpr bpf_insn alu64_imm(uint8_t op, reg dst, int32_t imm) {
    return make(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm);
}
// dst op= src (64-bit).
constexpr bpf_insn alu64_reg(uint8_t op, reg dst, reg src) {
    return make(BPF_ALU64 | op | BPF_X, dst, src, 0, 0);
}
// dst = *(size*)(src + off), size one of BPF_B, BPF_H, BPF_W, BPF_DW.
constexpr bpf_insn ldx_mem(uint8_t size, reg dst, reg src, int16_t off) {
    return make(BPF_LDX | size | BPF_MEM, dst, src, off, 0);
}
// *(size*)(dst + off) = src.
constexpr bpf_insn stx_mem(uint8_t size, reg dst, reg src, int16_t off) {
    return make(BPF_STX | size | BPF_MEM, dst, src, off, 0);
}
// *(size*)(dst + off) = imm.
constexpr bpf_insn st_mem(uint8_t size, reg dst, int16_t off, int32_t imm) {
    return make(BPF_ST | size | BPF_MEM, dst, 0, off, imm);
}
// Atomically *(size*)(dst + off) += src (BPF_W or BPF_DW).
constexpr bpf_insn atomic_add(uint8_t size, reg dst, reg src, int16_t off) {
    return make(BPF_STX | size | BPF_ATOMIC, dst, src, off, BPF_ADD);
}
// if (dst op imm) goto pc + 1 + off, op one of BPF_JEQ, BPF_JNE, BPF_JGT, ...
constexpr bpf_insn jmp_imm(uint8_t op, reg dst, int32_t imm, int16_t off) {
    return make(BPF_JMP | op | BPF_K, dst, 0, off, imm);
}
// if (dst op src) goto pc + 1 + off.
constexpr bpf_insn jmp_reg(uint8_t op, reg dst, reg src, int16_t off) {
    return make(BPF_JMP | op | BPF_X, dst, src, off, 0);
}
// goto pc + 1 + off.
constexpr bpf_insn ja(int16_t off) {
    return make(BPF_JMP | BPF_JA, 0, 0, off, 0);
}
// Calls helper `id` (enum bpf_func_id).
constexpr bpf_insn call(int32_t id) {
    return make(BPF_JMP | BPF_CALL, 0, 0, 0, id);
}
constexpr bpf_insn exit() {
    return make(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

// The two halves of a 64-bit load: use ld_imm64_lo and ld_imm64_hi together.
constexpr bpf_insn ld_imm64_lo(reg dst, uint8_t src, int32_t lo) {
    return make(BPF_LD | BPF_DW | BPF_IMM, dst, src, 0, lo);
}
constexpr bpf_insn ld_imm64_hi(int32_t hi) {
    return make(0, 0, 0, 0, hi);
}

// dst = the map with fd `map_fd` (two instructions: write both).
struct ld_map_fd_pair {
    bpf_insn lo, hi;
};
constexpr ld_map_fd_pair ld_map_fd(reg dst, int map_fd) {
    return {ld_imm64_lo(dst, BPF_PSEUDO_MAP_FD, map_fd), ld_imm64_hi(0)};
}

}  // namespace ebpf::insn
