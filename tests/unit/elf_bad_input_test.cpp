// Kernel-free tests that the object reader turns damaged objects into clear errors and never
// crashes: every truncation, pseudo-random bit flips, and one malformation per check, each made
// by patching the bytes of a real object (the corpus and the project's own test object).
#include <elf.h>
#include <gtest/gtest.h>
#include <linux/btf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ebpf/btf/btf.hpp"
#include "ebpf/spec/collection_spec.hpp"

namespace ebpf {
namespace {

using bytes = std::vector<std::byte>;

bytes read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (chars.empty()) {
        ADD_FAILURE() << "cannot read " << path;
        return {};
    }
    bytes out(chars.size());
    std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

// The project's test object first, then the corpus objects in name order.
std::vector<std::string> object_paths() {
    std::vector<std::string> corpus;
    for (const auto& e : std::filesystem::directory_iterator(EBPF_CORPUS_DIR)) {
        const auto ext = e.path().extension();
        if (e.is_regular_file() && (ext == ".elf" || ext == ".o")) {
            corpus.push_back(e.path().string());
        }
    }
    std::sort(corpus.begin(), corpus.end());
    corpus.insert(corpus.begin(), EBPF_TEST_OBJECT_LOADER);
    return corpus;
}

template <class T>
T load(const bytes& b, size_t off) {
    T v{};
    if (off <= b.size() && sizeof v <= b.size() - off) {
        std::memcpy(&v, b.data() + off, sizeof v);
    } else {
        ADD_FAILURE() << "test reads " << sizeof v << " bytes at " << off << " of " << b.size();
    }
    return v;
}

template <class T>
void store(bytes& b, size_t off, const T& v) {
    if (off <= b.size() && sizeof v <= b.size() - off) {
        std::memcpy(b.data() + off, &v, sizeof v);
    } else {
        ADD_FAILURE() << "test writes " << sizeof v << " bytes at " << off << " of " << b.size();
    }
}

// The .BTF.ext header as the compiler writes it (the CO-RE fields are there in every object
// the tests use).
struct ext_header {
    uint16_t magic;
    uint8_t version;
    uint8_t flags;
    uint32_t hdr_len;
    uint32_t func_info_off;
    uint32_t func_info_len;
    uint32_t line_info_off;
    uint32_t line_info_len;
    uint32_t core_relo_off;
    uint32_t core_relo_len;
};

// A 64-bit little-endian ELF object held as bytes, read and patched through <elf.h> structs.
struct elf_image {
    bytes b;

    Elf64_Ehdr ehdr() const { return load<Elf64_Ehdr>(b, 0); }
    size_t count() const { return ehdr().e_shnum; }
    // Returns where section header i lies in the file.
    size_t shdr_at(size_t i) const { return ehdr().e_shoff + i * sizeof(Elf64_Shdr); }
    Elf64_Shdr shdr(size_t i) const { return load<Elf64_Shdr>(b, shdr_at(i)); }
    void set_shdr(size_t i, const Elf64_Shdr& sh) { store(b, shdr_at(i), sh); }

    std::string name(size_t i) const {
        const Elf64_Shdr names = shdr(ehdr().e_shstrndx);
        const size_t at = names.sh_offset + shdr(i).sh_name;
        return at < b.size() ? cstr(at) : std::string();
    }
    // Returns the index of the named section, or 0 (with a test failure) when there is none.
    size_t find(std::string_view want) const {
        for (size_t i = 1; i < count(); ++i) {
            if (name(i) == want) {
                return i;
            }
        }
        ADD_FAILURE() << "no section " << want;
        return 0;
    }
    // Copies a section's data to the end of the file, `misalign` bytes past an 8-byte boundary,
    // and points its header there.
    void move_to_end(size_t i, size_t misalign) {
        Elf64_Shdr sh = shdr(i);
        const bytes data(b.begin() + sh.sh_offset, b.begin() + sh.sh_offset + sh.sh_size);
        sh.sh_offset = (b.size() + 7) / 8 * 8 + misalign;
        b.resize(sh.sh_offset);
        b.insert(b.end(), data.begin(), data.end());
        set_shdr(i, sh);
    }
    // Returns where the named section's data starts in the file.
    size_t data_at(std::string_view section) const { return shdr(find(section)).sh_offset; }

