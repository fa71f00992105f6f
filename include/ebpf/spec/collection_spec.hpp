// ebpf::collection_spec: everything an object file describes (maps, programs with their
// subprograms linked in, BTF, global variables), read from its ELF bytes the same way on every
// machine (layer: pure).
#pragma once

#include <linux/bpf.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/ext.hpp"
#include "ebpf/elf/elf_file.hpp"
#include "ebpf/spec/program_spec.hpp"
#include "ebpf/spec/section_names.hpp"

namespace ebpf {

// A global variable: where it lives in which data map.
struct variable_spec {
    std::string name;
    std::string map;  // the data map (section) that holds it
    uint32_t offset = 0;
    uint32_t size = 0;
    uint32_t btf_type_id = 0;  // the VAR's type in the collection's BTF
};

// An extern the loader must resolve: a .kconfig value or a kernel symbol.
struct extern_spec {
    std::string name;
    bool kconfig = false;  // else __ksym
    bool weak = false;
    uint32_t btf_type_id = 0;  // the VAR (or FUNC for a kfunc) in the collection's BTF
    uint32_t offset = 0;       // kconfig: byte offset in the .kconfig map's value
    uint32_t size = 0;         // kconfig: size of the value
};

class collection_spec {
  public:
    std::vector<map_spec> maps;
    std::vector<program_spec> programs;
    std::vector<variable_spec> variables;
    std::vector<extern_spec> externs;
    std::shared_ptr<const btf::spec> btf;  // null when the object has no .BTF
    std::string license;
    uint32_t kern_version = 0;

    // Reads an object from memory.
    static result<collection_spec> parse(std::span<const std::byte> bytes);
    // Reads an object file.
    static result<collection_spec> open(const std::string& path) {
        auto f = elf::file::open(path);
        if (!f) {
            return std::move(f).error();
        }
        auto c = from_elf(*f);
        if (!c) {
            return std::move(c).error().context(path);
        }
        return c;
    }
    static result<collection_spec> from_elf(const elf::file& f);

    map_spec* map(std::string_view name) {
        for (auto& m : maps) {
            if (m.name == name) {
                return &m;
            }
        }
        return nullptr;
    }
    const map_spec* map(std::string_view name) const {
        return const_cast<collection_spec*>(this)->map(name);
    }
    program_spec* program(std::string_view name) {
        for (auto& p : programs) {
            if (p.name == name) {
                return &p;
            }
        }
        return nullptr;
    }
    const variable_spec* variable(std::string_view name) const {
        for (const auto& v : variables) {
            if (v.name == name) {
                return &v;
            }
        }
        return nullptr;
    }

    // Returns the initial bytes of a global variable.
    result<std::span<const std::byte>> variable_value(std::string_view name) const {
        const variable_spec* v = variable(name);
        if (!v) {
            return error(ENOENT, "variable " + std::string(name), "no such global variable");
        }
        const map_spec* m = map(v->map);
        if (m->contents.empty()) {
            static const std::byte zeros[256] = {};
            if (v->size <= sizeof zeros) {
                return std::span<const std::byte>(zeros, v->size);
            }
        }
        if (m->contents.size() < size_t(v->offset) + v->size) {
            return error(EINVAL, "variable " + std::string(name), "outside its section");
        }
        return std::span<const std::byte>(m->contents.data() + v->offset, v->size);
    }

    // Sets a global variable's initial value before load (sizes must match exactly).
    result<void> set_variable(std::string_view name, std::span<const std::byte> value) {
        const variable_spec* v = variable(name);
        if (!v) {
            return error(ENOENT, "set variable " + std::string(name), "no such global variable");
        }
        if (value.size() != v->size) {
            return error(EINVAL, "set variable " + std::string(name),
                         std::to_string(value.size()) + " bytes given, the variable has " +
                             std::to_string(v->size));
        }
        map_spec* m = map(v->map);
        if (m->contents.size() < size_t(v->offset) + v->size) {
            m->contents.resize(m->value_size);  // .bss: zeros until set
        }
        std::memcpy(m->contents.data() + v->offset, value.data(), value.size());
        return {};
    }
    template <class T>
    result<void> set_variable(std::string_view name, const T& value) {
        static_assert(std::is_trivially_copyable_v<T>);
        return set_variable(name, std::span<const std::byte>(
                                      reinterpret_cast<const std::byte*>(&value), sizeof value));
    }
};

namespace detail {

inline bool is_ld_imm64(const bpf_insn& i) {
    return i.code == (BPF_LD | BPF_IMM | BPF_DW);
}
inline bool is_call(const bpf_insn& i) {
    return i.code == (BPF_JMP | BPF_CALL);
}

inline bool starts_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

// Which global-data kind a section name is, if any.
inline data_kind data_section_kind(std::string_view name) {
    if (name == ".data" || starts_with(name, ".data.")) {
        return data_kind::data;
    }
    if (name == ".rodata" || starts_with(name, ".rodata.")) {
        return data_kind::rodata;
    }
    if (name == ".bss" || starts_with(name, ".bss.")) {
        return data_kind::bss;
    }
    return data_kind::none;
}

// Reads an object into a collection_spec.
class object_reader {
  public:
    explicit object_reader(const elf::file& f) : f_(f) {}

