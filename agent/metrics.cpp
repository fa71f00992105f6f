// Reading net_stat's maps, the cgroup roll-up and the Prometheus text exposition.
#include "metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <system_error>
#include <thread>
#include <tuple>

namespace agent {

namespace {

constexpr int kENOTSUPP = 524;  // the kernel's internal "not supported", leaked by bpf(2)

// Per-CPU value bytes a batch call may bring back at once: 1 MiB, however many CPUs.
constexpr size_t kBatchValueBytes = size_t(1) << 20;
// A batch must hold a whole hash bucket (else ENOSPC); with at least as many buckets as
// entries, a bucket of 256 keys does not happen.
constexpr uint32_t kMinBatch = 256;

bool unsupported(int e) {
    return e == EINVAL || e == kENOTSUPP || e == EOPNOTSUPP || e == ENOSYS;
}

ebpf::result<void> check_layout(const ebpf::map& m, std::initializer_list<uint32_t> types,
                                uint32_t key_size, const char* key_type, uint32_t value_size,
                                const char* value_type) {
    if (std::find(types.begin(), types.end(), m.type()) == types.end() ||
        m.key_size() != key_size || m.value_size() != value_size) {
        return ebpf::error(EINVAL, "read counter map " + m.name(),
                           "type " + std::to_string(m.type()) + ", key " +
                               std::to_string(m.key_size()) + " bytes, value " +
                               std::to_string(m.value_size()) + " bytes; expected a per-CPU " +
                               key_type + " -> " + value_type + " map");
    }
    return {};
}

ebpf::result<void> check_hash(const ebpf::map& m, uint32_t key_size, const char* key_type) {
    return check_layout(m, {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH}, key_size,
                        key_type, sizeof(net_stat_counters), "struct net_stat_counters");
}

// Sums one per-CPU value buffer (one slot of sizeof(V) bytes per possible CPU); V is a struct
// of __u64 counters only.
template <class V>
V sum_cpus(const std::byte* v, size_t buffer_bytes) {
    static_assert(sizeof(V) % sizeof(uint64_t) == 0);
    constexpr size_t words = sizeof(V) / sizeof(uint64_t);
    uint64_t s[words] = {};
    for (size_t off = 0; off + sizeof(V) <= buffer_bytes; off += sizeof(V)) {
        uint64_t c[words];
        std::memcpy(c, v + off, sizeof c);
        for (size_t w = 0; w < words; ++w) {
            s[w] += c[w];
        }
    }
    V out;
    std::memcpy(&out, s, sizeof out);
    return out;
}

// Calls f(const std::byte* key, const net_stat_counters& sum) for every entry of a per-CPU
// hash; returns how many there were. Sets `iterated` when it read key by key (asked to, or
// batches unsupported), which can give a key twice.
template <class F>
ebpf::result<uint64_t> read_map(ebpf::map& m, read_mode mode, std::vector<std::byte>& keys,
                                std::vector<std::byte>& values, F&& f, bool& iterated) {
    const size_t ks = m.key_size();
    const size_t vs = m.value_buffer_size();
    uint64_t n = 0;
    if (mode == read_mode::batch) {
        const uint32_t chunk = uint32_t(std::clamp<size_t>(
            kBatchValueBytes / vs, kMinBatch, std::max<size_t>(kMinBatch, m.max_entries())));
        keys.resize(chunk * ks);
        values.resize(chunk * vs);
        ebpf::batch_cursor cursor;
        bool fallback = false;
        while (!cursor.done()) {
            auto got = m.lookup_batch(cursor, keys.data(), values.data(), chunk);
            if (!got) {
                // Kernels before 5.6, or map types without batch support: iterate instead.
                if (n == 0 && unsupported(got.error().code())) {
                    fallback = true;
                    break;
                }
                return std::move(got).error().context("read counter map " + m.name());
            }
            for (uint32_t i = 0; i < *got; ++i) {
                f(keys.data() + i * ks, sum_cpus<net_stat_counters>(values.data() + i * vs, vs));
            }
            n += *got;
        }
        if (!fallback) {
            return n;
        }
    }
    iterated = true;
    keys.resize(2 * ks);
    values.resize(vs);
    std::byte* prev = nullptr;
    std::byte* cur = keys.data();
    for (;;) {
        auto more = m.next_key(prev, cur);
        if (!more) {
            return std::move(more).error().context("read counter map " + m.name());
        }
        if (!*more) {
            return n;
        }
        auto found = m.lookup(cur, values.data());
        if (!found) {
            return std::move(found).error().context("read counter map " + m.name());
        }
        if (*found) {  // else deleted since next_key gave it
            f(cur, sum_cpus<net_stat_counters>(values.data(), vs));
            ++n;
        }
        prev = cur;
        cur = cur == keys.data() ? keys.data() + ks : keys.data();
    }
}

// Appends text; the hot loops use these instead of streams.
inline void put(std::string& out, std::string_view s) {
    out.append(s.data(), s.size());
}
inline void put_u64(std::string& out, uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, size_t(r.ptr - buf));
}
void put_double(std::string& out, double v) {
    if (std::isnan(v)) {
        put(out, "NaN");
        return;
    }
    if (std::isinf(v)) {
        put(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, size_t(r.ptr - buf));
}

// HELP text escaping: backslash and line feed.
void put_help(std::string& out, std::string_view name, std::string_view help,
              std::string_view type) {
    put(out, "# HELP ");
    put(out, name);
    out += ' ';
    for (char c : help) {
        if (c == '\\') {
            put(out, "\\\\");
        } else if (c == '\n') {
            put(out, "\\n");
        } else {
            out += c;
        }
    }
    put(out, "\n# TYPE ");
    put(out, name);
    out += ' ';
    put(out, type);
    out += '\n';
}

using label_list = std::initializer_list<std::pair<std::string_view, std::string_view>>;

void put_sample(std::string& out, std::string_view name, label_list labels, double value) {
    put(out, name);
    if (labels.size() != 0) {
        out += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            if (!first) {
                out += ',';
            }
            first = false;
            put(out, k);
            put(out, "=\"");
            put(out, escape_label_value(v));
            out += '"';
        }
        out += '}';
    }
    out += ' ';
    put_double(out, value);
    out += '\n';
}

size_t utf8_sequence(const unsigned char* p, size_t n) {
    // Returns the length of a valid UTF-8 sequence at p, or 0.
    const unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; ++i) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static constexpr uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reading

ebpf::result<void> read_counters(const counter_maps& maps, counter_snapshot& out, read_mode mode) {
    out.rows.clear();
    out.fills.clear();
    out.other_ids.clear();
    out.uncounted = {};
    out.has_errors = false;

    if (maps.cgroup) {
        EBPF_TRY(check_hash(*maps.cgroup, sizeof(net_stat_key), "struct net_stat_key"));
    }
    if (maps.dc) {
        EBPF_TRY(check_hash(*maps.dc, sizeof(net_stat_dc_key), "struct net_stat_dc_key"));
    }
    ebpf::map* const dc_1 = maps.dc ? maps.dc_1 : nullptr;
    if (dc_1) {
        EBPF_TRY(check_hash(*dc_1, sizeof(net_stat_dc_key), "struct net_stat_dc_key"));
    }
    if (maps.errors) {
        EBPF_TRY(check_layout(*maps.errors, {BPF_MAP_TYPE_PERCPU_ARRAY}, 4, "__u32",
                              sizeof(net_stat_value), "struct net_stat_value"));
    }

    // One row per entry of a source map, both directions.
    auto row_of = [](bool is_dc, const std::byte* key, const net_stat_counters& v) {
        traffic_row r{};
        if (is_dc) {
            net_stat_dc_key dk;
            std::memcpy(&dk, key, sizeof dk);
            r.cgroup_id = dk.cgroup_id;
            r.dc = dk.dc;
            r.net_type = dk.net_type;
        } else {
            std::memcpy(&r.cgroup_id, key, sizeof r.cgroup_id);
        }
        r.rx_bytes = v.rx_bytes;
        r.rx_packets = v.rx_packets;
        r.tx_bytes = v.tx_bytes;
        r.tx_packets = v.tx_packets;
        return r;
    };

    // The kernel's walk of a hash is most of a read, and memory-bound: the second half of the
    // dc keys, then the per-cgroup map when it is not the source (its fill, and its ids for
    // deletion), are read on a second thread while this one reads the source. The maps share
    // no locks. Measured with bench/agent_bench.cpp, 10,000 cgroups x 8 dcs on 2 CPUs.
    std::optional<ebpf::result<uint64_t>> read_1, other;
    bool iterated_1 = false;
    std::thread second;
    struct joiner {
        std::thread& t;
        ~joiner() {
            if (t.joinable()) {
                t.join();
            }
        }
    } join_second{second};
    out.rows_1_.clear();
    const bool other_too = maps.dc && maps.cgroup;
    auto read_second = [&] {
        if (dc_1) {
            read_1.emplace(read_map(
                *dc_1, mode, out.other_key_buf_, out.other_value_buf_,
                [&](const std::byte* key, const net_stat_counters& v) {
                    out.rows_1_.push_back(row_of(true, key, v));
                },
                iterated_1));
            if (!*read_1) {
                return;
            }
        }
        if (other_too) {
            bool iterated = false;
            other.emplace(read_map(
                *maps.cgroup, mode, out.other_key_buf_, out.other_value_buf_,
                [&](const std::byte* key, const net_stat_counters&) {
                    uint64_t id;
                    std::memcpy(&id, key, sizeof id);
                    out.other_ids.push_back(id);
                },
                iterated));
        }
    };
    bool second_later = false;  // no thread to be had (a pids limit): after the source, here
    if (dc_1 || other_too) {
        try {
            second = std::thread(read_second);
        } catch (const std::system_error&) {
            second_later = true;
        }
    }

    ebpf::map* const source = maps.dc ? maps.dc : maps.cgroup;
    bool iterated = false;
    std::optional<ebpf::result<uint64_t>> read_source;
    if (source) {
        const bool is_dc = source == maps.dc;
        read_source.emplace(read_map(
            *source, mode, out.key_buf_, out.value_buf_,
            [&](const std::byte* key, const net_stat_counters& v) {
                out.rows.push_back(row_of(is_dc, key, v));
            },
            iterated));
    }
    if (second.joinable()) {
        second.join();
    }
    if (second_later) {
        read_second();
    }
    if (read_source && !*read_source) {
        return std::move(*read_source).error();
    }
    if (read_1 && !*read_1) {
        return std::move(*read_1).error();
    }
    if (other && !*other) {
        return std::move(*other).error();
    }
    if (source) {
        out.fills.push_back({source->name(), **read_source, source->max_entries()});
    }
    if (read_1) {
        out.fills.push_back({dc_1->name(), **read_1, dc_1->max_entries()});
        out.rows.insert(out.rows.end(), out.rows_1_.begin(), out.rows_1_.end());
        iterated |= iterated_1;
    }
    if (other) {
        out.fills.push_back({maps.cgroup->name(), **other, maps.cgroup->max_entries()});
    }
    // A batch read visits each hash bucket once, so it gives each key once; an iteration that a
    // concurrent delete restarts can give a key twice: its last values (the newer ones) stay.
    if (iterated) {
        out.dedup_.clear();
        size_t kept = 0;
        for (const traffic_row& r : out.rows) {
            auto [pos, added] = out.dedup_.insert({r.cgroup_id, r.dc, r.net_type});
            out.rows[added ? kept++ : pos] = r;
        }
        out.rows.resize(kept);
    }

    if (maps.errors) {
        out.has_errors = true;
        std::vector<std::byte>& buf = out.value_buf_;
        buf.resize(maps.errors->value_buffer_size());
        for (uint32_t i = 0; i < NET_STAT_ERR_MAX && i < maps.errors->max_entries(); ++i) {
            auto found = maps.errors->lookup(&i, buf.data());
            if (!found) {
                return std::move(found).error().context("read counter map " + maps.errors->name());
            }
            if (*found) {
                out.uncounted[i] = sum_cpus<net_stat_value>(buf.data(), buf.size());
            }
        }
    }
    return {};
}

ebpf::result<void> delete_cgroups(const counter_maps& maps, std::span<const uint64_t> gone,
                                  std::span<const traffic_row> keys,
                                  std::vector<traffic_row>& deleted) {
    detail::flat_index<uint64_t, detail::id_hash> dead;
    for (uint64_t id : gone) {
        dead.insert(id);
    }
    std::vector<std::byte> buf;
    // Deletes `key` and returns its final values (0 when absent).
    auto take = [&](ebpf::map& m, const void* key, net_stat_counters& v) -> ebpf::result<void> {
        v = {};
        buf.resize(m.value_buffer_size());
        auto r = m.lookup_and_erase(key, buf.data());
        if (!r && unsupported(r.error().code())) {
            // Before 5.14 hashes have no lookup-and-delete: what is counted between the two
            // calls is lost (never counted twice).
            auto found = m.lookup(key, buf.data());
            if (!found) {
                return std::move(found).error().context("delete from map " + m.name());
            }
            if (*found) {
                v = sum_cpus<net_stat_counters>(buf.data(), buf.size());
                auto erased = m.erase(key);
                if (!erased) {
                    return std::move(erased).error().context("delete from map " + m.name());
                }
            }
            return {};
        }
        if (!r) {
            return std::move(r).error().context("delete from map " + m.name());
        }
        if (*r) {
            v = sum_cpus<net_stat_counters>(buf.data(), buf.size());
        }
        return {};
    };

    ebpf::map* const source = maps.dc ? maps.dc : maps.cgroup;
    if (source) {
        for (const traffic_row& row : keys) {
            if (dead.find(row.cgroup_id) == dead.npos) {
                continue;
            }
            net_stat_counters v;
            if (source == maps.dc) {
                const net_stat_dc_key k{row.cgroup_id, row.dc, row.net_type};
                ebpf::map* half = maps.dc_1 && net_stat_dc_shard(&k) ? maps.dc_1 : source;
                EBPF_TRY(take(*half, &k, v));
            } else if (row.dc == 0 && row.net_type == 0) {
                const net_stat_key k{row.cgroup_id};
                EBPF_TRY(take(*source, &k, v));
            } else {
                continue;  // a per-cgroup map holds only the (cgroup, 0, 0) row
            }
            deleted.push_back({row.cgroup_id, row.dc, row.net_type, v.rx_bytes, v.rx_packets,
                               v.tx_bytes, v.tx_packets});
        }
    }
    // The per-cgroup map, when it is not the source, only counts what the dc map breaks down.
    if (maps.cgroup && maps.cgroup != source) {
        for (uint64_t id : gone) {
            const net_stat_key k{id};
            auto r = maps.cgroup->erase(&k);
            if (!r) {
                return std::move(r).error().context("delete from map " + maps.cgroup->name());
            }
        }
    }
    return {};
}

// ---------------------------------------------------------------------------------------------
// Roll-up

std::string_view roll_up(std::string_view path, uint32_t depth) {
    if (depth == 0 || path.empty() || path == "/") {
        return "/";
    }
    size_t pos = 0;  // the '/' that starts the current level
    for (uint32_t level = 0; level < depth; ++level) {
        size_t next = path.find('/', pos + 1);
        if (next == std::string_view::npos) {
            return path;
        }
        pos = next;
    }
    return path.substr(0, pos);
}

cgroup_rollup::cgroup_rollup(rollup_options options) {
    reset(options);
}

void cgroup_rollup::reset(rollup_options options) {
    options_ = options;
    labels_.clear();
    label& other = labels_.emplace_back();
    other.name = other.escaped = "other";
    other.used = true;
    free_labels_.clear();
    by_name_.clear();
    admitted_ = 0;
    series_.clear();
    series_index_.clear();
    order_.clear();
    order_dirty_ = true;
    ++layout_;
    forget_slots();
}

uint32_t cgroup_rollup::find_label(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? UINT32_MAX : it->second;
}

uint32_t cgroup_rollup::add_label(std::string_view name, bool admitted) {
    uint32_t l;
    if (!free_labels_.empty()) {
        l = free_labels_.back();
        free_labels_.pop_back();
    } else {
        l = uint32_t(labels_.size());
        labels_.emplace_back();
    }
    label& lb = labels_[l];
    lb.name.assign(name);
    lb.escaped = escape_label_value(name);
    lb.used = true;
    lb.admitted = admitted;
    lb.live = false;
    admitted_ += admitted;
    by_name_.emplace(lb.name, l);
    return l;
}

uint32_t cgroup_rollup::series_at(uint32_t target, uint32_t dc, uint32_t net_type) {
    auto [pos, added] = series_index_.insert({target, dc, net_type});
    if (added) {
        series& s = series_.emplace_back();
        s.label = target;
        s.dc = dc;
        s.net_type = net_type;
        order_dirty_ = true;
        ++layout_;
        ++layout_;
    }
    return pos;
}

void cgroup_rollup::forget_slots() {
    slots_.clear();
    slot_memo_.clear();
    first_slot_ = UINT32_MAX;
    ids_.clear();
    id_memo_.clear();
}

void cgroup_rollup::fold(std::span<const traffic_row> rows, const resolve_fn& resolve,
                         clock::time_point now) {
    constexpr uint32_t npos = UINT32_MAX;
    constexpr uint32_t kHold = UINT32_MAX;
    constexpr uint32_t kFresh = UINT32_MAX - 1;
    for (series& s : series_) {
        s.live = {};
    }
    for (label& l : labels_) {
        l.live = false;
    }
    // Keys no fold has seen for a while would pile up: start afresh when most are stale.
    if (slots_.size() > 2 * rows.size() + 1024) {
        forget_slots();
    }
    if (++fold_no_ == 0) {
        for (id_memo& m : id_memo_) {
            m.stamp = 0;
        }
        fold_no_ = 1;
    }

    // Growing these a step at a time would copy (and fault in) each several times.
    slots_.reserve(rows.size());
    slot_memo_.reserve(rows.size());
    if (series_.empty()) {
        series_.reserve(rows.size());
        series_index_.reserve(rows.size());
    }

    // Each row's slot (its key's memory), and each distinct cgroup once.
    row_slot_.resize(rows.size());
    fold_ids_.clear();
    uint32_t expected = first_slot_;
    uint32_t prev = npos;
    for (size_t i = 0; i < rows.size(); ++i) {
        const traffic_row& r = rows[i];
        const detail::row_key k{r.cgroup_id, r.dc, r.net_type};
        uint32_t s = expected;
        if (s >= slot_memo_.size() || !(slots_.key(s) == k)) {
            bool added;
            std::tie(s, added) = slots_.insert(k);
            if (added) {
                const auto [id, new_id] = ids_.insert(k.cgroup_id);
                if (new_id) {
                    id_memo_.push_back({npos, 0, 0});
                }
                slot_memo_.push_back({id, npos, npos, npos});
            }
        }
        if (prev == npos) {
            first_slot_ = s;
        } else {
            slot_memo_[prev].next = s;
        }
        prev = s;
        expected = slot_memo_[s].next;
        row_slot_[i] = s;
        const uint32_t id = slot_memo_[s].id;
        if (id_memo_[id].stamp != fold_no_) {
            id_memo_[id].stamp = fold_no_;
            fold_ids_.push_back(id);
        }
    }

    // Each distinct cgroup resolved to the series label it adds into; the label it had last
    // time is checked by name, which spares hashing the name.
    std::vector<std::pair<std::string_view, uint32_t>> fresh;  // (new label, id position)
    for (uint32_t id : fold_ids_) {
        id_memo& m = id_memo_[id];
        const cgroup_path p = resolve(ids_.key(id));
        if (p.hold) {
            m.target = kHold;
            continue;
        }
        if (!p.path) {
            m.target = 0;
            continue;
        }
        const std::string_view name = roll_up(*p.path, options_.cgroup_depth);
        uint32_t l = m.label;
        if (l >= labels_.size() || !labels_[l].used || labels_[l].name != name) {
            l = find_label(name);
            m.label = l;
        }
        if (l == npos) {
            fresh.emplace_back(name, id);
            m.target = kFresh;
            continue;
        }
        labels_[l].live = true;
        labels_[l].last_live = now;
        m.target = target(l);
    }
    // Labels without live cgroups go before new ones are admitted, so a freed slot is taken
    // in the same fold.
    drop_labels(now);
    // New labels in name order, so that which ones the cap admits does not depend on the
    // order the kernel gave the keys in.
    std::sort(fresh.begin(), fresh.end());
    for (const auto& [name, id] : fresh) {
        uint32_t l = find_label(name);
        if (l == npos) {
            l = add_label(name, admitted_ < options_.max_cgroups);
        }
        labels_[l].live = true;
        labels_[l].last_live = now;
        id_memo_[id].label = l;
        id_memo_[id].target = target(l);
    }

    // Each row's series (remembered in its slot while its label's target holds), then the
    // sums: the series are in exposition order, not the rows', so the sums prefetch ahead.
    row_series_.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        slot_memo& sm = slot_memo_[row_slot_[i]];
        const uint32_t t = id_memo_[sm.id].target;
        if (t == kHold) {
            row_series_[i] = npos;
            continue;
        }
        if (sm.target != t || sm.series == npos) {
            sm.series = series_at(t, rows[i].dc, rows[i].net_type);
            sm.target = t;
        }
        row_series_[i] = sm.series;
    }
    constexpr size_t kAhead = 16;
    for (size_t i = 0; i < rows.size(); ++i) {
        if (i + kAhead < rows.size() && row_series_[i + kAhead] != npos) {
            __builtin_prefetch(&series_[row_series_[i + kAhead]].live, 1);
        }
        if (row_series_[i] == npos) {
            continue;
        }
        const traffic_row& r = rows[i];
        series_[row_series_[i]].live += {r.rx_bytes, r.rx_packets, r.tx_bytes, r.tx_packets};
    }
    arrange();
}