    // Returns where the named symbol's Elf64_Sym lies in the file (0 when there is none).
    size_t symbol_at(std::string_view want) const {
        const Elf64_Shdr symtab = shdr(find(".symtab"));
        const Elf64_Shdr strtab = shdr(symtab.sh_link);
        for (size_t at = symtab.sh_offset;
             at + sizeof(Elf64_Sym) <= symtab.sh_offset + symtab.sh_size; at += sizeof(Elf64_Sym)) {
            const auto sym = load<Elf64_Sym>(b, at);
            if (cstr(strtab.sh_offset + sym.st_name) == want) {
                return at;
            }
        }
        ADD_FAILURE() << "no symbol " << want;
        return 0;
    }
    // Returns where the first STT_OBJECT symbol of a section lies in the file, and its name.
    std::pair<size_t, std::string> first_object_in(std::string_view section) const {
        const size_t index = find(section);
        const Elf64_Shdr symtab = shdr(find(".symtab"));
        const Elf64_Shdr strtab = shdr(symtab.sh_link);
        for (size_t at = symtab.sh_offset;
             at + sizeof(Elf64_Sym) <= symtab.sh_offset + symtab.sh_size; at += sizeof(Elf64_Sym)) {
            const auto sym = load<Elf64_Sym>(b, at);
            if (sym.st_shndx == index && ELF64_ST_TYPE(sym.st_info) == STT_OBJECT) {
                return {at, cstr(strtab.sh_offset + sym.st_name)};
            }
        }
        return {0, {}};
    }
    size_t symbol_count() const { return shdr(find(".symtab")).sh_size / sizeof(Elf64_Sym); }

    // Returns where the first record of the first section of a .BTF.ext info block lies
    // (`block` 0: func_info, 1: line_info, 2: core_relo), and where that section's name
    // offset and record count are.
    struct ext_block {
        size_t rec_size_at, name_at, count_at, first_record_at;
        std::string section;  // the ELF section the first records are for
    };
    ext_block ext(int block) const {
        const size_t base = data_at(".BTF.ext");
        const auto h = load<ext_header>(b, base);
        const uint32_t off[] = {h.func_info_off, h.line_info_off, h.core_relo_off};
        const size_t start = base + h.hdr_len + off[block];
        const Elf64_Shdr sh = shdr(find(".BTF"));
        auto spec =
            btf::spec::parse(std::span<const std::byte>(b.data() + sh.sh_offset, sh.sh_size));
        std::string name;
        if (spec) {
            name = spec->str(load<uint32_t>(b, start + 4));
        }
        return {start, start + 4, start + 8, start + 12, name};
    }

    // Returns where type `id` of the .BTF section starts in the file.
    size_t btf_type_at(uint32_t id) const {
        const size_t base = data_at(".BTF");
        const Elf64_Shdr sh = shdr(find(".BTF"));
        auto spec = btf::spec::parse(std::span<const std::byte>(b.data() + base, sh.sh_size));
        if (!spec) {
            ADD_FAILURE() << spec.error().message();
            return 0;
        }
        const auto* raw = reinterpret_cast<const std::byte*>(spec->get(id).raw());
        return base + size_t(raw - spec->bytes().data());
    }

