// ebpf::map_spec and ebpf::program_spec: kernel-free blueprints of a collection's maps and
// programs, as read from an object (layer: pure).
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ebpf/btf/ext.hpp"

namespace ebpf {

// libbpf's pinning values for BTF-defined maps.
inline constexpr uint32_t pin_none = 0;
inline constexpr uint32_t pin_by_name = 1;

// What kind of data a map holds when it stands for a section of global variables.
enum class data_kind : uint8_t { none, data, rodata, bss, kconfig };

// A map to be created.
struct map_spec {
    std::string name;
    uint32_t type = 0;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t flags = 0;
    uint32_t pinning = pin_none;
    uint32_t numa_node = 0;
    uint64_t map_extra = 0;
    // Types of the key and value in the collection's BTF (0: none).
    uint32_t btf_key_type_id = 0;
    uint32_t btf_value_type_id = 0;
    // For maps of maps: the template every inner map follows.
    std::shared_ptr<map_spec> inner;
    // Static initial values of maps of maps and program arrays: slot -> map or program name.
    std::vector<std::pair<uint32_t, std::string>> init;
    // Global data: the section's initial bytes (empty for .bss), the map's single value.
    data_kind data = data_kind::none;
    std::vector<std::byte> contents;
    // The ELF section the map came from ("maps", ".maps", ".data", ...).
    std::string section;
};

// What an instruction refers to symbolically, resolved when the collection is loaded.
struct insn_ref {
    enum class kind : uint8_t {
        map_fd,     // ld_imm64 of a map
        map_value,  // ld_imm64 of an address inside a map's value (global data)
        kconfig,    // ld_imm64 of a .kconfig extern (a map value once the values are known)
        ksym,       // ld_imm64 of a typed __ksym variable (a kernel BTF id)
        kfunc,      // call of a kernel function (a kernel BTF id)
    };
    uint32_t insn = 0;  // index into the program's instructions
    kind what = kind::map_fd;
    std::string target;   // map, extern or function name
    uint32_t offset = 0;  // map_value: byte offset into the value
};

// A program to be loaded: its own instructions followed by copies of every subprogram it
// calls, with calls, func_info and line_info already pointing at the copies.
struct program_spec {
    std::string name;
    std::string section;
    uint32_t type = 0;
    uint32_t expected_attach_type = 0;
    bool sleepable = false;
    std::string attach_to;  // function or tracepoint named by the section, if any
    bool autoload = true;   // false for sections marked with a leading '?'
    std::string license;
    uint32_t kern_version = 0;
    std::vector<bpf_insn> insns;
    std::vector<insn_ref> refs;
    // BTF.ext records with insn_off as an instruction index into insns.
    std::vector<btf::func_info> func_info;
    std::vector<btf::line_info> line_info;
    std::vector<btf::core_relo> core_relos;
};

}  // namespace ebpf