void cgroup_rollup::arrange() {
    if (!order_dirty_) {
        return;
    }
    // Store the series in exposition order, so that rendering reads them front to back.
    sort_if_needed();
    std::vector<series> sorted;
    sorted.reserve(series_.size());
    std::vector<uint32_t> moved_to(series_.size());
    for (uint32_t i : order_) {
        moved_to[i] = uint32_t(sorted.size());
        sorted.push_back(series_[i]);
    }
    series_.swap(sorted);
    series_index_.permute(moved_to);
    for (uint32_t i = 0; i < series_.size(); ++i) {
        order_[i] = i;
    }
    for (slot_memo& sm : slot_memo_) {
        if (sm.series != UINT32_MAX) {
            sm.series = moved_to[sm.series];
        }
    }
}

void cgroup_rollup::retire(const std::string* path, uint32_t dc, uint32_t net_type,
                           const traffic_counters& last, clock::time_point now) {
    uint32_t t = 0;
    if (path) {
        const std::string_view name = roll_up(*path, options_.cgroup_depth);
        uint32_t l = find_label(name);
        if (l == UINT32_MAX) {
            // Its cgroup was never folded (made and removed between two scrapes): the label
            // starts its grace period now.
            l = add_label(name, admitted_ < options_.max_cgroups);
            labels_[l].last_live = now;
        }
        t = target(l);
    }
    series_[series_at(t, dc, net_type)].retired += last;
}