  private:
    std::string cstr(size_t at) const {
        std::string s;
        while (at < b.size() && b[at] != std::byte{0}) {
            s.push_back(char(b[at++]));
        }
        return s;
    }
};

elf_image loader_object() {
    return {read_file(EBPF_TEST_OBJECT_LOADER)};
}

// Reads what a user of a parsed spec would read, so that the sanitizers see any bad pointer.
void use(const collection_spec& c) {
    size_t sum = c.license.size();
    for (const auto& p : c.programs) {
        for (const auto& in : p.insns) {
            sum += in.code;
        }
        sum += p.refs.size() + p.func_info.size() + p.line_info.size() + p.core_relos.size();
    }
    for (const auto& m : c.maps) {
        sum += m.contents.size() + m.name.size();
    }
    for (const auto& v : c.variables) {
        if (auto value = c.variable_value(v.name)) {
            sum += value->size();
        }
    }
    if (c.btf) {
        for (uint32_t id = 1; id < c.btf->count(); ++id) {
            sum += c.btf->name(id).size();
            if (auto size = c.btf->size_of(id)) {
                sum += *size;
            }
        }
    }
    EXPECT_GE(sum, 0u);
}

// Returns the error message of parsing `b`, or "parsed" when it parses.
std::string parse_error(const bytes& b) {
    auto c = collection_spec::parse(b);
    if (c) {
        use(*c);
        return "parsed";
    }
    return c.error().message();
}

::testing::AssertionResult has(const std::string& message, std::string_view part) {
    if (message.find(part) != std::string::npos) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "\"" << message << "\" lacks \"" << part << "\"";
}

// Where the loaded part of an object ends: past this, a cut removes nothing the reader needs.
size_t needed_size(const elf_image& img) {
    const Elf64_Ehdr eh = img.ehdr();
    size_t end = eh.e_shoff + size_t(eh.e_shnum) * sizeof(Elf64_Shdr);
    for (size_t i = 1; i < img.count(); ++i) {
        const Elf64_Shdr sh = img.shdr(i);
        if (sh.sh_type != SHT_NOBITS) {
            end = std::max<size_t>(end, sh.sh_offset + sh.sh_size);
        }
    }
    return end;
}

// A small deterministic generator (splitmix64), the same on every platform.
struct splitmix {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
};

TEST(ElfBadInput, CorpusObjectsParse) {
    for (const auto& path : object_paths()) {
        auto c = collection_spec::parse(read_file(path));
        ASSERT_TRUE(c) << path << ": " << c.error().message();
        use(*c);
    }
}

TEST(ElfBadInput, EveryTruncationFailsOrLeavesTheLoadedPartWhole) {
    for (const auto& path : object_paths()) {
        const elf_image img{read_file(path)};
        const size_t size = img.b.size();
        const size_t needed = needed_size(img);
        size_t failures = 0;
        for (size_t n = 0; n < size; ++n) {
            auto c = collection_spec::parse(std::span<const std::byte>(img.b.data(), n));
            if (c) {
                EXPECT_GE(n, needed) << path << " cut to " << n << " bytes parsed";
                use(*c);
                continue;
            }
            ++failures;
            const std::string m = c.error().message();
            if (n < needed) {
                // The section headers come last: the ELF reader itself refuses the object.
                EXPECT_TRUE(has(m, "read ELF: ")) << path << " cut to " << n << " bytes";
            }
        }
        EXPECT_GT(failures, 0u) << path;
    }
}

TEST(ElfBadInput, BitFlipsParseOrFailNeverCrash) {
    splitmix rng{0x5eed};
    size_t parsed = 0, failed = 0;
    for (const auto& path : object_paths()) {
        const elf_image img{read_file(path)};
        // Half the flips anywhere, half in what the reader interprets: the ELF and section
        // headers, the symbol table, relocations and the starts of .BTF and .BTF.ext.
        std::vector<std::pair<size_t, size_t>> regions{{0, sizeof(Elf64_Ehdr)},
                                                       {img.shdr_at(0), img.shdr_at(img.count())}};
        for (size_t i = 1; i < img.count(); ++i) {
            const Elf64_Shdr sh = img.shdr(i);
            const std::string name = img.name(i);
            if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_REL) {
                regions.push_back({sh.sh_offset, sh.sh_offset + sh.sh_size});
            } else if (name == ".BTF" || name == ".BTF.ext") {
                regions.push_back({sh.sh_offset, sh.sh_offset + std::min<size_t>(sh.sh_size, 256)});
            }
        }
        for (int round = 0; round < 200; ++round) {
            elf_image flipped = img;
            size_t at;
            if (round % 2 == 0) {
                at = rng.below(flipped.b.size());
            } else {
                const auto [from, to] = regions[rng.below(regions.size())];
                at = from + rng.below(to - from);
            }
            // Mostly one bit; now and then a whole byte, to reach larger values.
            if (round % 8 == 7) {
                flipped.b[at] = std::byte(rng.next());
            } else {
                flipped.b[at] ^= std::byte(1u << rng.below(8));
            }
            auto c = collection_spec::parse(flipped.b);
            if (c) {
                use(*c);
                ++parsed;
            } else {
                EXPECT_FALSE(c.error().message().empty()) << path << " byte " << at;
                ++failed;
            }
        }
    }
    // Both outcomes happen: the flips reach checks, and harmless ones leave a valid object.
    EXPECT_GT(parsed, 0u);
    EXPECT_GT(failed, 0u);
}

TEST(ElfBadInput, NotAnElfFile) {
    EXPECT_TRUE(has(parse_error({}), "read ELF: not an ELF file"));
    const std::string text = "#!/bin/sh\necho this is no object\n";
    bytes script(text.size());
    std::memcpy(script.data(), text.data(), text.size());
    EXPECT_TRUE(has(parse_error(script), "read ELF: not an ELF file"));
    EXPECT_TRUE(has(parse_error(bytes(4096)), "read ELF: not an ELF file"));
}

TEST(ElfBadInput, WrongMachineIsNamed) {
    elf_image img = loader_object();
    store<Elf64_Half>(img.b, offsetof(Elf64_Ehdr, e_machine), EM_X86_64);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: machine 62 is not BPF (247)"));
}

TEST(ElfBadInput, ThirtyTwoBitObjectIsRejected) {
    elf_image img = loader_object();
    img.b[EI_CLASS] = std::byte{ELFCLASS32};
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: not a 64-bit ELF object"));
}

TEST(ElfBadInput, BigEndianObjectIsRejected) {
    elf_image img = loader_object();
    img.b[EI_DATA] = std::byte{ELFDATA2MSB};
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: big-endian objects are not supported"));
}

TEST(ElfBadInput, SectionHeadersPastTheEndAreRefused) {
    elf_image img = loader_object();
    const size_t size = img.b.size();
    const size_t table = img.count() * sizeof(Elf64_Shdr);
    store<Elf64_Off>(img.b, offsetof(Elf64_Ehdr, e_shoff), size - 8);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: section header table (" + std::to_string(table) +
                                            " bytes at offset " + std::to_string(size - 8) +
                                            ") lies outside the file (" + std::to_string(size) +
                                            " bytes)"));
    // libelf alone would take a table past the end for no table, and so a cut object for an
    // empty one.
    const elf_image good = loader_object();
    const bytes cut(good.b.begin(), good.b.end() - 1);
    EXPECT_TRUE(has(parse_error(cut), "read ELF: section header table ("));
}

