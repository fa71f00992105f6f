// ebpf::map: a live BPF map over its fd, with untyped element, batch, pin and mmap access
// (layer: objects).
#pragma once

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/sys/bpf.hpp"
#include "ebpf/sys/fd.hpp"

namespace ebpf {

// What a map is made of; also what a caller expects of a pinned map it opens.
struct map_options {
    uint32_t type = BPF_MAP_TYPE_UNSPEC;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t flags = 0;
    std::string_view name = {};
    int inner_map_fd = -1;
    uint32_t numa_node = 0;  // used with BPF_F_NUMA_NODE
    uint32_t btf_fd = 0;
    uint32_t btf_key_type_id = 0;
    uint32_t btf_value_type_id = 0;
    uint64_t map_extra = 0;
};

// Returns the number of possible CPUs (the size of a per-CPU value array), read once from
// /sys/devices/system/cpu/possible.
inline result<uint32_t> possible_cpus() {
    static const result<uint32_t> cached = []() -> result<uint32_t> {
        const char* path = "/sys/devices/system/cpu/possible";
        FILE* f = std::fopen(path, "re");
        if (!f) {
            return errno_error(std::string("open ") + path);
        }
        char buf[256] = {};
        size_t n = std::fread(buf, 1, sizeof buf - 1, f);
        std::fclose(f);
        // "0-3" or "0,2-5": the count is the highest CPU number + 1.
        uint32_t highest = 0;
        bool any = false;
        uint32_t cur = 0;
        bool in_num = false;
        for (size_t i = 0; i <= n; ++i) {
            char c = i < n ? buf[i] : '\0';
            if (c >= '0' && c <= '9') {
                cur = cur * 10 + uint32_t(c - '0');
                in_num = true;
                continue;
            }
            if (in_num) {
                highest = std::max(highest, cur);
                any = true;
            }
            cur = 0;
            in_num = false;
        }
        if (!any) {
            return error(EINVAL, std::string("parse ") + path, std::string("\"") + buf + "\"");
        }
        return highest + 1;
    }();
    return cached;
}

// True for map types whose values are one slot per possible CPU in user space.
constexpr bool is_percpu_map_type(uint32_t type) {
    return type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
           type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

// A mapping of a BPF_F_MMAPABLE array's values; unmapped on destruction.
class map_mapping {
  public:
    map_mapping() = default;
    map_mapping(void* p, size_t len) : p_(p), len_(len) {}
    map_mapping(map_mapping&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)) {}
    map_mapping& operator=(map_mapping&& o) noexcept {
        if (this != &o) {
            unmap();
            p_ = std::exchange(o.p_, nullptr);
            len_ = std::exchange(o.len_, 0);
        }
        return *this;
    }
    ~map_mapping() { unmap(); }

    std::byte* data() const { return static_cast<std::byte*>(p_); }
    size_t size() const { return len_; }

  private:
    void unmap() {
        if (p_) {
            ::munmap(p_, len_);
            p_ = nullptr;
        }
    }
    void* p_ = nullptr;
    size_t len_ = 0;
};

// The position of a batch walk over a map; start with a default-constructed cursor.
class batch_cursor {
  public:
    bool done() const { return done_; }

  private:
    friend class map;
    // The kernel's token is a key for arrays and a bucket number for hashes: room for both.
    std::vector<std::byte> in_, out_;
    bool started_ = false;
    bool done_ = false;
};

// A live map. The untyped core: keys and values are raw bytes of key_size() and
// value_size() (per-CPU maps: value_stride() bytes for each possible CPU).
class map {
  public:
    map() = default;

    // Creates a map (BPF_MAP_CREATE).
    static result<map> create(const map_options& o) {
        sys::map_create_attr attr{};
        attr.map_type = o.type;
        attr.key_size = o.key_size;
        attr.value_size = o.value_size;
        attr.max_entries = o.max_entries;
        attr.map_flags = o.flags;
        attr.inner_map_fd = o.inner_map_fd < 0 ? 0 : uint32_t(o.inner_map_fd);
        attr.numa_node = o.numa_node;
        sys::set_name(attr.map_name, o.name);
        attr.btf_fd = o.btf_fd;
        attr.btf_key_type_id = o.btf_key_type_id;
        attr.btf_value_type_id = o.btf_value_type_id;
        attr.map_extra = o.map_extra;
        auto f = sys::map_create(attr);
        if (!f) [[unlikely]] {
            return std::move(f).error().context(describe(o));
        }
        map m;
        m.fd_ = std::move(*f);
        m.type_ = o.type;
        m.key_size_ = o.key_size;
        m.value_size_ = o.value_size;
        m.max_entries_ = o.max_entries;
        m.flags_ = o.flags;
        m.name_ = std::string(o.name.substr(0, BPF_OBJ_NAME_LEN - 1));
        EBPF_TRY_CTX(m.init_stride(), describe(o));
        return m;
    }