void cgroup_rollup::drop_labels(clock::time_point now) {
    bool series_dropped = false;
    for (uint32_t l = 1; l < labels_.size(); ++l) {
        label& lb = labels_[l];
        if (!lb.used || lb.live) {
            continue;
        }
        if (lb.admitted) {
            if (now - lb.last_live < options_.retired_grace) {
                continue;
            }
            series_dropped = true;
            --admitted_;
        }
        by_name_.erase(lb.name);
        lb.used = false;
        lb.admitted = false;
        lb.name.clear();
        lb.escaped.clear();
        free_labels_.push_back(l);
    }
    if (!series_dropped) {
        return;
    }
    std::erase_if(series_, [&](const series& s) { return s.label != 0 && !labels_[s.label].used; });
    for (slot_memo& sm : slot_memo_) {
        sm.series = UINT32_MAX;
    }
    series_index_.clear();
    for (const series& s : series_) {
        series_index_.insert({s.label, s.dc, s.net_type});
    }
    order_dirty_ = true;
    ++layout_;
}

void cgroup_rollup::sort_if_needed() const {
    if (!order_dirty_) {
        return;
    }
    std::vector<uint32_t> by_name;
    for (uint32_t l = 0; l < labels_.size(); ++l) {
        if (labels_[l].used) {
            by_name.push_back(l);
        }
    }
    std::sort(by_name.begin(), by_name.end(),
              [&](uint32_t a, uint32_t b) { return labels_[a].name < labels_[b].name; });
    // By label with a counting sort (labels are few next to series), then by (dc, net type)
    // within each label.
    std::vector<uint32_t> start(labels_.size() + 1, 0);
    for (const series& x : series_) {
        ++start[x.label + 1];
    }
    std::vector<uint32_t> begin(by_name.size() + 1, 0);
    for (uint32_t i = 0; i < by_name.size(); ++i) {
        begin[i + 1] = begin[i] + start[by_name[i] + 1];
    }
    for (uint32_t i = 0; i < by_name.size(); ++i) {
        start[by_name[i]] = begin[i];
    }
    order_.resize(series_.size());
    for (uint32_t i = 0; i < series_.size(); ++i) {
        order_[start[series_[i].label]++] = i;
    }
    for (uint32_t g = 0; g < by_name.size(); ++g) {
        std::sort(order_.begin() + begin[g], order_.begin() + begin[g + 1],
                  [&](uint32_t a, uint32_t b) {
                      const series& x = series_[a];
                      const series& y = series_[b];
                      return x.dc != y.dc ? x.dc < y.dc : x.net_type < y.net_type;
                  });
    }
    order_dirty_ = false;
}