TEST(ElfBadInput, SectionDataPastTheEndNamesTheSection) {
    const elf_image good = loader_object();
    const size_t license = good.find("license");
    const std::string where = "read ELF: section license (" + std::to_string(license) +
                              "): its data lies outside the file";

    elf_image late = good;
    Elf64_Shdr sh = late.shdr(license);
    sh.sh_offset = late.b.size() - 2;  // 4 bytes from here end 2 bytes past the end
    late.set_shdr(license, sh);
    EXPECT_TRUE(has(parse_error(late.b), where));

    elf_image huge = good;
    sh = huge.shdr(license);
    sh.sh_size = UINT64_MAX - 2;  // offset + size wraps around
    huge.set_shdr(license, sh);
    EXPECT_TRUE(has(parse_error(huge.b), where));

    elf_image far = good;
    sh = far.shdr(license);
    sh.sh_offset = UINT64_MAX - 1;
    far.set_shdr(license, sh);
    EXPECT_TRUE(has(parse_error(far.b), where));
}

TEST(ElfBadInput, SectionNameOutsideTheNameTable) {
    elf_image img = loader_object();
    const size_t license = img.find("license");
    Elf64_Shdr sh = img.shdr(license);
    sh.sh_name = 0x7fffff;
    img.set_shdr(license, sh);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: section " + std::to_string(license) +
                                            ": name offset 8388607 is outside the name table"));
}

TEST(ElfBadInput, RelocationOffsetOutsideItsSection) {
    elf_image img = loader_object();
    const size_t size = img.shdr(img.find("socket")).sh_size;
    store<Elf64_Addr>(img.b, img.data_at(".relsocket") + offsetof(Elf64_Rel, r_offset), size);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: relocation 0 in .relsocket: offset " +
                                            std::to_string(size) + " is outside socket (" +
                                            std::to_string(size) + " bytes)"));

    elf_image far = loader_object();
    store<Elf64_Addr>(far.b, far.data_at(".relsocket") + offsetof(Elf64_Rel, r_offset), UINT64_MAX);
    EXPECT_TRUE(has(parse_error(far.b),
                    "relocation 0 in .relsocket: offset 18446744073709551615 "
                    "is outside socket"));
}

TEST(ElfBadInput, RelocationBetweenInstructionsIsNamed) {
    elf_image img = loader_object();
    const size_t at = img.data_at(".relsocket") + offsetof(Elf64_Rel, r_offset);
    const auto offset = load<Elf64_Addr>(img.b, at);
    store<Elf64_Addr>(img.b, at, offset + 4);
    const std::string m = parse_error(img.b);
    EXPECT_TRUE(has(m, "section socket: relocation #"));
    EXPECT_TRUE(has(m, " at offset " + std::to_string(offset + 4) + ": not at an instruction"));
}

TEST(ElfBadInput, RelocationSymbolIndexOutOfRange) {
    elf_image img = loader_object();
    const size_t symbols = img.symbol_count();
    const size_t at = img.data_at(".relsocket") + offsetof(Elf64_Rel, r_info);
    const auto info = load<Elf64_Xword>(img.b, at);
    store<Elf64_Xword>(img.b, at, ELF64_R_INFO(symbols + 100, ELF64_R_TYPE(info)));
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: relocation 0 in .relsocket: symbol " +
                                            std::to_string(symbols + 100) + " does not exist"));
}

TEST(ElfBadInput, RelocationsForAMissingSection) {
    elf_image img = loader_object();
    const size_t rel = img.find(".relsocket");
    Elf64_Shdr sh = img.shdr(rel);
    sh.sh_info = 999;
    img.set_shdr(rel, sh);
    EXPECT_TRUE(has(parse_error(img.b),
                    "read ELF: relocations .relsocket: target section 999 does not exist"));
}