    result<collection_spec> read() {
        EBPF_TRY(read_meta());
        EBPF_TRY(read_btf());
        EBPF_TRY(read_data_maps());
        EBPF_TRY(read_legacy_maps());
        EBPF_TRY(read_btf_maps());
        EBPF_TRY(read_externs());
        EBPF_TRY(read_functions());
        EBPF_TRY(read_relocations());
        EBPF_TRY(read_ext());
        EBPF_TRY(link_programs());
        return std::move(out_);
    }

  private:
    struct call_site {
        uint32_t insn;     // local index in the calling function
        uint32_t section;  // section of the target
        uint32_t target;   // instruction index in that section
    };
    struct function {
        std::string name;
        uint32_t section = 0;
        uint32_t start = 0;  // instruction index in the section
        std::vector<bpf_insn> insns;
        std::vector<insn_ref> refs;
        std::vector<call_site> calls;
        std::vector<btf::func_info> funcs;
        std::vector<btf::line_info> lines;
        std::vector<btf::core_relo> relos;
        bool is_program = false;
    };

    static error bad(std::string where, std::string what) {
        return error(EINVAL, std::move(where), std::move(what));
    }

    result<void> read_meta() {
        if (const elf::section* s = f_.find_section("license"); s && !s->data.empty()) {
            auto d = s->data;
            out_.license.assign(reinterpret_cast<const char*>(d.data()),
                                strnlen(reinterpret_cast<const char*>(d.data()), d.size()));
        }
        if (const elf::section* s = f_.find_section("version")) {
            if (s->data.size() != 4) {
                return bad("section version", "is not 4 bytes");
            }
            std::memcpy(&out_.kern_version, s->data.data(), 4);
        }
        return {};
    }

    result<void> read_btf() {
        const elf::section* s = f_.find_section(".BTF");
        if (!s) {
            return {};
        }
        auto b = btf::spec::parse(s->data);
        if (!b) {
            return std::move(b).error().context("section .BTF");
        }
        auto fixed = fixup_datasecs(*b);
        if (!fixed) {
            return std::move(fixed).error().context("section .BTF");
        }
        if (!fixed->empty()) {
            b = btf::spec::parse(std::move(*fixed));
            if (!b) {
                return std::move(b).error().context("section .BTF after fixing its DATASECs");
            }
        }
        out_.btf = std::make_shared<const btf::spec>(std::move(*b));
        if (const elf::section* e = f_.find_section(".BTF.ext")) {
            auto x = btf::ext::parse(e->data, *out_.btf);
            if (!x) {
                return std::move(x).error();
            }
            ext_ = std::move(*x);
        }
        return {};
    }

    // The compiler leaves a DATASEC's size and its variables' offsets to the loader: take them
    // from the ELF section and symbols, and sort the variables by offset as the kernel wants.
    // Returns the fixed bytes, or nothing when no change was needed.
    result<std::vector<std::byte>> fixup_datasecs(const btf::spec& b) const {
        std::vector<std::byte> raw(b.bytes().begin(), b.bytes().end());
        bool changed = false;
        for (uint32_t id = 1; id < b.count(); ++id) {
            btf::type t = b.get(id);
            if (t.kind() != BTF_KIND_DATASEC) {
                continue;
            }
            const std::string name(b.name(t));
            const elf::section* s = f_.find_section(name);
            if (!s) {
                continue;  // .kconfig, .ksyms: externs, laid out by the loader
            }
            const size_t at =
                size_t(reinterpret_cast<const std::byte*>(t.raw()) - b.bytes().data());
            auto* hdr = reinterpret_cast<btf_type*>(raw.data() + at);
            auto* vars = reinterpret_cast<btf_var_secinfo*>(hdr + 1);
            if (hdr->size != s->size) {
                hdr->size = uint32_t(s->size);
                changed = true;
            }
            for (uint16_t i = 0; i < t.vlen(); ++i) {
                btf::type var = b.get(vars[i].type);
                if (var.kind() != BTF_KIND_VAR) {
                    continue;
                }
                const std::string_view vname = b.name(var);
                const elf::symbol* sym = nullptr;
                for (const auto& cand : f_.symbols()) {
                    if (cand.shndx == s->index && cand.name == vname && cand.type == STT_OBJECT) {
                        sym = &cand;
                        break;
                    }
                }
                if (!sym) {
                    return bad("DATASEC " + name,
                               "variable " + std::string(vname) + " has no symbol in the section");
                }
                if (vars[i].offset != sym->value) {
                    vars[i].offset = uint32_t(sym->value);
                    changed = true;
                }
                if (vars[i].offset + uint64_t(vars[i].size) > s->size) {
                    return bad("DATASEC " + name,
                               "variable " + std::string(vname) + " lies outside the section");
                }
            }
            if (!std::is_sorted(vars, vars + t.vlen(),
                                [](const auto& x, const auto& y) { return x.offset < y.offset; })) {
                std::stable_sort(vars, vars + t.vlen(),
                                 [](const auto& x, const auto& y) { return x.offset < y.offset; });
                changed = true;
            }
        }
        if (!changed) {
            raw.clear();
        }
        return raw;
    }