const cgroup_rollup::series* cgroup_rollup::find(std::string_view cgroup, uint32_t dc,
                                                 uint32_t net_type) const {
    uint32_t l = cgroup == "other" ? 0 : find_label(cgroup);
    if (l == UINT32_MAX || (l != 0 && !labels_[l].admitted)) {
        return nullptr;
    }
    uint32_t pos = series_index_.find({l, dc, net_type});
    return pos == series_index_.npos ? nullptr : &series_[pos];
}

size_t cgroup_rollup::labels_in_use() const {
    bool other =
        std::any_of(series_.begin(), series_.end(), [](const series& s) { return s.label == 0; });
    return admitted_ + (other ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// Exposition

std::string escape_label_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const size_t n = v.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c < 0x80) {
            out += char(c);
        } else {
            size_t len = utf8_sequence(p + i, n - i);
            if (len == 0) {
                out += "\xef\xbf\xbd";  // U+FFFD
                ++i;
            } else {
                out.append(v.data() + i, len);
                i += len;
            }
            continue;
        }
        ++i;
    }
    return out;
}

const cgroup_rollup::label_sets& cgroup_rollup::label_sets_for(
    std::span<const std::string> dc_names, std::span<const std::string> net_names) const {
    label_sets& c = sets_;
    if (c.layout == layout_ &&
        std::equal(dc_names.begin(), dc_names.end(), c.dcs.begin(), c.dcs.end()) &&
        std::equal(net_names.begin(), net_names.end(), c.nets.begin(), c.nets.end())) {
        return c;
    }
    c.dcs.assign(dc_names.begin(), dc_names.end());
    c.nets.assign(net_names.begin(), net_names.end());
    auto escape_all = [](std::span<const std::string> names) {
        std::vector<std::string> e;
        e.reserve(names.size());
        for (const std::string& n : names) {
            e.push_back(escape_label_value(n));
        }
        return e;
    };
    const std::vector<std::string> dcs = escape_all(dc_names);
    const std::vector<std::string> nets = escape_all(net_names);
    const std::string other = "other";
    auto name_of = [&](const std::vector<std::string>& names, uint32_t id) -> const std::string& {
        return id < names.size() ? names[id] : other;
    };
    c.text.clear();
    c.ends.clear();
    c.text.reserve(series_.size() * 48);
    c.ends.reserve(series_.size());
    for_each([&](const series& s) {
        put(c.text, "{cgroup=\"");
        put(c.text, labels_[s.label].escaped);
        put(c.text, "\",dc=\"");
        put(c.text, name_of(dcs, s.dc));
        put(c.text, "\",net=\"");
        put(c.text, name_of(nets, s.net_type));
        put(c.text, "\"} ");
        c.ends.push_back(uint32_t(c.text.size()));
    });
    c.layout = layout_;
    return c;
}

