// Typed views over ebpf::map: array, hash, per-CPU array/hash and an LPM trie keyed by IPv6 or
// v4-mapped IPv4 prefixes (layer: objects).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/map.hpp"
#include "ebpf/sys/bpf.hpp"

namespace ebpf {

// Keys and values cross into the kernel as raw bytes.
template <class T>
concept map_pod = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>;

namespace detail {
// Checks the map type and sizes once, when a typed view is made.
inline result<void> check_view(const map& m, std::initializer_list<uint32_t> types,
                               uint32_t key_size, uint32_t value_size, const char* view) {
    auto fail = [&](std::string what) -> result<void> {
        return error(EINVAL, std::string(view) + " view of map " + m.name(), std::move(what));
    };
    if (std::find(types.begin(), types.end(), m.type()) == types.end()) {
        return fail("map type " + std::to_string(m.type()) + " does not fit");
    }
    if (m.key_size() != key_size) {
        return fail("key_size " + std::to_string(m.key_size()) + ", the key type has " +
                    std::to_string(key_size));
    }
    if (m.value_size() != value_size) {
        return fail("value_size " + std::to_string(m.value_size()) + ", the value type has " +
                    std::to_string(value_size));
    }
    return {};
}

// The state every typed view keeps: the map's fd (not owned) and what it needs per call.
struct view_base {
    int fd = -1;
    uint32_t max_entries = 0;
    const map* m = nullptr;
};

template <class K>
inline result<std::vector<K>> keys_of(const map& m) {
    std::vector<K> out;
    EBPF_TRY(m.for_each_key([&](const std::byte* k) {
        K key;
        std::memcpy(&key, k, sizeof key);
        out.push_back(key);
        return true;
    }));
    return out;
}
}  // namespace detail

// A BPF_MAP_TYPE_ARRAY of V. Like every typed view it refers to a map that must outlive it.
template <map_pod V>
class array {
  public:
    static result<array> view(const map& m) {
        EBPF_TRY(detail::check_view(m, {BPF_MAP_TYPE_ARRAY}, 4, sizeof(V), "array"));
        return array(m);
    }
    // Returns the value at `index` (an error outside [0, max_entries)).
    result<V> lookup(uint32_t index) const {
        V v;
        auto found = sys::map_lookup_elem(b_.fd, &index, &v);
        if (!found) [[unlikely]] {
            return std::move(found).error().context("map " + b_.m->name());
        }
        if (!*found) [[unlikely]] {
            return out_of_range(index);
        }
        return v;
    }
    // Sets the value at `index`.
    result<void> update(uint32_t index, const V& v, uint64_t flags = BPF_ANY) {
        return sys::map_update_elem(b_.fd, &index, &v, flags);
    }
    uint32_t size() const { return b_.max_entries; }

  private:
    explicit array(const map& m) : b_{m.fd(), m.max_entries(), &m} {}
    error out_of_range(uint32_t index) const {
        return error(ENOENT, "map " + b_.m->name() + ": lookup",
                     "index " + std::to_string(index) + " is outside the array");
    }
    detail::view_base b_;
};

// A BPF_MAP_TYPE_HASH (or LRU_HASH) of K to V.
template <map_pod K, map_pod V>
class hash {
  public:
    static result<hash> view(const map& m) {
        EBPF_TRY(detail::check_view(m, {BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH}, sizeof(K),
                                    sizeof(V), "hash"));
        return hash(m);
    }
    // Returns the value of `key`, or nullopt when it is absent.
    result<std::optional<V>> lookup(const K& key) const {
        V v;
        auto found = sys::map_lookup_elem(b_.fd, &key, &v);
        if (!found) [[unlikely]] {
            return std::move(found).error().context("map " + b_.m->name());
        }
        if (!*found) {
            return std::optional<V>();
        }
        return std::optional<V>(v);
    }
    // Sets `key` to `v` (BPF_ANY, BPF_NOEXIST or BPF_EXIST).
    result<void> update(const K& key, const V& v, uint64_t flags = BPF_ANY) {
        return sys::map_update_elem(b_.fd, &key, &v, flags);
    }
    // Deletes `key`; false if it was absent.
    result<bool> erase(const K& key) { return sys::map_delete_elem(b_.fd, &key); }
    // Returns every key.
    result<std::vector<K>> keys() const { return detail::keys_of<K>(*b_.m); }