    // The DATASEC of this name in the object's BTF, if any.
    std::optional<btf::type> datasec(std::string_view name) const {
        if (!out_.btf) {
            return std::nullopt;
        }
        auto ids = out_.btf->find(name, BTF_KIND_DATASEC);
        if (ids.empty()) {
            return std::nullopt;
        }
        return out_.btf->get(ids[0]);
    }

    result<void> read_data_maps() {
        for (const auto& s : f_.sections()) {
            const data_kind kind = data_section_kind(s.name);
            if (kind == data_kind::none || !(s.flags & SHF_ALLOC) || (s.flags & SHF_EXECINSTR)) {
                continue;
            }
            if (s.size == 0 || s.size > UINT32_MAX / 2) {
                continue;  // nothing to hold (or nonsense); references to it fail clearly
            }
            map_spec m;
            m.name = s.name.substr(0, BPF_OBJ_NAME_LEN - 1);
            m.section = s.name;
            m.type = BPF_MAP_TYPE_ARRAY;
            m.key_size = 4;
            m.value_size = uint32_t(s.size);
            m.max_entries = 1;
            m.data = kind;
            m.flags = BPF_F_MMAPABLE | (kind == data_kind::rodata ? BPF_F_RDONLY_PROG : 0);
            if (s.type != SHT_NOBITS) {
                m.contents.assign(s.data.begin(), s.data.end());
            }
            if (auto ds = datasec(s.name)) {
                m.btf_value_type_id = ds->id();
                for (const auto& v : ds->vars()) {
                    btf::type var = out_.btf->get(v.type);
                    if (var.kind() != BTF_KIND_VAR) {
                        continue;
                    }
                    if (uint64_t(v.offset) + v.size > s.size) {
                        return bad("section " + s.name, "variable " +
                                                            std::string(out_.btf->name(var)) +
                                                            " lies outside the section");
                    }
                    out_.variables.push_back(
                        {std::string(out_.btf->name(var)), m.name, v.offset, v.size, var.ref()});
                }
            }
            data_maps_[s.index] = m.name;
            out_.maps.push_back(std::move(m));
        }
        return {};
    }

    // The legacy "maps" section: struct bpf_map_def records, one per symbol.
    result<void> read_legacy_maps() {
        const elf::section* s = f_.find_section("maps");
        if (!s) {
            return {};
        }
        legacy_maps_ = s->index;
        std::vector<const elf::symbol*> syms;
        for (const auto& sym : f_.symbols()) {
            if (sym.shndx == s->index && sym.type != STT_SECTION && !sym.name.empty()) {
                syms.push_back(&sym);
            }
        }
        if (syms.empty()) {
            return {};
        }
        const size_t rec = s->data.size() / syms.size();
        if (rec < 20) {
            return bad("section maps", "records of " + std::to_string(rec) +
                                           " bytes are too small for a map definition");
        }
        for (const auto* sym : syms) {
            if (sym->value > s->data.size() || s->data.size() - sym->value < 20) {
                return bad("section maps", "map " + sym->name + " lies outside the section");
            }
            uint32_t def[5];
            std::memcpy(def, s->data.data() + sym->value, sizeof def);
            map_spec m;
            m.name = sym->name;
            m.section = "maps";
            m.type = def[0];
            m.key_size = def[1];
            m.value_size = def[2];
            m.max_entries = def[3];
            m.flags = def[4];
            // iproute2's extension: id, pinning (2 = global, taken as by-name), inner id/idx.
            if (rec >= 28 && s->data.size() - sym->value >= 28) {
                uint32_t pinning;
                std::memcpy(&pinning, s->data.data() + sym->value + 24, 4);
                m.pinning = pinning ? pin_by_name : pin_none;
            }
            out_.maps.push_back(std::move(m));
        }
        return {};
    }

