// ebpf::elf::file: the sections, symbols and relocations of a BPF ELF object, read with libelf
// from memory; the only header that includes libelf (layer: pure).
#pragma once

#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ebpf/base/result.hpp"

namespace ebpf::elf {

struct section {
    uint32_t index = 0;
    std::string name;
    uint32_t type = 0;  // SHT_*
    uint64_t flags = 0;
    uint32_t link = 0;
    uint32_t info = 0;
    uint64_t size = 0;
    uint64_t align = 0;
    std::span<const std::byte> data;  // empty for SHT_NOBITS
};

struct symbol {
    uint32_t index = 0;
    std::string name;
    uint64_t value = 0;
    uint64_t size = 0;
    uint16_t shndx = 0;
    uint8_t bind = 0;  // STB_*
    uint8_t type = 0;  // STT_*
    uint8_t visibility = 0;
};

struct relocation {
    uint64_t offset = 0;  // in the target section
    uint32_t symbol = 0;
    uint32_t type = 0;  // R_BPF_*
};

// A parsed object. It owns a copy of the bytes; every span points into it.
class file {
  public:
    file() = default;
    file(file&&) noexcept = default;
    file& operator=(file&&) noexcept = default;

    // Reads an object from memory (copied). Checks that it is a 64-bit little-endian BPF
    // ELF and that every section, symbol and relocation lies inside the file.
    static result<file> parse(std::span<const std::byte> bytes) {
        file f;
        f.bytes_.reset(new std::byte[bytes.size() ? bytes.size() : 1]);
        if (!bytes.empty()) {  // an empty span may hold a null pointer, which memcpy must not get
            std::memcpy(f.bytes_.get(), bytes.data(), bytes.size());
        }
        f.size_ = bytes.size();
        EBPF_TRY(f.read());
        return f;
    }

    // Reads an object from a file.
    static result<file> open(const std::string& path) {
        FILE* fp = std::fopen(path.c_str(), "rbe");
        if (!fp) {
            return errno_error("open " + path);
        }
        std::vector<std::byte> buf;
        std::byte chunk[65536];
        size_t n;
        while ((n = std::fread(chunk, 1, sizeof chunk, fp)) > 0) {
            buf.insert(buf.end(), chunk, chunk + n);
        }
        const bool failed = std::ferror(fp);
        std::fclose(fp);
        if (failed) {
            return error(EIO, "read " + path);
        }
        auto f = parse(buf);
        if (!f) {
            return std::move(f).error().context(path);
        }
        return f;
    }

    const std::vector<section>& sections() const { return sections_; }
    const std::vector<symbol>& symbols() const { return symbols_; }
    // Returns the relocations that apply to section `target` (by section index).
    std::span<const relocation> relocations(uint32_t target) const {
        for (const auto& r : relocs_) {
            if (r.target == target) {
                return r.entries;
            }
        }
        return {};
    }
    const section* find_section(std::string_view name) const {
        for (const auto& s : sections_) {
            if (s.name == name) {
                return &s;
            }
        }
        return nullptr;
    }
    const section* section_at(uint32_t index) const {
        return index < sections_.size() && sections_[index].index == index ? &sections_[index]
                                                                           : nullptr;
    }

  private:
    struct elf_closer {
        void operator()(Elf* e) const { elf_end(e); }
    };
    struct reloc_section {
        uint32_t target;
        std::vector<relocation> entries;
    };

    error bad(const std::string& what) const { return error(EINVAL, "read ELF", what); }

    result<void> read() {
        if (elf_version(EV_CURRENT) == EV_NONE) {
            return error(EINVAL, "libelf", elf_errmsg(-1));
        }
        std::unique_ptr<Elf, elf_closer> e(
            elf_memory(reinterpret_cast<char*>(bytes_.get()), size_));
        if (!e || elf_kind(e.get()) != ELF_K_ELF) {
            return bad("not an ELF file");
        }
        GElf_Ehdr eh;
        if (!gelf_getehdr(e.get(), &eh)) {
            return bad(std::string("no ELF header: ") + elf_errmsg(-1));
        }
        if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
            return bad("not a 64-bit ELF object");
        }
        if (eh.e_ident[EI_DATA] != ELFDATA2LSB) {
            return bad("big-endian objects are not supported");
        }
        if (eh.e_machine != EM_BPF) {
            return bad("machine " + std::to_string(eh.e_machine) + " is not BPF (247)");
        }
        size_t shstrndx = 0;
        if (elf_getshdrstrndx(e.get(), &shstrndx) != 0) {
            return bad(std::string("no section name table: ") + elf_errmsg(-1));
        }
        size_t count = 0;
        if (elf_getshdrnum(e.get(), &count) != 0) {
            return bad(std::string("no section count: ") + elf_errmsg(-1));
        }
        // libelf takes a section header table past the end (a truncated object) for none at all.
        const uint64_t table =
            uint64_t(std::max<size_t>({count, eh.e_shnum, 1})) * sizeof(Elf64_Shdr);
        if (eh.e_shoff != 0 && (eh.e_shoff > size_ || table > size_ - eh.e_shoff)) {
            return bad("section header table (" + std::to_string(table) + " bytes at offset " +
                       std::to_string(eh.e_shoff) + ") lies outside the file (" +
                       std::to_string(size_) + " bytes)");
        }
        sections_.resize(count);
        const section* symtab = nullptr;
        std::vector<uint32_t> rel_sections;
        for (Elf_Scn* scn = elf_nextscn(e.get(), nullptr); scn; scn = elf_nextscn(e.get(), scn)) {
            const size_t idx = elf_ndxscn(scn);
            GElf_Shdr sh;
            if (!gelf_getshdr(scn, &sh) || idx >= count) {
                return bad("section " + std::to_string(idx) + ": bad header");
            }
            section& s = sections_[idx];
            s.index = uint32_t(idx);
            const char* name = elf_strptr(e.get(), shstrndx, sh.sh_name);
            if (!name) {
                return bad("section " + std::to_string(idx) + ": name offset " +
                           std::to_string(sh.sh_name) + " is outside the name table");
            }
            s.name = name;
            s.type = sh.sh_type;
            s.flags = sh.sh_flags;
            s.link = sh.sh_link;
            s.info = sh.sh_info;
            s.size = sh.sh_size;
            s.align = sh.sh_addralign;
            if (sh.sh_type != SHT_NOBITS && sh.sh_type != SHT_NULL && sh.sh_size > 0) {
                if (sh.sh_offset > size_ || sh.sh_size > size_ - sh.sh_offset) {
                    return bad("section " + s.name + " (" + std::to_string(idx) +
                               "): its data lies outside the file");
                }
                s.data = {bytes_.get() + sh.sh_offset, size_t(sh.sh_size)};
            }
            if (sh.sh_type == SHT_SYMTAB) {
                symtab = &s;
            } else if (sh.sh_type == SHT_REL) {
                rel_sections.push_back(uint32_t(idx));
            }
        }
        if (symtab) {
            EBPF_TRY(read_symbols(*symtab));
        }
        for (uint32_t idx : rel_sections) {
            EBPF_TRY(read_relocations(sections_[idx]));
        }
        return {};
    }