  private:
    explicit hash(const map& m) : b_{m.fd(), m.max_entries(), &m} {}
    detail::view_base b_;
};

namespace detail {
// Per-CPU values: one slot of sizeof(V) rounded up to 8 bytes for each possible CPU, in a
// per-thread scratch buffer that grows once (a host can have hundreds of possible CPUs, and an
// allocation per call would cost more than the copy).
template <class V>
class percpu_buffer {
  public:
    static constexpr size_t stride = (sizeof(V) + 7) & ~size_t(7);
    explicit percpu_buffer(uint32_t cpus) : cpus_(cpus) {
        std::vector<uint64_t>& s = scratch();
        if (s.size() * 8 < bytes()) [[unlikely]] {
            s.resize((bytes() + 7) / 8);
        }
        data_ = reinterpret_cast<std::byte*>(s.data());
    }
    std::byte* data() { return data_; }
    size_t bytes() const { return stride * cpus_; }
    void get(uint32_t cpu, V& v) { std::memcpy(&v, data_ + stride * cpu, sizeof(V)); }
    void set(uint32_t cpu, const V& v) { std::memcpy(data_ + stride * cpu, &v, sizeof(V)); }

  private:
    static std::vector<uint64_t>& scratch() {
        thread_local std::vector<uint64_t> s;
        return s;
    }
    uint32_t cpus_;
    std::byte* data_;
};

// The shared body of percpu_array and percpu_hash, over a key type K.
template <class K, class V>
class percpu_ops {
  public:
    // Returns how many values a lookup gives: the number of possible CPUs.
    uint32_t cpus() const { return cpus_; }

    // Copies one value per possible CPU into `out` (cpus() long); false if the key is absent.
    result<bool> lookup(const K& key, std::span<V> out) const {
        if (out.size() != cpus_) [[unlikely]] {
            return wrong_count(out.size());
        }
        if constexpr (percpu_buffer<V>::stride == sizeof(V)) {
            return sys::map_lookup_elem(b_.fd, &key, out.data());
        } else {
            percpu_buffer<V> buf(cpus_);
            auto found = sys::map_lookup_elem(b_.fd, &key, buf.data());
            if (found && *found) {
                for (uint32_t c = 0; c < cpus_; ++c) {
                    buf.get(c, out[c]);
                }
            }
            return found;
        }
    }
    // Returns one value per possible CPU, or nullopt when the key is absent.
    result<std::optional<std::vector<V>>> lookup(const K& key) const {
        std::vector<V> out(cpus_);
        auto found = lookup(key, std::span<V>(out));
        if (!found) [[unlikely]] {
            return std::move(found).error().context("map " + b_.m->name());
        }
        if (!*found) {
            return std::optional<std::vector<V>>();
        }
        return std::optional<std::vector<V>>(std::move(out));
    }
    // Returns the sum over all CPUs (V needs +=), or nullopt when the key is absent.
    result<std::optional<V>> sum(const K& key) const {
        percpu_buffer<V> buf(cpus_);
        auto found = sys::map_lookup_elem(b_.fd, &key, buf.data());
        if (!found) [[unlikely]] {
            return std::move(found).error().context("map " + b_.m->name());
        }
        if (!*found) {
            return std::optional<V>();
        }
        V total{};
        for (uint32_t c = 0; c < cpus_; ++c) {
            V v;
            buf.get(c, v);
            total += v;
        }
        return std::optional<V>(total);
    }
    // Sets `key` to one value per possible CPU (`values` is cpus() long).
    result<void> update(const K& key, std::span<const V> values, uint64_t flags = BPF_ANY) {
        if (values.size() != cpus_) [[unlikely]] {
            return wrong_count(values.size());
        }
        if constexpr (percpu_buffer<V>::stride == sizeof(V)) {
            return sys::map_update_elem(b_.fd, &key, values.data(), flags);
        } else {
            percpu_buffer<V> buf(cpus_);
            for (uint32_t c = 0; c < cpus_; ++c) {
                buf.set(c, values[c]);
            }
            return sys::map_update_elem(b_.fd, &key, buf.data(), flags);
        }
    }
    // Sets `key` to `v` on every CPU.
    result<void> update_all(const K& key, const V& v, uint64_t flags = BPF_ANY) {
        percpu_buffer<V> buf(cpus_);
        for (uint32_t c = 0; c < cpus_; ++c) {
            buf.set(c, v);
        }
        return sys::map_update_elem(b_.fd, &key, buf.data(), flags);
    }