TEST(ElfBadInput, SymbolInANonExistentSection) {
    elf_image img = loader_object();
    const size_t at = img.symbol_at("globals") + offsetof(Elf64_Sym, st_shndx);
    const auto missing = Elf64_Section(img.count() + 3);
    store<Elf64_Section>(img.b, at, missing);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: symbol globals: section " +
                                            std::to_string(missing) + " does not exist"));
}

TEST(ElfBadInput, SymbolNameOutsideTheStringTable) {
    elf_image img = loader_object();
    const size_t sym = img.symbol_at("globals");
    const size_t index = (sym - img.data_at(".symtab")) / sizeof(Elf64_Sym);
    store<Elf64_Word>(img.b, sym + offsetof(Elf64_Sym, st_name), 0x7fffff);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: symbol " + std::to_string(index) +
                                            ": name offset 8388607 is outside the string table"));
}

TEST(ElfBadInput, SymbolTableWithoutItsStringTable) {
    elf_image img = loader_object();
    const size_t symtab = img.find(".symtab");
    Elf64_Shdr sh = img.shdr(symtab);
    sh.sh_link = img.find("license");
    img.set_shdr(symtab, sh);
    EXPECT_TRUE(has(parse_error(img.b), "read ELF: symbol table: its string table (section " +
                                            std::to_string(sh.sh_link) + ") is missing"));
}

TEST(ElfBadInput, ProgramSectionOfPartInstructions) {
    elf_image img = loader_object();
    const size_t socket = img.find("socket");
    Elf64_Shdr sh = img.shdr(socket);
    sh.sh_size += 4;  // half an instruction more: the bytes of the next section
    img.set_shdr(socket, sh);
    EXPECT_TRUE(has(parse_error(img.b), "section socket: size " + std::to_string(sh.sh_size) +
                                            " is not a whole number of instructions"));
}

TEST(ElfBadInput, SymbolOutsideItsSection) {
    const elf_image good = loader_object();
    const size_t socket = good.shdr(good.find("socket")).sh_size;
    const std::string outside =
        " lies outside section socket (" + std::to_string(socket) + " bytes)";

    elf_image late = good;
    const size_t sym = late.symbol_at("globals");
    const auto size = load<Elf64_Xword>(late.b, sym + offsetof(Elf64_Sym, st_size));
    store<Elf64_Addr>(late.b, sym + offsetof(Elf64_Sym, st_value), socket);
    EXPECT_TRUE(has(parse_error(late.b), "read ELF: symbol globals (offset " +
                                             std::to_string(socket) + ", size " +
                                             std::to_string(size) + ")" + outside));

    // Offset plus size wraps around to inside the section.
    elf_image wrap = good;
    store<Elf64_Addr>(wrap.b, sym + offsetof(Elf64_Sym, st_value), 8);
    store<Elf64_Xword>(wrap.b, sym + offsetof(Elf64_Sym, st_size), UINT64_MAX - 7);
    EXPECT_TRUE(has(parse_error(wrap.b),
                    "read ELF: symbol globals (offset 8, size "
                    "18446744073709551608)" +
                        outside));
}

TEST(ElfBadInput, LegacyMapSymbolOutsideItsSection) {
    elf_image img = loader_object();
    const auto [at, name] = img.first_object_in("maps");
    ASSERT_NE(at, 0u) << "the test object declares a map in the legacy maps section";
    // An offset that wraps around when the reader adds a record's size to it.
    store<Elf64_Addr>(img.b, at + offsetof(Elf64_Sym, st_value), UINT64_MAX - 7);
    EXPECT_TRUE(has(parse_error(img.b),
                    "read ELF: symbol " + name + " (offset 18446744073709551608, size "));
}

TEST(ElfBadInput, FunctionSymbolNotOnAnInstruction) {
    elf_image img = loader_object();
    const size_t sym = img.symbol_at("globals");
    const auto value = load<Elf64_Addr>(img.b, sym + offsetof(Elf64_Sym, st_value));
    store<Elf64_Addr>(img.b, sym + offsetof(Elf64_Sym, st_value), value + 4);
    store<Elf64_Xword>(img.b, sym + offsetof(Elf64_Sym, st_size), 8);
    EXPECT_TRUE(has(parse_error(img.b), "section socket: function globals (offset " +
                                            std::to_string(value + 4) +
                                            ", size 8) is not a run "
                                            "of whole instructions inside the section"));
}