namespace {

struct traffic_family {
    const char* name;
    const char* help;
    uint64_t traffic_counters::*field;
};
constexpr traffic_family traffic_families[] = {
    {"ebpf_agent_cgroup_receive_bytes_total",
     "Bytes received by sockets of the cgroup (IP length), by the peer's datacenter and "
     "network type.",
     &traffic_counters::rx_bytes},
    {"ebpf_agent_cgroup_receive_packets_total",
     "Packets received by sockets of the cgroup (wire segments), by the peer's datacenter "
     "and network type.",
     &traffic_counters::rx_packets},
    {"ebpf_agent_cgroup_transmit_bytes_total",
     "Bytes sent by sockets of the cgroup (IP length), by the peer's datacenter and network "
     "type.",
     &traffic_counters::tx_bytes},
    {"ebpf_agent_cgroup_transmit_packets_total",
     "Packets sent by sockets of the cgroup (wire segments), by the peer's datacenter and "
     "network type.",
     &traffic_counters::tx_packets},
};

// Appends the families [first, last) of traffic_families. The lines are written into a 64 KiB
// buffer that is appended to `out` whenever it fills: a few thousand appends for the page
// instead of a few per line.
void render_families(const cgroup_rollup& rollup, const cgroup_rollup::label_sets& sets,
                     size_t first, size_t last, std::string& out) {
    std::vector<char> chunk(64 * 1024);
    for (size_t fi = first; fi < last; ++fi) {
        const traffic_family& f = traffic_families[fi];
        put_help(out, f.name, f.help, "counter");
        const std::string_view name = f.name;
        char* const begin = chunk.data();
        char* const end = begin + chunk.size();
        char* p = begin;
        uint32_t from = 0;
        size_t i = 0;
        rollup.for_each([&](const cgroup_rollup::series& s) {
            const size_t block = sets.ends[i] - from;
            if (size_t(end - p) < name.size() + block + 22) {
                out.append(begin, size_t(p - begin));
                p = begin;
                if (size_t(end - p) < name.size() + block + 22) {  // a very long cgroup path
                    put(out, name);
                    out.append(sets.text, from, block);
                    put_u64(out, s.value().*f.field);
                    out += '\n';
                    from = sets.ends[i++];
                    return;
                }
            }
            std::memcpy(p, name.data(), name.size());
            p += name.size();
            std::memcpy(p, sets.text.data() + from, block);
            p += block;
            p = std::to_chars(p, end, s.value().*f.field).ptr;
            *p++ = '\n';
            from = sets.ends[i++];
        });
        out.append(begin, size_t(p - begin));
    }
}

}  // namespace