    // Returns N from a __uint(name, N) member: a pointer to an array of N elements.
    result<uint32_t> uint_member(const btf::type& member_type, std::string_view map,
                                 std::string_view field) const {
        const btf::spec& b = *out_.btf;
        btf::type t = member_type;
        if (t.kind() != BTF_KIND_PTR) {
            return bad("map " + std::string(map), std::string(field) + " is not a __uint");
        }
        auto arr = b.skip_modifiers(t.ref());
        if (!arr || arr->kind() != BTF_KIND_ARRAY) {
            return bad("map " + std::string(map), std::string(field) + " is not a __uint");
        }
        return arr->array().nelems;
    }

    // Reads one BTF map definition (a struct of __uint/__type members) into m.
    result<void> read_btf_map_def(map_spec& m, const btf::type& def, bool inner) {
        const btf::spec& b = *out_.btf;
        if (!def.is_composite()) {
            return bad("map " + m.name, "its definition is not a struct");
        }
        for (const auto& mem : def.members()) {
            std::string_view field = b.str(mem.name_off);
            btf::type mt = b.get(mem.type);
            auto ctx = [&] {
                return "map " + m.name + ": " + std::string(field);
            };
            auto number = [&]() -> result<uint32_t> {
                auto mt2 = b.skip_modifiers(mem.type);
                if (!mt2) {
                    return std::move(mt2).error();
                }
                return uint_member(*mt2, m.name, field);
            };
            if (field == "type" || field == "max_entries" || field == "map_flags" ||
                field == "numa_node" || field == "pinning" || field == "key_size" ||
                field == "value_size" || field == "map_extra") {
                auto n = number();
                if (!n) {
                    return std::move(n).error();
                }
                if (field == "type") {
                    m.type = *n;
                } else if (field == "max_entries") {
                    m.max_entries = *n;
                } else if (field == "map_flags") {
                    m.flags = *n;
                } else if (field == "numa_node") {
                    m.numa_node = *n;
                } else if (field == "pinning") {
                    if (*n > pin_by_name) {
                        return bad(ctx(), "unknown pinning " + std::to_string(*n));
                    }
                    m.pinning = *n;
                } else if (field == "key_size") {
                    m.key_size = *n;
                } else if (field == "value_size") {
                    m.value_size = *n;
                } else {
                    m.map_extra = *n;
                }
            } else if (field == "key" || field == "value") {
                if (mt.kind() != BTF_KIND_PTR) {
                    return bad(ctx(), "is not a __type (a pointer)");
                }
                auto size = b.size_of(mt.ref());
                if (!size) {
                    return std::move(size).error().context(ctx());
                }
                if (field == "key") {
                    m.key_size = *size;
                    m.btf_key_type_id = mt.ref();
                } else {
                    m.value_size = *size;
                    m.btf_value_type_id = mt.ref();
                }
            } else if (field == "values") {
                // An array of pointers: to the inner map's definition (maps of maps) or to
                // functions (program arrays).
                auto arr = b.skip_modifiers(mem.type);
                if (!arr || arr->kind() != BTF_KIND_ARRAY) {
                    return bad(ctx(), "is not an array");
                }
                auto elem = b.skip_modifiers(arr->array().type);
                if (!elem || elem->kind() != BTF_KIND_PTR) {
                    return bad(ctx(), "is not an array of pointers");
                }
                auto target = b.skip_modifiers(elem->ref());
                if (!target) {
                    return std::move(target).error().context(ctx());
                }
                if (target->is_composite()) {
                    if (inner) {
                        return bad(ctx(), "maps of maps of maps are not supported");
                    }
                    auto in = std::make_shared<map_spec>();
                    in->name = m.name + ".inner";
                    in->section = m.section;
                    EBPF_TRY(read_btf_map_def(*in, *target, true));
                    m.inner = std::move(in);
                }
                values_offset_[m.name] =
                    b.get(mem.type).is_void() ? 0 : def.member_bit_offset(mem) / 8;
            } else {
                return bad("map " + m.name, "unknown field " + std::string(field));
            }
        }
        // Maps of maps keep 4-byte values (a map fd); so do program arrays.
        if (m.inner || m.type == BPF_MAP_TYPE_PROG_ARRAY) {
            m.value_size = 4;
            m.btf_key_type_id = m.btf_value_type_id = 0;
        }
        // Ring buffers take no key or value (a value type is documentation only), and perf
        // event arrays hold 4-byte fds whatever the declaration says.
        if (m.type == BPF_MAP_TYPE_RINGBUF || m.type == BPF_MAP_TYPE_USER_RINGBUF) {
            m.key_size = m.value_size = 0;
            m.btf_key_type_id = m.btf_value_type_id = 0;
        }
        if (m.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
            if (m.key_size == 0) {
                m.key_size = 4;
            }
            m.value_size = 4;
            m.btf_key_type_id = m.btf_value_type_id = 0;
        }
        return {};
    }

