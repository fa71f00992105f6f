// ebpf::btf::builder: writes raw BTF type by type, for tests and for BTF the loader makes
// (layer: pure).
#pragma once

#include <linux/btf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ebpf::btf {

// Appends types and returns their ids (the first is 1); bytes() gives the finished BTF.
class builder {
  public:
    struct member {
        std::string_view name;
        uint32_t type;
        uint32_t bit_offset;
        uint32_t bitfield_size = 0;  // non-zero makes the struct use kind_flag offsets
    };
    struct enumerator {
        std::string_view name;
        int64_t value;
    };
    struct param {
        std::string_view name;
        uint32_t type;
    };
    struct var_info {
        uint32_t type;
        uint32_t offset;
        uint32_t size;
    };

    builder() { strings_.push_back('\0'); }

    uint32_t add_int(std::string_view name, uint32_t size, uint32_t encoding = 0, uint32_t bits = 0,
                     uint32_t bit_offset = 0) {
        uint32_t id = head(name, BTF_KIND_INT, 0, false, size);
        put(uint32_t((encoding << 24) | (bit_offset << 16) | (bits ? bits : size * 8)));
        return id;
    }
    uint32_t add_float(std::string_view name, uint32_t size) {
        return head(name, BTF_KIND_FLOAT, 0, false, size);
    }
    uint32_t add_ptr(uint32_t type) { return head({}, BTF_KIND_PTR, 0, false, type); }
    uint32_t add_typedef(std::string_view name, uint32_t type) {
        return head(name, BTF_KIND_TYPEDEF, 0, false, type);
    }
    uint32_t add_const(uint32_t type) { return head({}, BTF_KIND_CONST, 0, false, type); }
    uint32_t add_volatile(uint32_t type) { return head({}, BTF_KIND_VOLATILE, 0, false, type); }
    uint32_t add_restrict(uint32_t type) { return head({}, BTF_KIND_RESTRICT, 0, false, type); }
    uint32_t add_type_tag(std::string_view tag, uint32_t type) {
        return head(tag, BTF_KIND_TYPE_TAG, 0, false, type);
    }
    uint32_t add_fwd(std::string_view name, bool is_union = false) {
        return head(name, BTF_KIND_FWD, 0, is_union, 0);
    }
    uint32_t add_array(uint32_t elem, uint32_t index_type, uint32_t nelems) {
        uint32_t id = head({}, BTF_KIND_ARRAY, 0, false, 0);
        put(elem);
        put(index_type);
        put(nelems);
        return id;
    }
    uint32_t add_struct(std::string_view name, uint32_t size, const std::vector<member>& ms) {
        return composite(BTF_KIND_STRUCT, name, size, ms);
    }
    uint32_t add_union(std::string_view name, uint32_t size, const std::vector<member>& ms) {
        return composite(BTF_KIND_UNION, name, size, ms);
    }
    uint32_t add_enum(std::string_view name, uint32_t size, const std::vector<enumerator>& es,
                      bool is_signed = false) {
        uint32_t id = head(name, BTF_KIND_ENUM, uint32_t(es.size()), is_signed, size);
        for (const auto& e : es) {
            put(str(e.name));
            put(uint32_t(int32_t(e.value)));
        }
        return id;
    }
    uint32_t add_enum64(std::string_view name, uint32_t size, const std::vector<enumerator>& es,
                        bool is_signed = false) {
        uint32_t id = head(name, BTF_KIND_ENUM64, uint32_t(es.size()), is_signed, size);
        for (const auto& e : es) {
            put(str(e.name));
            put(uint32_t(uint64_t(e.value)));
            put(uint32_t(uint64_t(e.value) >> 32));
        }
        return id;
    }
    uint32_t add_func_proto(uint32_t ret, const std::vector<param>& ps) {
        uint32_t id = head({}, BTF_KIND_FUNC_PROTO, uint32_t(ps.size()), false, ret);
        for (const auto& p : ps) {
            put(str(p.name));
            put(p.type);
        }
        return id;
    }
    uint32_t add_func(std::string_view name, uint32_t proto, uint32_t linkage = BTF_FUNC_GLOBAL) {
        return head(name, BTF_KIND_FUNC, linkage, false, proto);
    }
    uint32_t add_var(std::string_view name, uint32_t type,
                     uint32_t linkage = BTF_VAR_GLOBAL_ALLOCATED) {
        uint32_t id = head(name, BTF_KIND_VAR, 0, false, type);
        put(linkage);
        return id;
    }
    uint32_t add_datasec(std::string_view name, uint32_t size, const std::vector<var_info>& vs) {
        uint32_t id = head(name, BTF_KIND_DATASEC, uint32_t(vs.size()), false, size);
        for (const auto& v : vs) {
            put(v.type);
            put(v.offset);
            put(v.size);
        }
        return id;
    }
    uint32_t add_decl_tag(std::string_view tag, uint32_t type, int32_t component = -1) {
        uint32_t id = head(tag, BTF_KIND_DECL_TAG, 0, false, type);
        put(uint32_t(component));
        return id;
    }