TEST(ElfBadInput, BtfHeaderWithSectionsPastTheEnd) {
    elf_image img = loader_object();
    const size_t btf = img.data_at(".BTF");
    const size_t btf_size = img.shdr(img.find(".BTF")).sh_size;
    store<uint32_t>(img.b, btf + offsetof(btf_header, type_len), 0x10000000);
    EXPECT_TRUE(has(parse_error(img.b),
                    "section .BTF: parse BTF: header: type or string section past the end of " +
                        std::to_string(btf_size) + " bytes"));

    elf_image strings = loader_object();
    store<uint32_t>(strings.b, btf + offsetof(btf_header, str_off), UINT32_MAX);
    EXPECT_TRUE(has(parse_error(strings.b),
                    "section .BTF: parse BTF: header: type or string "
                    "section past the end"));

    elf_image header = loader_object();
    store<uint32_t>(header.b, btf + offsetof(btf_header, hdr_len), 0x10000);
    EXPECT_TRUE(has(parse_error(header.b), "section .BTF: parse BTF: header: header length 65536"));

    elf_image magic = loader_object();
    store<uint16_t>(magic.b, btf + offsetof(btf_header, magic), 0x1234);
    EXPECT_TRUE(has(parse_error(magic.b), "section .BTF: parse BTF: header: bad magic 0x1234"));
}

TEST(ElfBadInput, BtfHeaderLengthThatMisalignsTheTypesIsRefused) {
    // The .BTF section with one byte more of header: valid bytes, but every type misaligned.
    elf_image img = loader_object();
    const Elf64_Shdr sh = img.shdr(img.find(".BTF"));
    bytes btf(img.b.begin() + sh.sh_offset, img.b.begin() + sh.sh_offset + sh.sh_size);
    auto h = load<btf_header>(btf, 0);
    btf.insert(btf.begin() + h.hdr_len, std::byte{0});
    h.hdr_len += 1;
    store(btf, 0, h);
    auto spec = btf::spec::parse(btf);
    ASSERT_FALSE(spec);
    EXPECT_TRUE(has(spec.error().message(),
                    "parse BTF: header: header length 25 is not a "
                    "multiple of 4"));

    // The same section in the object.
    const size_t at = img.b.size();
    Elf64_Shdr moved = sh;
    moved.sh_offset = at;
    moved.sh_size = btf.size();
    img.b.insert(img.b.end(), btf.begin(), btf.end());
    img.set_shdr(img.find(".BTF"), moved);
    EXPECT_TRUE(has(parse_error(img.b), "section .BTF: parse BTF: header: header length 25"));
}

TEST(ElfBadInput, BtfTypeSectionEndingInsideAType) {
    elf_image img = loader_object();
    const size_t btf = img.data_at(".BTF");
    const auto len = load<uint32_t>(img.b, btf + offsetof(btf_header, type_len));
    store<uint32_t>(img.b, btf + offsetof(btf_header, type_len), len - 4);
    const std::string m = parse_error(img.b);
    EXPECT_TRUE(has(m, "section .BTF: parse BTF: type "));
    EXPECT_TRUE(has(m, ": truncated "));
}

TEST(ElfBadInput, BtfUnknownKindNamesTheType) {
    elf_image img = loader_object();
    const size_t t = img.btf_type_at(1);
    auto info = load<uint32_t>(img.b, t + offsetof(btf_type, info));
    info = (info & ~(0x1fu << 24)) | (31u << 24);
    store<uint32_t>(img.b, t + offsetof(btf_type, info), info);
    EXPECT_TRUE(
        has(parse_error(img.b), "section .BTF: parse BTF: type 1 at offset 0: unknown kind 31"));
}

TEST(ElfBadInput, BtfReferencePastTheLastType) {
    elf_image img = loader_object();
    auto c = collection_spec::parse(img.b);
    ASSERT_TRUE(c);
    const uint32_t key = c->map("counters")->btf_key_type_id;  // a typedef
    ASSERT_EQ(c->btf->get(key).kind(), uint32_t(BTF_KIND_TYPEDEF));
    store<uint32_t>(img.b, img.btf_type_at(key) + offsetof(btf_type, type), 0xfffff);
    EXPECT_TRUE(has(parse_error(img.b),
                    "section .BTF: parse BTF: type " + std::to_string(key) + " at offset "));
    EXPECT_TRUE(
        has(parse_error(img.b), "typedef target refers to type 1048575, past the last type " +
                                    std::to_string(c->btf->count() - 1)));
}

TEST(ElfBadInput, BtfNameOffsetPastTheStrings) {
    elf_image img = loader_object();
    store<uint32_t>(img.b, img.btf_type_at(1) + offsetof(btf_type, name_off), 0xfffffff);
    EXPECT_TRUE(has(parse_error(img.b),
                    "section .BTF: parse BTF: type 1 at offset 0: name offset 268435455 past the "
                    "string section"));
}