  protected:
    percpu_ops(const map& m, uint32_t cpus) : b_{m.fd(), m.max_entries(), &m}, cpus_(cpus) {}
    static result<uint32_t> cpu_count(const map& m, uint32_t type, uint32_t key_size,
                                      const char* view) {
        EBPF_TRY(detail::check_view(m, {type}, key_size, sizeof(V), view));
        return possible_cpus();
    }
    error wrong_count(size_t n) const {
        return error(EINVAL, "map " + b_.m->name(),
                     std::to_string(n) + " per-CPU values given, the host has " +
                         std::to_string(cpus_) + " possible CPUs");
    }
    detail::view_base b_;
    uint32_t cpus_;
};
}  // namespace detail

// A BPF_MAP_TYPE_PERCPU_ARRAY of V: each index holds one V per possible CPU.
template <map_pod V>
class percpu_array : public detail::percpu_ops<uint32_t, V> {
  public:
    static result<percpu_array> view(const map& m) {
        auto n = percpu_array::cpu_count(m, BPF_MAP_TYPE_PERCPU_ARRAY, 4, "percpu_array");
        if (!n) [[unlikely]] {
            return std::move(n).error();
        }
        return percpu_array(m, *n);
    }

  private:
    percpu_array(const map& m, uint32_t cpus) : detail::percpu_ops<uint32_t, V>(m, cpus) {}
};

// A BPF_MAP_TYPE_PERCPU_HASH of K to one V per possible CPU.
template <map_pod K, map_pod V>
class percpu_hash : public detail::percpu_ops<K, V> {
  public:
    static result<percpu_hash> view(const map& m) {
        auto n = percpu_hash::cpu_count(m, BPF_MAP_TYPE_PERCPU_HASH, sizeof(K), "percpu_hash");
        if (!n) [[unlikely]] {
            return std::move(n).error();
        }
        return percpu_hash(m, *n);
    }
    // Deletes `key`; false if it was absent.
    result<bool> erase(const K& key) { return sys::map_delete_elem(this->b_.fd, &key); }
    // Returns every key.
    result<std::vector<K>> keys() const { return detail::keys_of<K>(*this->b_.m); }

  private:
    percpu_hash(const map& m, uint32_t cpus) : detail::percpu_ops<K, V>(m, cpus) {}
};

// The key of an LPM trie that holds IPv6 and IPv4 prefixes together: IPv4 is stored
// v4-mapped (::ffff:a.b.c.d) with 96 added to its prefix length.
struct lpm_key {
    uint32_t prefixlen = 0;
    uint8_t addr[16] = {};