    result<void> read_btf_maps() {
        const elf::section* s = f_.find_section(".maps");
        if (!s) {
            return {};
        }
        btf_maps_ = s->index;
        auto ds = datasec(".maps");
        if (!ds) {
            return bad("section .maps", "the object has no BTF for it");
        }
        const btf::spec& b = *out_.btf;
        for (const auto& v : ds->vars()) {
            btf::type var = b.get(v.type);
            if (var.kind() != BTF_KIND_VAR) {
                return bad("section .maps",
                           "entry " + std::to_string(v.type) + " is not a variable");
            }
            map_spec m;
            m.name = std::string(b.name(var));
            m.section = ".maps";
            auto def = b.skip_modifiers(var.ref());
            if (!def) {
                return std::move(def).error().context("map " + m.name);
            }
            EBPF_TRY(read_btf_map_def(m, *def, false));
            btf_map_ranges_.push_back({v.offset, v.size, m.name});
            out_.maps.push_back(std::move(m));
        }
        // Static values: relocations in .maps at map offset + values + 8 * slot.
        for (const auto& r : f_.relocations(s->index)) {
            const elf::symbol& sym = f_.symbols()[r.symbol];
            const auto* range = map_range_at(r.offset);
            if (!range) {
                return bad("section .maps", "relocation at offset " + std::to_string(r.offset) +
                                                " is inside no map");
            }
            const uint32_t base = range->offset + values_offset_[range->name];
            if (r.offset < base || (r.offset - base) % 8 != 0) {
                return bad("map " + range->name, "relocation at offset " +
                                                     std::to_string(r.offset) +
                                                     " is not a slot of its values");
            }
            out_.map(range->name)->init.push_back({uint32_t((r.offset - base) / 8), sym.name});
        }
        return {};
    }

    struct map_range {
        uint32_t offset, size;
        std::string name;
    };
    const map_range* map_range_at(uint64_t off) const {
        for (const auto& r : btf_map_ranges_) {
            if (off >= r.offset && off < uint64_t(r.offset) + r.size) {
                return &r;
            }
        }
        return nullptr;
    }

    // Externs: undefined symbols, described by the .kconfig and .ksyms DATASECs.
    result<void> read_externs() {
        if (!out_.btf) {
            return {};
        }
        const btf::spec& b = *out_.btf;
        uint32_t kconfig_size = 0;
        if (auto ds = datasec(".kconfig")) {
            for (const auto& v : ds->vars()) {
                btf::type var = b.get(v.type);
                if (var.kind() != BTF_KIND_VAR) {
                    continue;
                }
                auto size = b.size_of(var.ref());
                if (!size) {
                    return std::move(size).error().context("extern " + std::string(b.name(var)));
                }
                // Kernel config values are numbers, booleans and short strings.
                if (*size == 0 || *size > 4096 || kconfig_size > 64 * 1024) {
                    return bad("extern " + std::string(b.name(var)),
                               "a .kconfig value of " + std::to_string(*size) +
                                   " bytes (at most 4096, 64 KiB in all)");
                }
                // Lay the values out one after another, each aligned to its size (up to 8).
                const uint32_t align = std::clamp<uint32_t>(*size, 1, 8);
                kconfig_size = (kconfig_size + align - 1) / align * align;
                extern_spec e{
                    std::string(b.name(var)), true, false, var.ref(), kconfig_size, *size};
                kconfig_size += *size;
                out_.externs.push_back(std::move(e));
            }
        }
        if (auto ds = datasec(".ksyms")) {
            for (const auto& v : ds->vars()) {
                btf::type t = b.get(v.type);
                if (t.kind() == BTF_KIND_VAR || t.kind() == BTF_KIND_FUNC) {
                    out_.externs.push_back({std::string(b.name(t)), false, false, t.id(), 0, 0});
                }
            }
        }
        // Weak externs default to zero when the kernel does not know them.
        for (auto& e : out_.externs) {
            for (const auto& sym : f_.symbols()) {
                if (sym.name == e.name && sym.shndx == SHN_UNDEF) {
                    e.weak = sym.bind == STB_WEAK;
                }
            }
        }
        if (kconfig_size > 0) {
            map_spec m;
            m.name = ".kconfig";
            m.section = ".kconfig";
            m.type = BPF_MAP_TYPE_ARRAY;
            m.key_size = 4;
            m.value_size = (kconfig_size + 7) / 8 * 8;
            m.max_entries = 1;
            m.flags = BPF_F_MMAPABLE | BPF_F_RDONLY_PROG;
            m.data = data_kind::kconfig;
            m.contents.assign(m.value_size, std::byte{0});
            out_.maps.push_back(std::move(m));
        }
        return {};
    }