    result<void> read_symbols(const section& symtab) {
        const section* strtab = section_at(symtab.link);
        if (!strtab || strtab->type != SHT_STRTAB) {
            return bad("symbol table: its string table (section " + std::to_string(symtab.link) +
                       ") is missing");
        }
        const size_t n = symtab.data.size() / sizeof(Elf64_Sym);
        symbols_.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            Elf64_Sym raw;
            std::memcpy(&raw, symtab.data.data() + i * sizeof raw, sizeof raw);
            symbol s;
            s.index = uint32_t(i);
            if (raw.st_name >= strtab->data.size()) {
                if (raw.st_name != 0 || !strtab->data.empty()) {
                    return bad("symbol " + std::to_string(i) + ": name offset " +
                               std::to_string(raw.st_name) + " is outside the string table");
                }
            } else {
                const char* p = reinterpret_cast<const char*>(strtab->data.data()) + raw.st_name;
                s.name = std::string(p, strnlen(p, strtab->data.size() - raw.st_name));
            }
            s.value = raw.st_value;
            s.size = raw.st_size;
            s.shndx = raw.st_shndx;
            s.bind = uint8_t(GELF_ST_BIND(raw.st_info));
            s.type = uint8_t(GELF_ST_TYPE(raw.st_info));
            s.visibility = uint8_t(GELF_ST_VISIBILITY(raw.st_other));
            if (s.shndx != SHN_UNDEF && s.shndx < SHN_LORESERVE) {
                const section* in = section_at(s.shndx);
                if (!in) {
                    return bad("symbol " + s.name + ": section " + std::to_string(s.shndx) +
                               " does not exist");
                }
                if (s.value > in->size || s.size > in->size - s.value) {
                    return bad("symbol " + s.name + " (offset " + std::to_string(s.value) +
                               ", size " + std::to_string(s.size) + ") lies outside section " +
                               in->name + " (" + std::to_string(in->size) + " bytes)");
                }
            }
            symbols_.push_back(std::move(s));
        }
        return {};
    }

    result<void> read_relocations(const section& rel) {
        const section* target = section_at(rel.info);
        if (!target) {
            return bad("relocations " + rel.name + ": target section " + std::to_string(rel.info) +
                       " does not exist");
        }
        reloc_section out{rel.info, {}};
        const size_t n = rel.data.size() / sizeof(Elf64_Rel);
        out.entries.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            Elf64_Rel raw;
            std::memcpy(&raw, rel.data.data() + i * sizeof raw, sizeof raw);
            relocation r{raw.r_offset, uint32_t(ELF64_R_SYM(raw.r_info)),
                         uint32_t(ELF64_R_TYPE(raw.r_info))};
            if (r.symbol >= symbols_.size()) {
                return bad("relocation " + std::to_string(i) + " in " + rel.name + ": symbol " +
                           std::to_string(r.symbol) + " does not exist");
            }
            if (r.offset >= target->size) {
                return bad("relocation " + std::to_string(i) + " in " + rel.name + ": offset " +
                           std::to_string(r.offset) + " is outside " + target->name + " (" +
                           std::to_string(target->size) + " bytes)");
            }
            out.entries.push_back(r);
        }
        relocs_.push_back(std::move(out));
        return {};
    }

    std::unique_ptr<std::byte[]> bytes_;
    size_t size_ = 0;
    std::vector<section> sections_;
    std::vector<symbol> symbols_;
    std::vector<reloc_section> relocs_;
};

}  // namespace ebpf::elf