    // Makes the key for an IPv6 prefix (prefixlen 0..128).
    static lpm_key v6(const in6_addr& a, uint32_t prefixlen = 128) {
        lpm_key k;
        k.prefixlen = prefixlen;
        std::memcpy(k.addr, &a, 16);
        return k;
    }
    // Makes the key for an IPv4 prefix (prefixlen 0..32) as its v4-mapped IPv6 prefix.
    static lpm_key v4(const in_addr& a, uint32_t prefixlen = 32) {
        lpm_key k;
        k.prefixlen = prefixlen + 96;
        k.addr[10] = 0xff;
        k.addr[11] = 0xff;
        std::memcpy(k.addr + 12, &a, 4);
        return k;
    }
    // Parses "2a02:6b8::/32", "10.0.0.0/8" or a bare address (a full-length prefix).
    static result<lpm_key> parse(std::string_view text) {
        auto bad = [&](const char* why) {
            return error(EINVAL, "parse prefix \"" + std::string(text) + "\"", why);
        };
        std::string addr(text.substr(0, text.find('/')));
        std::optional<uint32_t> len;
        if (auto slash = text.find('/'); slash != std::string_view::npos) {
            uint32_t n = 0;
            auto tail = text.substr(slash + 1);
            auto [p, ec] = std::from_chars(tail.data(), tail.data() + tail.size(), n);
            if (ec != std::errc() || p != tail.data() + tail.size() || tail.empty()) {
                return result<lpm_key>(bad("the prefix length is not a number"));
            }
            len = n;
        }
        in6_addr a6;
        in_addr a4;
        if (::inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
            if (len.value_or(32) > 32) {
                return result<lpm_key>(bad("an IPv4 prefix length is at most 32"));
            }
            return v4(a4, len.value_or(32)).masked();
        }
        if (::inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
            if (len.value_or(128) > 128) {
                return result<lpm_key>(bad("an IPv6 prefix length is at most 128"));
            }
            return v6(a6, len.value_or(128)).masked();
        }
        return result<lpm_key>(bad("not an IPv4 or IPv6 address"));
    }
    // Returns the key with the address bits past the prefix cleared.
    lpm_key masked() const {
        lpm_key k = *this;
        for (uint32_t bit = std::min<uint32_t>(prefixlen, 128); bit < 128; ++bit) {
            k.addr[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
        }
        return k;
    }
    // Renders the prefix the way parse() reads it (IPv4 for v4-mapped prefixes of /96+).
    std::string to_string() const {
        char buf[INET6_ADDRSTRLEN];
        static constexpr uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (prefixlen >= 96 && std::memcmp(addr, mapped, 12) == 0) {
            ::inet_ntop(AF_INET, addr + 12, buf, sizeof buf);
            return std::string(buf) + "/" + std::to_string(prefixlen - 96);
        }
        ::inet_ntop(AF_INET6, addr, buf, sizeof buf);
        return std::string(buf) + "/" + std::to_string(prefixlen);
    }
    friend bool operator==(const lpm_key& a, const lpm_key& b) {
        return a.prefixlen == b.prefixlen && std::memcmp(a.addr, b.addr, 16) == 0;
    }
};
static_assert(sizeof(lpm_key) == 20);

// A BPF_MAP_TYPE_LPM_TRIE from lpm_key prefixes to V.
template <map_pod V>
class lpm_trie {
  public:
    static result<lpm_trie> view(const map& m) {
        EBPF_TRY(
            detail::check_view(m, {BPF_MAP_TYPE_LPM_TRIE}, sizeof(lpm_key), sizeof(V), "lpm_trie"));
        return lpm_trie(m);
    }
    // Returns the value of the longest stored prefix that contains `key` (use a full-length
    // key, e.g. lpm_key::v6(addr), to look an address up), or nullopt when none does.
    result<std::optional<V>> lookup(const lpm_key& key) const {
        V v;
        auto found = sys::map_lookup_elem(b_.fd, &key, &v);
        if (!found) [[unlikely]] {
            return std::move(found).error().context("map " + b_.m->name());
        }
        if (!*found) {
            return std::optional<V>();
        }
        return std::optional<V>(v);
    }
    // Stores `v` for the prefix `key`.
    result<void> update(const lpm_key& key, const V& v, uint64_t flags = BPF_ANY) {
        return sys::map_update_elem(b_.fd, &key, &v, flags);
    }
    // Deletes exactly the prefix `key`; false if it was absent.
    result<bool> erase(const lpm_key& key) { return sys::map_delete_elem(b_.fd, &key); }
    // Returns every stored prefix.
    result<std::vector<lpm_key>> keys() const { return detail::keys_of<lpm_key>(*b_.m); }

  private:
    explicit lpm_trie(const map& m) : b_{m.fd(), m.max_entries(), &m} {}
    detail::view_base b_;
};

}  // namespace ebpf