    static bool is_code(const elf::section& s) {
        return s.type == SHT_PROGBITS && (s.flags & SHF_EXECINSTR) && s.size > 0;
    }

    result<void> read_functions() {
        for (const auto& s : f_.sections()) {
            if (!is_code(s)) {
                continue;
            }
            if (s.size % sizeof(bpf_insn) != 0) {
                return bad("section " + s.name, "size " + std::to_string(s.size) +
                                                    " is not a whole number of instructions");
            }
            const auto* insns = reinterpret_cast<const bpf_insn*>(s.data.data());
            const uint32_t count = uint32_t(s.size / sizeof(bpf_insn));
            std::vector<const elf::symbol*> syms;
            for (const auto& sym : f_.symbols()) {
                if (sym.shndx == s.index && sym.type == STT_FUNC) {
                    syms.push_back(&sym);
                }
            }
            std::sort(syms.begin(), syms.end(),
                      [](const auto* a, const auto* b) { return a->value < b->value; });
            if (syms.empty()) {
                // An old-style object: the whole section is one program named after it.
                function fn;
                fn.name = s.name;
                fn.section = s.index;
                fn.insns.assign(insns, insns + count);
                fn.is_program = s.name != ".text";
                functions_.push_back(std::move(fn));
                continue;
            }
            for (const auto* sym : syms) {
                if (sym->value % sizeof(bpf_insn) != 0 || sym->size % sizeof(bpf_insn) != 0 ||
                    sym->value > s.size || sym->size > s.size - sym->value || sym->size == 0) {
                    return bad("section " + s.name,
                               "function " + sym->name + " (offset " + std::to_string(sym->value) +
                                   ", size " + std::to_string(sym->size) +
                                   ") is not a run of whole instructions inside the section");
                }
                function fn;
                fn.name = sym->name;
                fn.section = s.index;
                fn.start = uint32_t(sym->value / sizeof(bpf_insn));
                fn.insns.assign(insns + fn.start, insns + fn.start + sym->size / sizeof(bpf_insn));
                fn.is_program = s.name != ".text";
                functions_.push_back(std::move(fn));
            }
        }
        return {};
    }

    // The function of a section that holds instruction `index`, or nullptr.
    function* function_at(uint32_t section, uint32_t index) {
        for (auto& fn : functions_) {
            if (fn.section == section && index >= fn.start && index < fn.start + fn.insns.size()) {
                return &fn;
            }
        }
        return nullptr;
    }

    result<void> read_relocations() {
        for (const auto& s : f_.sections()) {
            if (!is_code(s)) {
                continue;
            }
            std::vector<bool> relocated(s.size / sizeof(bpf_insn), false);
            size_t n = 0;
            for (const auto& r : f_.relocations(s.index)) {
                const size_t number = n++;
                auto where = [&] {
                    return "section " + s.name + ": relocation #" + std::to_string(number) +
                           " at offset " + std::to_string(r.offset);
                };
                if (r.offset % sizeof(bpf_insn) != 0) {
                    return bad(where(), "not at an instruction");
                }
                const uint32_t index = uint32_t(r.offset / sizeof(bpf_insn));
                function* fn = function_at(s.index, index);
                if (!fn) {
                    return bad(where(), "inside no function");
                }
                relocated[index] = true;
                EBPF_TRY_CTX(relocate(*fn, index - fn->start, f_.symbols()[r.symbol]), where());
            }
            // Calls between functions of one section may come without a relocation: the
            // compiler already wrote the relative offset.
            for (auto& fn : functions_) {
                if (fn.section != s.index) {
                    continue;
                }
                for (uint32_t i = 0; i < fn.insns.size(); ++i) {
                    const bpf_insn& in = fn.insns[i];
                    if (relocated[fn.start + i]) {
                        continue;
                    }
                    const bool call = is_call(in) && in.src_reg == BPF_PSEUDO_CALL;
                    const bool addr = is_ld_imm64(in) && in.src_reg == BPF_PSEUDO_FUNC;
                    if (call || addr) {
                        const int64_t target = int64_t(fn.start) + i + 1 + in.imm;
                        if (target < 0 || uint64_t(target) >= s.size / sizeof(bpf_insn)) {
                            return bad(
                                "section " + s.name + ": function " + fn.name,
                                "call at instruction " + std::to_string(i) + " leaves the section");
                        }
                        fn.calls.push_back({i, s.index, uint32_t(target)});
                    }
                }
            }
        }
        return {};
    }