TEST(ElfBadInput, BtfTypeLoopIsAnErrorNotAHang) {
    elf_image img = loader_object();
    auto c = collection_spec::parse(img.b);
    ASSERT_TRUE(c);
    const uint32_t key = c->map("counters")->btf_key_type_id;
    ASSERT_EQ(c->btf->get(key).kind(), uint32_t(BTF_KIND_TYPEDEF));
    // The typedef now names itself: well-formed bytes, but resolving it never ends.
    store<uint32_t>(img.b, img.btf_type_at(key) + offsetof(btf_type, type), key);
    const std::string m = parse_error(img.b);
    EXPECT_TRUE(has(m, "map "));
    EXPECT_TRUE(has(m, "resolve BTF type " + std::to_string(key)));
    EXPECT_TRUE(has(m, "a type loop"));
}

TEST(ElfBadInput, BtfExtHeaderLength) {
    elf_image img = loader_object();
    store<uint32_t>(img.b, img.data_at(".BTF.ext") + offsetof(ext_header, hdr_len), 0x100000);
    EXPECT_TRUE(has(parse_error(img.b), "parse .BTF.ext: header: header length 1048576"));
}

TEST(ElfBadInput, BtfExtBlockPastTheEnd) {
    const elf_image good = loader_object();
    const size_t ext = good.data_at(".BTF.ext");
    const struct {
        size_t field;
        const char* name;
    } blocks[] = {{offsetof(ext_header, func_info_len), "func_info"},
                  {offsetof(ext_header, line_info_len), "line_info"},
                  {offsetof(ext_header, core_relo_len), "core_relo"}};
    for (const auto& block : blocks) {
        elf_image img = good;
        store<uint32_t>(img.b, ext + block.field, 0x100000);
        EXPECT_TRUE(has(parse_error(img.b), std::string("parse .BTF.ext: ") + block.name +
                                                ": section past the end of .BTF.ext"));
    }
    elf_image offset = good;
    store<uint32_t>(offset.b, ext + offsetof(ext_header, line_info_off), UINT32_MAX - 2);
    EXPECT_TRUE(
        has(parse_error(offset.b), "parse .BTF.ext: line_info: section past the end of .BTF.ext"));
}

TEST(ElfBadInput, BtfExtRecordsRunningPastTheEnd) {
    elf_image img = loader_object();
    const auto lines = img.ext(1);
    store<uint32_t>(img.b, lines.count_at, 0x1000000);
    EXPECT_TRUE(has(parse_error(img.b), "parse .BTF.ext: line_info: " + lines.section +
                                            ": 16777216 records run past the end"));

    elf_image wide = loader_object();
    const auto funcs = wide.ext(0);
    store<uint32_t>(wide.b, funcs.rec_size_at, 0x40000000);
    EXPECT_TRUE(has(parse_error(wide.b), "parse .BTF.ext: func_info: " + funcs.section + ": "));

    elf_image narrow = loader_object();
    store<uint32_t>(narrow.b, narrow.ext(2).rec_size_at, 6);
    EXPECT_TRUE(has(parse_error(narrow.b), "parse .BTF.ext: core_relo: record size 6"));
}

TEST(ElfBadInput, BtfExtSectionNameThatIsNoName) {
    elf_image img = loader_object();
    store<uint32_t>(img.b, img.ext(0).name_at, 0x7fffffff);
    EXPECT_TRUE(has(parse_error(img.b),
                    "parse .BTF.ext: func_info: section name offset "
                    "2147483647 is not a name"));
}

TEST(ElfBadInput, BtfExtRecordsForASectionWithoutCode) {
    elf_image img = loader_object();
    auto c = collection_spec::parse(img.b);
    ASSERT_TRUE(c);
    // Point the first func_info section's name at ".maps", a DATASEC's name in the strings.
    const uint32_t maps = c->btf->get(c->btf->find(".maps", BTF_KIND_DATASEC).at(0)).name_off();
    store<uint32_t>(img.b, img.ext(0).name_at, maps);
    EXPECT_TRUE(
        has(parse_error(img.b), ".BTF.ext: records for section .maps, which holds no code"));
}

TEST(ElfBadInput, BtfExtRecordOutsideItsSection) {
    const elf_image good = loader_object();
    const struct {
        int block;
        const char* name;
    } blocks[] = {{0, "func_info"}, {1, "line_info"}, {2, "CO-RE relocation"}};
    for (const auto& block : blocks) {
        elf_image img = good;
        const auto ext = img.ext(block.block);
        const size_t size = img.shdr(img.find(ext.section)).sh_size;
        store<uint32_t>(img.b, ext.first_record_at, uint32_t(size));
        EXPECT_TRUE(has(parse_error(img.b), std::string(".BTF.ext: ") + block.name +
                                                " of section " + ext.section + " at offset " +
                                                std::to_string(size) + " is not an instruction"));
    }
    elf_image unaligned = good;
    const auto lines = unaligned.ext(1);
    store<uint32_t>(unaligned.b, lines.first_record_at, 3);
    EXPECT_TRUE(has(parse_error(unaligned.b), ".BTF.ext: line_info of section " + lines.section +
                                                  " at offset 3 is not an instruction"));
}