void render_traffic(const cgroup_rollup& rollup, std::span<const std::string> dc_names,
                    std::span<const std::string> net_names, std::string& out) {
    // The label sets are the same in the four families, and from one scrape to the next while
    // the series stay: each is built once.
    const cgroup_rollup::label_sets& sets = rollup.label_sets_for(dc_names, net_names);
    size_t longest_name = 0;
    for (const traffic_family& f : traffic_families) {
        longest_name = std::max(longest_name, std::strlen(f.name));
    }
    const size_t family_bytes = sets.text.size() + sets.ends.size() * (longest_name + 22) + 512;
    out.reserve(out.size() + 4 * family_bytes + 2048);
    // A large page is written on two threads, two families each: rendering is mostly copying
    // and number formatting, and the second half's copy into `out` costs less than it saves.
    constexpr size_t kParallelSeries = 4096;
    if (sets.ends.size() < kParallelSeries) {
        render_families(rollup, sets, 0, 4, out);
        return;
    }
    std::string& second = rollup.spare_page();
    second.clear();
    second.reserve(2 * family_bytes);
    std::thread t;
    try {
        t = std::thread([&] { render_families(rollup, sets, 2, 4, second); });
    } catch (const std::system_error&) {
        // No thread to be had (a pids limit): all four families here.
        render_families(rollup, sets, 0, 4, out);
        return;
    }
    render_families(rollup, sets, 0, 2, out);
    t.join();
    out.append(second);
}