    // Takes ownership of a map fd and reads what it is from the kernel.
    static result<map> from_fd(ebpf::fd f) {
        bpf_map_info info{};
        uint32_t len = sizeof info;
        EBPF_TRY_CTX(sys::obj_get_info_by_fd(f.get(), &info, len), "map info");
        map m;
        m.fd_ = std::move(f);
        m.type_ = info.type;
        m.key_size_ = info.key_size;
        m.value_size_ = info.value_size;
        m.max_entries_ = info.max_entries;
        m.flags_ = info.map_flags;
        m.id_ = info.id;
        m.name_ = std::string(info.name, strnlen(info.name, sizeof info.name));
        EBPF_TRY(m.init_stride());
        return m;
    }

    // Opens the map with this id.
    static result<map> from_id(uint32_t id) {
        auto f = sys::map_get_fd_by_id(id);
        if (!f) [[unlikely]] {
            return std::move(f).error();
        }
        return from_fd(std::move(*f));
    }

    // Opens a pinned map; file_flags BPF_F_RDONLY or BPF_F_WRONLY restrict this fd.
    static result<map> from_pin(const std::string& path, uint32_t file_flags = 0) {
        auto f = sys::obj_get(path.c_str(), file_flags);
        if (!f) [[unlikely]] {
            return std::move(f).error();
        }
        auto m = from_fd(std::move(*f));
        if (!m) [[unlikely]] {
            return std::move(m).error().context("open pin " + path);
        }
        return m;
    }

    // Opens a pinned map and checks that its type, key and value size, max_entries and flags
    // are what `expected` says; a mismatch is an EINVAL error naming the first difference.
    static result<map> from_pin(const std::string& path, const map_options& expected) {
        auto m = from_pin(path);
        if (!m) [[unlikely]] {
            return m;
        }
        EBPF_TRY_CTX(m->check(expected), "open pin " + path);
        return m;
    }

    // Checks that this map is what `expected` describes (type, sizes, max_entries, flags).
    result<void> check(const map_options& e) const {
        auto field = [&](const char* what, uint64_t have, uint64_t want) -> result<void> {
            if (have == want) {
                return {};
            }
            return error(EINVAL, "map " + name_ + " is incompatible",
                         std::string(what) + " " + std::to_string(have) + ", expected " +
                             std::to_string(want));
        };
        EBPF_TRY(field("type", type_, e.type));
        EBPF_TRY(field("key_size", key_size_, e.key_size));
        EBPF_TRY(field("value_size", value_size_, e.value_size));
        EBPF_TRY(field("max_entries", max_entries_, e.max_entries));
        EBPF_TRY(field("map_flags", flags_, e.flags));
        return {};
    }

    int fd() const { return fd_.get(); }
    uint32_t type() const { return type_; }
    uint32_t key_size() const { return key_size_; }
    // Returns the value size the map was created with (one CPU's slot for per-CPU maps).
    uint32_t value_size() const { return value_size_; }
    uint32_t max_entries() const { return max_entries_; }
    uint32_t flags() const { return flags_; }
    const std::string& name() const { return name_; }
    // Returns the size of a value buffer for lookup/update: value_size(), or for per-CPU maps
    // one 8-byte-aligned slot per possible CPU.
    size_t value_buffer_size() const { return value_buffer_; }
    // Returns the kernel id of the map.
    result<uint32_t> id() const {
        if (id_ == 0) {
            bpf_map_info info{};
            uint32_t len = sizeof info;
            EBPF_TRY_CTX(sys::obj_get_info_by_fd(fd_.get(), &info, len), "map " + name_ + " info");
            id_ = info.id;
        }
        return id_;
    }

    // Copies the value of `key` into `value` (value_buffer_size() bytes); false if absent.
    result<bool> lookup(const void* key, void* value, uint64_t flags = 0) const {
        return sys::map_lookup_elem(fd_.get(), key, value, flags);
    }
    // Sets `key` to `value` with BPF_ANY, BPF_NOEXIST, BPF_EXIST or BPF_F_LOCK.
    result<void> update(const void* key, const void* value, uint64_t flags = BPF_ANY) {
        return sys::map_update_elem(fd_.get(), key, value, flags);
    }
    // Deletes `key`; false if it was absent.
    result<bool> erase(const void* key) { return sys::map_delete_elem(fd_.get(), key); }
    // Copies the value of `key` into `value` and deletes the entry; false if absent.
    result<bool> lookup_and_erase(const void* key, void* value) {
        return sys::map_lookup_and_delete_elem(fd_.get(), key, value);
    }
    // Writes the key after `key` (nullptr: the first) into `next`; false at the end.
    result<bool> next_key(const void* key, void* next) const {
        return sys::map_get_next_key(fd_.get(), key, next);
    }

    // Calls f(const std::byte* key) for every key; stops early when f returns false.
    // Keys deleted meanwhile by someone else may restart the walk (the kernel's semantics).
    template <class F>
    result<void> for_each_key(F&& f) const {
        std::vector<std::byte> a(key_size_), b(key_size_);
        const void* prev = nullptr;
        for (;;) {
            auto more = next_key(prev, b.data());
            if (!more) [[unlikely]] {
                return std::move(more).error().context("map " + name_ + ": iterate keys");
            }
            if (!*more || !f(static_cast<const std::byte*>(b.data()))) {
                return {};
            }
            a.swap(b);
            prev = a.data();
        }
    }