TEST(ElfBadInput, CoreRelocationTypeIdPastTheEnd) {
    elf_image img = loader_object();
    // core_relo: insn_off, type_id, access_str_off, kind.
    const auto relos = img.ext(2);
    store<uint32_t>(img.b, relos.first_record_at + 4, 0xffff);
    EXPECT_TRUE(has(parse_error(img.b),
                    ".BTF.ext: CO-RE relocation in " + relos.section + " refers to type 65535"));
}

TEST(ElfBadInput, SectionsAtOddOffsetsReadTheSame) {
    // Nothing in ELF makes a section's data aligned in the file: the reader must not read
    // instructions, symbols, relocations or BTF in place from where they happen to lie.
    const elf_image good = loader_object();
    auto want = collection_spec::parse(good.b);
    ASSERT_TRUE(want);
    elf_image img = good;
    size_t misalign = 1;
    for (size_t i = 1; i < img.count(); ++i) {
        if (img.shdr(i).sh_type != SHT_NOBITS && img.shdr(i).sh_size > 0) {
            img.move_to_end(i, misalign);
            misalign = misalign % 7 + 1;
        }
    }
    auto got = collection_spec::parse(img.b);
    ASSERT_TRUE(got) << got.error().message();
    use(*got);
    ASSERT_EQ(got->programs.size(), want->programs.size());
    for (size_t i = 0; i < want->programs.size(); ++i) {
        const auto& a = want->programs[i];
        const auto& b = got->programs[i];
        EXPECT_EQ(a.name, b.name);
        ASSERT_EQ(a.insns.size(), b.insns.size()) << a.name;
        EXPECT_EQ(std::memcmp(a.insns.data(), b.insns.data(), a.insns.size() * sizeof(bpf_insn)), 0)
            << a.name;
    }
    EXPECT_EQ(got->maps.size(), want->maps.size());
    EXPECT_EQ(got->license, want->license);
}

// A section without data in the file has no data pointer: nothing may hand it to strnlen or
// memcpy (undefined behaviour that UBSan reports).
TEST(ElfBadInput, LicenseSectionWithoutData) {
    elf_image img = loader_object();
    const size_t license = img.find("license");
    Elf64_Shdr sh = img.shdr(license);
    sh.sh_type = SHT_NOBITS;  // its 4 bytes are zeros, not in the file
    img.set_shdr(license, sh);
    auto c = collection_spec::parse(img.b);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->license, "");
}

// A .kconfig extern whose BTF type claims 2 GiB is refused by name, not allocated.
TEST(ElfBadInput, HugeKconfigExtern) {
    elf_image img = loader_object();
    auto c = collection_spec::parse(img.b);
    ASSERT_TRUE(c);
    const extern_spec* kconfig = nullptr;
    for (const auto& e : c->externs) {
        if (e.kconfig) {
            kconfig = &e;
            break;
        }
    }
    ASSERT_NE(kconfig, nullptr) << "the test object reads a .kconfig value";
    // The array behind a map's __uint(max_entries, N), grown to 2 GiB of ints; the extern's
    // variable then takes it for its type.
    const map_spec& counters = *c->map("counters");
    uint32_t array = 0;
    for (uint32_t id = 1; id < c->btf->count() && !array; ++id) {
        const btf::type t = c->btf->get(id);
        if (t.kind() == BTF_KIND_ARRAY && t.array().nelems == counters.max_entries) {
            array = id;
        }
    }
    ASSERT_NE(array, 0u);
    store<uint32_t>(img.b, img.btf_type_at(array) + sizeof(btf_type) + offsetof(btf_array, nelems),
                    0x20000000);
    uint32_t var = 0;
    for (uint32_t id = 1; id < c->btf->count() && !var; ++id) {
        const btf::type t = c->btf->get(id);
        if (t.kind() == BTF_KIND_VAR && c->btf->name(t) == kconfig->name) {
            var = id;
        }
    }
    store<uint32_t>(img.b, img.btf_type_at(var) + offsetof(btf_type, type), array);
    EXPECT_TRUE(has(parse_error(img.b), "extern " + kconfig->name));
}

}  // namespace
}  // namespace ebpf