void render_self(const self_state& self, const counter_snapshot& snapshot, size_t cgroups_tracked,
                 double scrape_seconds, const process_stats& process, std::string& out) {
    put_help(out, "ebpf_agent_build_info", "The agent's version and source revision.", "gauge");
    put_sample(out, "ebpf_agent_build_info",
               {{"version", self.version}, {"revision", self.revision}}, 1);
    if (!self.local_dc.empty()) {
        put_help(out, "ebpf_agent_node_info", "The datacenter this host is in.", "gauge");
        put_sample(out, "ebpf_agent_node_info", {{"dc", self.local_dc}}, 1);
    }
    if (!self.programs.empty()) {
        put_help(out, "ebpf_agent_program_attached",
                 "Whether the program is attached (1) or not (0); mode is link or multi.", "gauge");
        for (const program_state& p : self.programs) {
            put_sample(out, "ebpf_agent_program_attached",
                       {{"program", p.name}, {"attach_type", p.attach_type}, {"mode", p.mode}},
                       p.attached ? 1 : 0);
        }
        put_help(out, "ebpf_agent_program_info",
                 "The kernel ids of the program and of its link (empty without a link).", "gauge");
        for (const program_state& p : self.programs) {
            const std::string prog_id = std::to_string(p.prog_id);
            const std::string link_id = p.link_id ? std::to_string(p.link_id) : std::string();
            put_sample(out, "ebpf_agent_program_info",
                       {{"program", p.name}, {"prog_id", prog_id}, {"link_id", link_id}}, 1);
        }
    }
    put_help(out, "ebpf_agent_config_info", "The short sha256 of the effective config.", "gauge");
    put_sample(out, "ebpf_agent_config_info", {{"hash", self.config_hash}}, 1);
    put_help(out, "ebpf_agent_config_last_reload_successful",
             "Whether the last config (re)load succeeded.", "gauge");
    put_sample(out, "ebpf_agent_config_last_reload_successful", {}, self.last_reload_ok ? 1 : 0);
    put_help(out, "ebpf_agent_config_last_reload_success_timestamp_seconds",
             "When the config was last (re)loaded successfully, in unix seconds.", "gauge");
    put_sample(out, "ebpf_agent_config_last_reload_success_timestamp_seconds", {},
               self.last_reload_time);

    if (!snapshot.fills.empty() || !self.maps.empty()) {
        put_help(out, "ebpf_agent_map_entries", "Entries in the BPF map.", "gauge");
        for (const auto* fills : {&snapshot.fills, &self.maps}) {
            for (const map_fill& m : *fills) {
                put_sample(out, "ebpf_agent_map_entries", {{"map", m.name}}, double(m.entries));
            }
        }
        put_help(out, "ebpf_agent_map_max_entries", "The BPF map's capacity.", "gauge");
        for (const auto* fills : {&snapshot.fills, &self.maps}) {
            for (const map_fill& m : *fills) {
                put_sample(out, "ebpf_agent_map_max_entries", {{"map", m.name}},
                           double(m.max_entries));
            }
        }
    }
    if (snapshot.has_errors) {
        struct family {
            const char* name;
            const char* help;
            __u64 net_stat_value::*field;
        };
        for (const family& f :
             {family{"ebpf_agent_uncounted_bytes_total",
                     "Bytes the counter map could not count because it was full.",
                     &net_stat_value::bytes},
              family{"ebpf_agent_uncounted_packets_total",
                     "Packets the counter map could not count because it was full.",
                     &net_stat_value::packets}}) {
            put_help(out, f.name, f.help, "counter");
            for (uint32_t i = 0; i < NET_STAT_ERR_MAX; ++i) {
                const uncounted_slot& u = uncounted_slots[i];
                put_sample(out, f.name, {{"map", u.map}, {"direction", u.direction}},
                           double(snapshot.uncounted[i].*f.field));
            }
        }
    }
    put_help(out, "ebpf_agent_cgroups_tracked",
             "Distinct cgroup label values after roll-up, \"other\" included.", "gauge");
    put_sample(out, "ebpf_agent_cgroups_tracked", {}, double(cgroups_tracked));
    put_help(out, "ebpf_agent_scrape_duration_seconds",
             "Time this scrape took to read the maps and render the counters.", "gauge");
    put_sample(out, "ebpf_agent_scrape_duration_seconds", {}, scrape_seconds);

    put_help(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             "counter");
    put_sample(out, "process_cpu_seconds_total", {}, process.cpu_seconds);
    put_help(out, "process_open_fds", "Number of open file descriptors.", "gauge");
    put_sample(out, "process_open_fds", {}, process.open_fds);
    put_help(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
    put_sample(out, "process_resident_memory_bytes", {}, process.resident_bytes);
    put_help(out, "process_start_time_seconds",
             "Start time of the process since unix epoch in seconds.", "gauge");
    put_sample(out, "process_start_time_seconds", {}, process.start_time);
}

process_stats read_process_stats() {
    process_stats p;
    auto slurp = [](const char* path) {
        std::string s;
        FILE* f = std::fopen(path, "re");
        if (!f) {
            return s;
        }
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
            s.append(buf, n);
        }
        std::fclose(f);
        return s;
    };
    const double page = double(::sysconf(_SC_PAGESIZE));
    const double ticks = double(::sysconf(_SC_CLK_TCK));

    if (std::string statm = slurp("/proc/self/statm"); !statm.empty()) {
        unsigned long long size = 0, resident = 0;
        if (std::sscanf(statm.c_str(), "%llu %llu", &size, &resident) == 2) {
            p.resident_bytes = double(resident) * page;
        }
    }
    // /proc/self/stat: the command name may hold spaces and parentheses; fields count from
    // after its last ')': state is field 3, utime 14, stime 15, starttime 22.
    std::string stat = slurp("/proc/self/stat");
    if (size_t paren = stat.rfind(')'); paren != std::string::npos) {
        std::vector<std::string_view> fields;
        std::string_view rest(stat);
        rest.remove_prefix(paren + 1);
        while (!rest.empty()) {
            size_t b = rest.find_first_not_of(" \n");
            if (b == std::string_view::npos) {
                break;
            }
            rest.remove_prefix(b);
            size_t e = std::min(rest.find(' '), rest.size());
            fields.push_back(rest.substr(0, e));
            rest.remove_prefix(e);
        }
        auto field = [&](size_t n) -> unsigned long long {
            unsigned long long v = 0;
            if (n - 3 < fields.size()) {
                std::from_chars(fields[n - 3].data(), fields[n - 3].data() + fields[n - 3].size(),
                                v);
            }
            return v;
        };
        p.cpu_seconds = double(field(14) + field(15)) / ticks;
        const double since_boot = double(field(22)) / ticks;
        std::string proc_stat = slurp("/proc/stat");
        if (size_t b = proc_stat.find("\nbtime "); b != std::string::npos) {
            p.start_time =
                double(std::strtoull(proc_stat.c_str() + b + 7, nullptr, 10)) + since_boot;
        }
    }
    if (DIR* d = ::opendir("/proc/self/fd")) {
        int n = 0;
        while (dirent* e = ::readdir(d)) {
            n += e->d_name[0] != '.';
        }
        ::closedir(d);
        p.open_fds = n - 1;  // the directory's own
    }
    return p;
}