    result<void> relocate(function& fn, uint32_t i, const elf::symbol& sym) {
        bpf_insn& in = fn.insns[i];
        if (is_ld_imm64(in)) {
            if (i + 1 >= fn.insns.size()) {
                return bad("instruction " + std::to_string(i), "ld_imm64 without its second half");
            }
            if (sym.shndx == SHN_UNDEF) {
                return extern_ref(fn, i, sym, false);
            }
            if (sym.shndx == legacy_maps_ || sym.shndx == btf_maps_) {
                std::string name = sym.name;
                if (sym.shndx == btf_maps_ && sym.type == STT_SECTION) {
                    const auto* r = map_range_at(uint64_t(in.imm));
                    if (!r) {
                        return bad("instruction " + std::to_string(i), "refers into no map");
                    }
                    name = r->name;
                }
                if (!out_.map(name)) {
                    return bad("instruction " + std::to_string(i), "no map " + name);
                }
                fn.refs.push_back({i, insn_ref::kind::map_fd, name, 0});
                in.imm = 0;
                return {};
            }
            if (auto it = data_maps_.find(sym.shndx); it != data_maps_.end()) {
                const uint64_t off = (sym.type == STT_SECTION ? 0 : sym.value) + uint32_t(in.imm);
                const map_spec* m = out_.map(it->second);
                if (off > m->value_size) {
                    return bad("instruction " + std::to_string(i),
                               "offset " + std::to_string(off) + " is outside " + it->second);
                }
                fn.refs.push_back({i, insn_ref::kind::map_value, it->second, uint32_t(off)});
                in.imm = 0;
                return {};
            }
            const elf::section* target = f_.section_at(sym.shndx);
            if (target && is_code(*target)) {
                // A function's address (a callback, e.g. for bpf_loop): the addend is in bytes.
                const uint64_t t =
                    sym.value / sizeof(bpf_insn) + uint64_t(uint32_t(in.imm)) / sizeof(bpf_insn);
                if (t >= target->size / sizeof(bpf_insn)) {
                    return bad("instruction " + std::to_string(i),
                               "callback address leaves section " + target->name);
                }
                in.src_reg = BPF_PSEUDO_FUNC;
                fn.insns[i + 1].imm = 0;
                fn.calls.push_back({i, sym.shndx, uint32_t(t)});
                return {};
            }
            return bad("instruction " + std::to_string(i),
                       "ld_imm64 of symbol " + sym.name + " in section " +
                           (target ? target->name : std::to_string(sym.shndx)) +
                           ", which is no map, data or function");
        }
        if (is_call(in)) {
            if (sym.shndx == SHN_UNDEF) {
                return extern_ref(fn, i, sym, true);
            }
            const elf::section* target = f_.section_at(sym.shndx);
            if (!target || !is_code(*target) || in.src_reg != BPF_PSEUDO_CALL) {
                return bad("instruction " + std::to_string(i),
                           "call of symbol " + sym.name + ", which is not a function");
            }
            const int64_t t = int64_t(sym.value / sizeof(bpf_insn)) + in.imm + 1;
            if (t < 0 || uint64_t(t) >= target->size / sizeof(bpf_insn)) {
                return bad("instruction " + std::to_string(i),
                           "call of " + sym.name + " leaves section " + target->name);
            }
            fn.calls.push_back({i, sym.shndx, uint32_t(t)});
            return {};
        }
        return bad("instruction " + std::to_string(i),
                   "relocation against " + sym.name + " on an instruction that takes none (code " +
                       std::to_string(in.code) + ")");
    }

    result<void> extern_ref(function& fn, uint32_t i, const elf::symbol& sym, bool call) {
        for (const auto& e : out_.externs) {
            if (e.name != sym.name) {
                continue;
            }
            if (call) {
                fn.refs.push_back({i, insn_ref::kind::kfunc, e.name, 0});
            } else {
                fn.refs.push_back(
                    {i, e.kconfig ? insn_ref::kind::kconfig : insn_ref::kind::ksym, e.name, 0});
            }
            return {};
        }
        return bad("instruction " + std::to_string(i),
                   "extern " + sym.name + " is neither in .kconfig nor in .ksyms");
    }