    // Reads up to `count` entries from where `cursor` stands into `keys` and `values`
    // (arrays of count keys and count value buffers); returns how many were read. With
    // `erase`, deletes what it reads. When the walk ends, cursor.done() becomes true.
    result<uint32_t> lookup_batch(batch_cursor& cursor, void* keys, void* values, uint32_t count,
                                  bool erase = false) {
        if (cursor.done_) {
            return uint32_t{0};
        }
        const size_t token = std::max<size_t>(key_size_, 8);
        if (cursor.out_.size() != token) {
            cursor.in_.assign(token, std::byte{0});
            cursor.out_.assign(token, std::byte{0});
        }
        sys::map_batch_attr attr{};
        attr.in_batch = cursor.started_ ? sys::ptr(cursor.in_.data()) : 0;
        attr.out_batch = sys::ptr(cursor.out_.data());
        attr.keys = sys::ptr(keys);
        attr.values = sys::ptr(values);
        attr.count = count;
        attr.map_fd = fd_.get();
        auto more = erase ? sys::map_lookup_and_delete_batch(attr) : sys::map_lookup_batch(attr);
        if (!more) [[unlikely]] {
            return std::move(more).error().context("map " + name_);
        }
        cursor.started_ = true;
        cursor.in_.swap(cursor.out_);
        cursor.done_ = !*more;
        return attr.count;
    }

    // Writes `count` entries from the arrays `keys` and `values`; returns how many were
    // written (on error, the error's detail says how many were done).
    result<uint32_t> update_batch(const void* keys, const void* values, uint32_t count,
                                  uint64_t elem_flags = BPF_ANY) {
        sys::map_batch_attr attr{};
        attr.keys = sys::ptr(keys);
        attr.values = sys::ptr(values);
        attr.count = count;
        attr.map_fd = fd_.get();
        attr.elem_flags = elem_flags;
        EBPF_TRY_CTX(sys::map_update_batch(attr), "map " + name_);
        return attr.count;
    }

    // Deletes the `count` keys of the array `keys`; returns how many were deleted.
    result<uint32_t> erase_batch(const void* keys, uint32_t count) {
        sys::map_batch_attr attr{};
        attr.keys = sys::ptr(keys);
        attr.count = count;
        attr.map_fd = fd_.get();
        EBPF_TRY_CTX(sys::map_delete_batch(attr), "map " + name_);
        return attr.count;
    }

    // Makes the map read-only for user space from now on (5.2+).
    result<void> freeze() {
        EBPF_TRY_CTX(sys::map_freeze(fd_.get()), "map " + name_);
        return {};
    }

    // Maps the values of a BPF_F_MMAPABLE array (5.5+) into this process.
    result<map_mapping> mmap(bool writable = true) const {
        if (type_ != BPF_MAP_TYPE_ARRAY || !(flags_ & BPF_F_MMAPABLE)) {
            return error(EINVAL, "map " + name_ + ": mmap",
                         "only arrays created with BPF_F_MMAPABLE can be mapped");
        }
        const size_t page = size_t(::sysconf(_SC_PAGESIZE));
        const size_t bytes = size_t(value_stride()) * max_entries_;
        const size_t len = (bytes + page - 1) / page * page;
        int prot = PROT_READ | (writable ? PROT_WRITE : 0);
        void* p = ::mmap(nullptr, len, prot, MAP_SHARED, fd_.get(), 0);
        if (p == MAP_FAILED) {
            return errno_error("map " + name_ + ": mmap");
        }
        return map_mapping(p, len);
    }

    // Pins the map at `path` in a bpffs.
    result<void> pin(const std::string& path) const {
        EBPF_TRY_CTX(sys::obj_pin(path.c_str(), fd_.get()), "map " + name_);
        return {};
    }

    // Returns the size of one value slot: value_size() rounded up to 8 for per-CPU maps.
    uint32_t value_stride() const {
        return is_percpu_map_type(type_) ? (value_size_ + 7) & ~7u : value_size_;
    }

    // Returns a "map NAME (TYPE key K value V max N)" description for messages.
    static std::string describe(const map_options& o) {
        return "map " + std::string(o.name) + " (type " + std::to_string(o.type) + ", key " +
               std::to_string(o.key_size) + ", value " + std::to_string(o.value_size) +
               ", max_entries " + std::to_string(o.max_entries) + ")";
    }

  private:
    result<void> init_stride() {
        value_buffer_ = value_size_;
        if (is_percpu_map_type(type_)) {
            auto n = possible_cpus();
            if (!n) [[unlikely]] {
                return std::move(n).error();
            }
            value_buffer_ = size_t(value_stride()) * *n;
        }
        return {};
    }

    ebpf::fd fd_;
    uint32_t type_ = 0;
    uint32_t key_size_ = 0;
    uint32_t value_size_ = 0;
    uint32_t max_entries_ = 0;
    uint32_t flags_ = 0;
    mutable uint32_t id_ = 0;
    size_t value_buffer_ = 0;
    std::string name_;
};

}  // namespace ebpf