// ---------------------------------------------------------------------------------------------
// The scrape

metrics_collector::metrics_collector(counter_maps maps, cgroup_names& names, rollup_options options)
    : maps_(maps), names_(names), rollup_(options) {}

void metrics_collector::set_options(const rollup_options& o) {
    const rollup_options& c = rollup_.options();
    if (o.cgroup_depth != c.cgroup_depth || o.max_cgroups != c.max_cgroups ||
        o.retired_grace != c.retired_grace) {
        rollup_.reset(o);
    }
}

ebpf::result<void> metrics_collector::collect(clock::time_point now) {
    EBPF_TRY(read_counters(maps_, snapshot_));

    ids_.clear();
    id_set_.clear();
    for (const traffic_row& r : snapshot_.rows) {
        if (id_set_.insert(r.cgroup_id).second) {
            ids_.push_back(r.cgroup_id);
        }
    }
    for (uint64_t id : snapshot_.other_ids) {
        if (id_set_.insert(id).second) {
            ids_.push_back(id);
        }
    }
    const std::vector<uint64_t> gone = names_.update(ids_, walk_error_, now);

    ebpf::result<void> deleting;
    if (!gone.empty()) {
        deleted_.clear();
        deleting = delete_cgroups(maps_, gone, snapshot_.rows, deleted_);
        // What was deleted leaves the live rows and goes to the retired counts, also when the
        // deletion stopped part way.
        detail::flat_index<detail::row_key, detail::row_key_hash> dropped;
        for (const traffic_row& l : deleted_) {
            rollup_.retire(names_.lookup(l.cgroup_id).path, l.dc, l.net_type,
                           {l.rx_bytes, l.rx_packets, l.tx_bytes, l.tx_packets}, now);
            dropped.insert({l.cgroup_id, l.dc, l.net_type});
        }
        std::erase_if(snapshot_.rows, [&](const traffic_row& r) {
            return dropped.find({r.cgroup_id, r.dc, r.net_type}) != dropped.npos;
        });
        if (deleting) {
            retired_cgroups_ += gone.size();
        }
    }
    rollup_.fold(
        snapshot_.rows, [&](uint64_t id) { return names_.lookup(id); }, now);
    if (!deleting) {
        return std::move(deleting).error().context("delete the keys of removed cgroups");
    }
    return {};
}

void metrics_collector::render(const self_state& self, std::span<const std::string> dc_names,
                               std::span<const std::string> net_names, double scrape_seconds,
                               std::string& out) const {
    render_traffic(rollup_, dc_names, net_names, out);
    render_self(self, snapshot_, rollup_.labels_in_use(), scrape_seconds, read_process_stats(),
                out);
}

std::string metrics_collector::scrape(const self_state& self, std::span<const std::string> dc_names,
                                      std::span<const std::string> net_names, std::string& out) {
    const auto start = clock::now();
    std::string error;
    if (auto r = collect(start); !r) {
        error = r.error().message();
    }
    render_traffic(rollup_, dc_names, net_names, out);
    const double seconds = std::chrono::duration<double>(clock::now() - start).count();
    render_self(self, snapshot_, rollup_.labels_in_use(), seconds, read_process_stats(), out);
    return error;
}

}  // namespace agent