    result<void> read_ext() {
        for (const auto& entry : ext_.sections()) {
            // Named, not a structured binding: lambdas below capture them (clang < 16).
            const std::string& name = entry.first;
            const btf::ext_section& recs = entry.second;
            const elf::section* s = f_.find_section(name);
            if (!s || !is_code(*s)) {
                return bad(".BTF.ext", "records for section " + name + ", which holds no code");
            }
            auto place = [&](uint32_t off,
                             const char* what) -> result<std::pair<function*, uint32_t>> {
                if (off % sizeof(bpf_insn) != 0 || off >= s->size) {
                    return bad(".BTF.ext", std::string(what) + " of section " + name +
                                               " at offset " + std::to_string(off) +
                                               " is not an instruction of it");
                }
                const uint32_t index = off / sizeof(bpf_insn);
                function* fn = function_at(s->index, index);
                if (!fn) {
                    return bad(".BTF.ext", std::string(what) + " at offset " + std::to_string(off) +
                                               " of " + name + " is inside no function");
                }
                return std::pair{fn, index - fn->start};
            };
            for (auto rec : recs.funcs) {
                auto p = place(rec.insn_off, "func_info");
                if (!p) {
                    return std::move(p).error();
                }
                rec.insn_off = p->second;
                p->first->funcs.push_back(rec);
            }
            for (auto rec : recs.lines) {
                auto p = place(rec.insn_off, "line_info");
                if (!p) {
                    return std::move(p).error();
                }
                rec.insn_off = p->second;
                p->first->lines.push_back(rec);
            }
            for (auto rec : recs.relos) {
                auto p = place(rec.insn_off, "CO-RE relocation");
                if (!p) {
                    return std::move(p).error();
                }
                if (rec.type_id >= out_.btf->count()) {
                    return bad(".BTF.ext", "CO-RE relocation in " + name + " refers to type " +
                                               std::to_string(rec.type_id) +
                                               ", past the last type " +
                                               std::to_string(out_.btf->count() - 1));
                }
                rec.insn_off = p->second;
                p->first->relos.push_back(rec);
            }
        }
        return {};
    }

    result<void> link_programs() {
        for (size_t i = 0; i < functions_.size(); ++i) {
            if (!functions_[i].is_program) {
                continue;
            }
            const function& entry = functions_[i];
            const elf::section* sec = f_.section_at(entry.section);
            program_spec p;
            p.name = entry.name;
            std::string_view sname = sec->name;
            if (!sname.empty() && sname[0] == '?') {
                p.autoload = false;
                sname.remove_prefix(1);
            }
            p.section = sec->name;
            if (auto kind = classify_section(sname)) {
                p.type = kind->prog_type;
                p.expected_attach_type = kind->expected_attach_type;
                p.sleepable = kind->sleepable;
                p.attach_to = std::string(kind->attach_to);
            }
            p.license = out_.license;
            p.kern_version = out_.kern_version;
            EBPF_TRY_CTX(link(p, i), "program " + p.name);
            out_.programs.push_back(std::move(p));
        }
        return {};
    }

    // Appends `entry` and every function it reaches to p, fixing call offsets.
    result<void> link(program_spec& p, size_t entry) {
        std::map<size_t, uint32_t> placed;  // function -> its first instruction in p
        std::vector<size_t> queue{entry};
        placed[entry] = 0;
        for (size_t q = 0; q < queue.size(); ++q) {
            const function& fn = functions_[queue[q]];
            const uint32_t base = placed[queue[q]];
            if (p.insns.size() != base) {
                return bad("link", "internal: function placed out of order");
            }
            p.insns.insert(p.insns.end(), fn.insns.begin(), fn.insns.end());
            for (auto r : fn.refs) {
                r.insn += base;
                p.refs.push_back(std::move(r));
            }
            for (auto rec : fn.funcs) {
                rec.insn_off += base;
                p.func_info.push_back(rec);
            }
            for (auto rec : fn.lines) {
                rec.insn_off += base;
                p.line_info.push_back(rec);
            }
            for (auto rec : fn.relos) {
                rec.insn_off += base;
                p.core_relos.push_back(rec);
            }
            // Placing a callee appends it after everything placed so far.
            for (const auto& c : fn.calls) {
                function* target = function_at(c.section, c.target);
                if (!target) {
                    return bad("function " + fn.name, "call at instruction " +
                                                          std::to_string(c.insn) +
                                                          " lands inside no function");
                }
                const size_t t = size_t(target - functions_.data());
                if (!placed.count(t)) {
                    uint32_t end =
                        placed[queue.back()] + uint32_t(functions_[queue.back()].insns.size());
                    placed[t] = end;
                    queue.push_back(t);
                }
                const int64_t dest = int64_t(placed[t]) + (c.target - target->start);
                const int64_t from = int64_t(base) + c.insn + 1;
                p.insns[base + c.insn].imm = int32_t(dest - from);
            }
        }
        return {};
    }

    const elf::file& f_;
    collection_spec out_;
    btf::ext ext_;
    std::vector<function> functions_;
    std::map<uint32_t, std::string> data_maps_;  // section index -> map name
    uint32_t legacy_maps_ = UINT32_MAX;
    uint32_t btf_maps_ = UINT32_MAX;
    std::vector<map_range> btf_map_ranges_;
    std::map<std::string, uint32_t> values_offset_;
};

}  // namespace detail

inline result<collection_spec> collection_spec::from_elf(const elf::file& f) {
    return detail::object_reader(f).read();
}

inline result<collection_spec> collection_spec::parse(std::span<const std::byte> bytes) {
    auto f = elf::file::parse(bytes);
    if (!f) {
        return std::move(f).error();
    }
    return from_elf(*f);
}

}  // namespace ebpf
