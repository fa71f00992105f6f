// ebpf::btf::ext: the .BTF.ext section (func_info, line_info and CO-RE relocations per ELF
// section), parsed and bounds-checked (layer: pure).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"

namespace ebpf::btf {

// Records as the kernel takes them, except that insn_off here is in bytes from the start of
// the ELF section (as in the object); the loader turns them into instruction indexes.
struct func_info {
    uint32_t insn_off;
    uint32_t type_id;
};
struct line_info {
    uint32_t insn_off;
    uint32_t file_name_off;
    uint32_t line_off;
    uint32_t line_col;
};
struct core_relo {
    uint32_t insn_off;
    uint32_t type_id;
    uint32_t access_str_off;
    uint32_t kind;  // enum bpf_core_relo_kind
};

// The records of one ELF section.
struct ext_section {
    std::vector<func_info> funcs;
    std::vector<line_info> lines;
    std::vector<core_relo> relos;
};

class ext {
  public:
    // Parses .BTF.ext; section names are strings of `types` (the object's .BTF).
    static result<ext> parse(std::span<const std::byte> bytes, const spec& types) {
        ext out;
        auto r = out.read(bytes, types);
        if (!r) {
            return std::move(r).error().context("parse .BTF.ext");
        }
        return out;
    }

    // Returns the records of the named ELF section (empty when it has none).
    const ext_section& section(const std::string& name) const {
        static const ext_section none;
        auto it = sections_.find(name);
        return it == sections_.end() ? none : it->second;
    }
    const std::map<std::string, ext_section>& sections() const { return sections_; }

  private:
    struct header {
        uint16_t magic;
        uint8_t version;
        uint8_t flags;
        uint32_t hdr_len;
        uint32_t func_info_off;
        uint32_t func_info_len;
        uint32_t line_info_off;
        uint32_t line_info_len;
        uint32_t core_relo_off;  // optional: absent in older objects
        uint32_t core_relo_len;
    };

    result<void> read(std::span<const std::byte> bytes, const spec& types) {
        constexpr size_t min_header = offsetof(header, core_relo_off);
        if (bytes.size() < min_header) {
            return error(EINVAL, "header", std::to_string(bytes.size()) + " bytes");
        }
        header h{};
        std::memcpy(&h, bytes.data(), std::min(sizeof h, bytes.size()));
        if (h.magic != BTF_MAGIC) {
            return error(EINVAL, "header", "bad magic");
        }
        if (h.hdr_len < min_header || h.hdr_len > bytes.size()) {
            return error(EINVAL, "header", "header length " + std::to_string(h.hdr_len));
        }
        if (h.hdr_len < sizeof h) {
            h.core_relo_off = h.core_relo_len = 0;
        }
        auto body = bytes.subspan(h.hdr_len);
        EBPF_TRY(read_info<func_info>(
            body, h.func_info_off, h.func_info_len, "func_info", types,
            [](ext_section & s) -> auto& { return s.funcs; }));
        EBPF_TRY(read_info<line_info>(
            body, h.line_info_off, h.line_info_len, "line_info", types,
            [](ext_section & s) -> auto& { return s.lines; }));
        EBPF_TRY(read_info<core_relo>(
            body, h.core_relo_off, h.core_relo_len, "core_relo", types,
            [](ext_section & s) -> auto& { return s.relos; }));
        return {};
    }

    template <class Rec, class Field>
    result<void> read_info(std::span<const std::byte> body, uint32_t off, uint32_t len,
                           const char* what, const spec& types, Field field) {
        if (len == 0) {
            return {};
        }
        if (uint64_t(off) + len > body.size()) {
            return error(EINVAL, what, "section past the end of .BTF.ext");
        }
        auto data = body.subspan(off, len);
        auto u32 = [&](size_t at) {
            uint32_t v;
            std::memcpy(&v, data.data() + at, 4);
            return v;
        };
        if (data.size() < 4) {
            return error(EINVAL, what, "no record size");
        }
        const uint32_t rec_size = u32(0);
        // Newer compilers may append fields to a record: take the prefix we know.
        if (rec_size < sizeof(Rec) || rec_size % 4 != 0) {
            return error(EINVAL, what, "record size " + std::to_string(rec_size));
        }
        size_t at = 4;
        while (at < data.size()) {
            if (data.size() - at < 8) {
                return error(EINVAL, what, "truncated section header at " + std::to_string(at));
            }
            const uint32_t name_off = u32(at);
            const uint32_t n = u32(at + 4);
            at += 8;
            std::string_view name = types.str(name_off);
            if (name.empty()) {
                return error(EINVAL, what,
                             "section name offset " + std::to_string(name_off) + " is not a name");
            }
            if (uint64_t(n) * rec_size > data.size() - at) {
                return error(
                    EINVAL, what,
                    std::string(name) + ": " + std::to_string(n) + " records run past the end");
            }
            auto& out = field(sections_[std::string(name)]);
            out.reserve(out.size() + n);
            for (uint32_t i = 0; i < n; ++i) {
                Rec r;
                std::memcpy(&r, data.data() + at, sizeof r);
                out.push_back(r);
                at += rec_size;
            }
        }
        return {};
    }

    std::map<std::string, ext_section> sections_;
};

}  // namespace ebpf::btf