    // Appends raw 32-bit words to the type section (for tests of malformed BTF).
    void add_raw(std::initializer_list<uint32_t> words) {
        for (uint32_t w : words) {
            put(w);
        }
    }

    // Returns the offset of `s` in the string section, adding it if new.
    uint32_t str(std::string_view s) {
        if (s.empty()) {
            return 0;
        }
        auto it = offsets_.find(std::string(s));
        if (it != offsets_.end()) {
            return it->second;
        }
        uint32_t off = uint32_t(strings_.size());
        strings_.insert(strings_.end(), s.begin(), s.end());
        strings_.push_back('\0');
        offsets_.emplace(std::string(s), off);
        return off;
    }

    // Returns the number of types added so far.
    uint32_t count() const { return next_id_ - 1; }

    // Returns the finished BTF: header, types, strings.
    std::vector<std::byte> bytes() const {
        btf_header h{};
        h.magic = BTF_MAGIC;
        h.version = BTF_VERSION;
        h.hdr_len = sizeof h;
        h.type_off = 0;
        h.type_len = uint32_t(types_.size() * 4);
        h.str_off = h.type_len;
        h.str_len = uint32_t(strings_.size());
        std::vector<std::byte> out(sizeof h + h.type_len + h.str_len);
        std::memcpy(out.data(), &h, sizeof h);
        if (h.type_len > 0) {
            std::memcpy(out.data() + sizeof h, types_.data(), h.type_len);
        }
        std::memcpy(out.data() + sizeof h + h.type_len, strings_.data(), h.str_len);
        return out;
    }

  private:
    uint32_t head(std::string_view name, uint32_t kind, uint32_t vlen, bool kflag,
                  uint32_t size_or_type) {
        put(str(name));
        put((kflag ? 1u << 31 : 0u) | (kind << 24) | (vlen & 0xffff));
        put(size_or_type);
        return next_id_++;
    }
    uint32_t composite(uint32_t kind, std::string_view name, uint32_t size,
                       const std::vector<member>& ms) {
        bool bitfields = false;
        for (const auto& m : ms) {
            bitfields |= m.bitfield_size != 0;
        }
        uint32_t id = head(name, kind, uint32_t(ms.size()), bitfields, size);
        for (const auto& m : ms) {
            put(str(m.name));
            put(m.type);
            put(bitfields ? (m.bitfield_size << 24) | (m.bit_offset & 0xffffff) : m.bit_offset);
        }
        return id;
    }
    void put(uint32_t w) { types_.push_back(w); }

    std::vector<uint32_t> types_;
    std::vector<char> strings_;
    std::unordered_map<std::string, uint32_t> offsets_;
    uint32_t next_id_ = 1;
};

}  // namespace ebpf::btf
