// The agent's statistics: net_stat's counter maps read per scrape, cgroups rolled up into a
// bounded set of labels with removed cgroups' counts kept, and the Prometheus text exposition
// (format 0.0.4) of /metrics (agent).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cgroup_names.hpp"
#include "ebpf/base/result.hpp"
#include "ebpf/map.hpp"
#include "net_stat.h"

namespace agent {

namespace detail {
// An open-addressing index from a small fixed-size key to a dense position (0, 1, ...): the
// per-scrape joins over 10^5 keys allocate nothing once warm and clear in O(slots).
template <class Key, class Hash>
class flat_index {
  public:
    static constexpr uint32_t npos = UINT32_MAX;

    // Returns the position of `k` and whether it was added (at position size()).
    std::pair<uint32_t, bool> insert(const Key& k) {
        if ((keys_.size() + 1) * 2 > slots_.size()) {
            grow();
        }
        size_t i = Hash()(k) & mask_;
        for (;; i = (i + 1) & mask_) {
            const uint32_t s = slots_[i];
            if (s == 0) {
                keys_.push_back(k);
                slots_[i] = uint32_t(keys_.size());
                return {uint32_t(keys_.size() - 1), true};
            }
            if (keys_[s - 1] == k) {
                return {s - 1, false};
            }
        }
    }
    // Returns the position of `k`, or npos.
    uint32_t find(const Key& k) const {
        if (slots_.empty()) {
            return npos;
        }
        for (size_t i = Hash()(k) & mask_;; i = (i + 1) & mask_) {
            const uint32_t s = slots_[i];
            if (s == 0) {
                return npos;
            }
            if (keys_[s - 1] == k) {
                return s - 1;
            }
        }
    }
    const Key& key(uint32_t pos) const { return keys_[pos]; }
    size_t size() const { return keys_.size(); }
    void clear() {
        std::fill(slots_.begin(), slots_.end(), 0u);
        keys_.clear();
    }
    void reserve(size_t n) {
        while (n * 2 > slots_.size()) {
            grow();
        }
    }
    // Moves the key at each position p to moved_to[p] (a permutation of the positions),
    // without hashing anything again.
    void permute(std::span<const uint32_t> moved_to) {
        std::vector<Key> keys(keys_.size());
        for (uint32_t p = 0; p < keys_.size(); ++p) {
            keys[moved_to[p]] = keys_[p];
        }
        keys_.swap(keys);
        for (uint32_t& s : slots_) {
            if (s != 0) {
                s = moved_to[s - 1] + 1;
            }
        }
    }

  private:
    void grow() {
        const size_t n = slots_.empty() ? 64 : slots_.size() * 2;
        slots_.assign(n, 0u);
        mask_ = n - 1;
        for (uint32_t p = 0; p < keys_.size(); ++p) {
            size_t i = Hash()(keys_[p]) & mask_;
            while (slots_[i] != 0) {
                i = (i + 1) & mask_;
            }
            slots_[i] = p + 1;
        }
    }
    std::vector<uint32_t> slots_;  // position + 1; 0 is empty
    std::vector<Key> keys_;
    size_t mask_ = 0;
};

inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

struct row_key {
    uint64_t cgroup_id;
    uint32_t dc, net_type;
    bool operator==(const row_key&) const = default;
};
struct row_key_hash {
    size_t operator()(const row_key& k) const {
        return mix64(k.cgroup_id ^ (uint64_t(k.dc) << 32 | k.net_type) * 0x9e3779b97f4a7c15ULL);
    }
};
struct id_hash {
    size_t operator()(uint64_t id) const { return mix64(id); }
};
}  // namespace detail

// How full a map is, for ebpf_agent_map_entries / ebpf_agent_map_max_entries.
struct map_fill {
    std::string name;
    uint64_t entries = 0;
    uint64_t max_entries = 0;
};

// ---------------------------------------------------------------------------------------------
// Reading the maps

// What an index of the errors map (enum net_stat_error) stands for: the counter map that was
// full and the direction whose traffic it could not take.
struct uncounted_slot {
    const char* map;        // NET_STAT_MAP_CGROUP or NET_STAT_MAP_DC
    const char* direction;  // "receive" or "transmit", as in the traffic families' names
};
inline constexpr uncounted_slot uncounted_slots[NET_STAT_ERR_MAX] = {
    {NET_STAT_MAP_CGROUP, "transmit"},
    {NET_STAT_MAP_CGROUP, "receive"},
    {NET_STAT_MAP_DC, "transmit"},
    {NET_STAT_MAP_DC, "receive"},
};
static_assert(NET_STAT_ERR_CGROUP_TX_FULL == 0 && NET_STAT_ERR_CGROUP_RX_FULL == 1 &&
              NET_STAT_ERR_DC_TX_FULL == 2 && NET_STAT_ERR_DC_RX_FULL == 3);

// The traffic of one (cgroup, peer datacenter, peer network type), summed over CPUs.
struct traffic_row {
    uint64_t cgroup_id = 0;
    uint32_t dc = 0;        // 0: a peer in no known network (rendered "other")
    uint32_t net_type = 0;  // 0: likewise
    uint64_t rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
};

// net_stat's maps as the daemon holds them (NET_STAT_MAP_* in net_stat.h); any may be null.
// The daemon passes the dc map only when the dc programs are enabled: the object creates it
// either way, and an empty source would hide the per-cgroup counts.
struct counter_maps {
    ebpf::map* cgroup = nullptr;  // stat_cgroup: net_stat_key -> net_stat_counters per CPU
    ebpf::map* dc = nullptr;      // stat_dc: net_stat_dc_key -> net_stat_counters per CPU
    ebpf::map* errors = nullptr;  // stat_errors: enum net_stat_error -> net_stat_value per CPU
    // stat_dc_1: the other half of the dc keys (net_stat_dc_shard()); with `dc` only.
    ebpf::map* dc_1 = nullptr;
};

// What one read of the counter maps found.
struct counter_snapshot {
    // One row per (cgroup, dc, net type), in no particular order. The dc map is the source when
    // it exists; the per-cgroup map is the source (rows with dc = net = 0, rendered dc="other",
    // net="other") only when the dc map is absent. The two are never added together: the dc
    // map breaks down the same traffic the per-cgroup map counts.
    std::vector<traffic_row> rows;
    // Traffic not counted because a counter map was full, by enum net_stat_error.
    std::array<net_stat_value, NET_STAT_ERR_MAX> uncounted{};
    bool has_errors = false;  // the errors map exists
    // The entries of each counter map that exists (all are read, source or not): dc first.
    std::vector<map_fill> fills;
    // The cgroup ids of the per-cgroup map when it is not the source, so that the keys of
    // removed cgroups are deleted from it too (repeats allowed).
    std::vector<uint64_t> other_ids;

    // The reader's buffers, kept between scrapes.
    detail::flat_index<detail::row_key, detail::row_key_hash> dedup_;
    std::vector<std::byte> key_buf_, value_buf_;
    std::vector<std::byte> other_key_buf_, other_value_buf_;  // the second thread's
    std::vector<traffic_row> rows_1_;                         // its rows of stat_dc_1
};

enum class read_mode {
    batch,    // BPF_MAP_LOOKUP_BATCH (5.6+), falling back to iteration where unsupported
    iterate,  // BPF_MAP_GET_NEXT_KEY and a lookup per key
};

// Reads the counter maps into `out`, reusing its buffers. Each present map must have the
// layout net_stat.h gives (an error names the map that does not). Most of a read is the kernel
// walking the hash, some 400 ns an entry (bench/agent_bench.cpp), hence one entry per key for
// both directions.
ebpf::result<void> read_counters(const counter_maps& maps, counter_snapshot& out,
                                 read_mode mode = read_mode::batch);

// Deletes the keys of the cgroups `gone` from the counter maps: from the dc map the keys that
// `keys` (the rows of the last read) list for them, from the per-cgroup map their one key.
// Appends each row it deleted from the source map (see counter_snapshot::rows) with its final
// values, both directions, summed over CPUs (read by the deletion itself where the kernel can:
// BPF_MAP_LOOKUP_AND_DELETE_ELEM on hashes, 5.14+; 0 when the key was already gone), also when
// it fails part way.
ebpf::result<void> delete_cgroups(const counter_maps& maps, std::span<const uint64_t> gone,
                                  std::span<const traffic_row> keys,
                                  std::vector<traffic_row>& deleted);

// ---------------------------------------------------------------------------------------------
// Roll-up and cardinality

// Returns `path` rolled up to `depth` levels: "/a/b/c" at depth 2 is "/a/b"; anything at
// depth 0 is "/". The result is a prefix of `path`, or "/".
std::string_view roll_up(std::string_view path, uint32_t depth);

struct rollup_options {
    // Levels below the mount kept in the cgroup label; deeper cgroups add into their ancestor.
    uint32_t cgroup_depth = 3;
    // Distinct cgroup label values besides "other".
    uint32_t max_cgroups = 1000;
    // How long a label with no live cgroup keeps its series (with the counts its removed
    // cgroups left) before they are dropped: a service restarted within it continues its
    // series instead of starting a new one.
    std::chrono::steady_clock::duration retired_grace = std::chrono::minutes(5);
};

// The four counters of a series.
struct traffic_counters {
    uint64_t rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
    traffic_counters& operator+=(const traffic_counters& o) {
        rx_bytes += o.rx_bytes;
        rx_packets += o.rx_packets;
        tx_bytes += o.tx_bytes;
        tx_packets += o.tx_packets;
        return *this;
    }
    bool operator==(const traffic_counters&) const = default;
};

// Sums cgroups' traffic into series by (cgroup label, dc, net type), where the label is the
// cgroup's path rolled up to cgroup_depth, at most max_cgroups of them, and "other".
//
// The exact rule, which keeps every series monotonic while cgroups come and go:
// - A label is made the first time a cgroup (live, or removed and retired) rolls up into it.
//   It is *admitted* (its own series) while fewer than max_cgroups labels are admitted, else
//   it is *sent to "other"*; labels made in the same fold are taken in name order. A label
//   keeps that decision for as long as it exists.
// - A series' value is the sum of the current counts of the live cgroups whose label maps to
//   it, plus its retired counts.
// - When a cgroup is removed, its keys are deleted from the maps and their final counts are
//   added to the retired counts of the series its label maps to (retire()); so the sum does
//   not drop. A cgroup whose path was never known retires into "other".
// - A label sent to "other" is forgotten as soon as no live cgroup maps to it (its removed
//   cgroups' counts stay in "other", which is never dropped); if it shows up again it is
//   decided afresh, without taking anything out of "other".
// - An admitted label with no live cgroup keeps its series for retired_grace, then its series
//   end (a series that ends is not a counter reset) and its slot is free.
// - Cgroups that are not resolved yet (cgroup_path::hold) are left out until they are: they
//   join their label with all their counts, never passing through "other".
// Changing the options starts over (reset()), which Prometheus sees as a counter reset.
class cgroup_rollup {
  public:
    using clock = std::chrono::steady_clock;
    using resolve_fn = std::function<cgroup_path(uint64_t cgroup_id)>;

    struct series {
        uint32_t label = 0;  // 0 is "other"
        uint32_t dc = 0;
        uint32_t net_type = 0;
        traffic_counters live;     // live cgroups, as of the last fold()
        traffic_counters retired;  // removed cgroups
        traffic_counters value() const {
            traffic_counters v = live;
            v += retired;
            return v;
        }
    };

    explicit cgroup_rollup(rollup_options options = {});

    // Replaces the live counts with `rows` (the rows of removed cgroups already taken out),
    // each cgroup resolved once through `resolve`, and drops labels as the rule says.
    void fold(std::span<const traffic_row> rows, const resolve_fn& resolve,
              clock::time_point now = clock::now());

    // Adds the final counts of a removed cgroup's key to its label's series; `path` is its
    // last known path, nullptr when it was never resolved ("other").
    void retire(const std::string* path, uint32_t dc, uint32_t net_type,
                const traffic_counters& last, clock::time_point now = clock::now());

    // Forgets everything, retired counts included, and takes new options.
    void reset(rollup_options options);

    // Calls f(const series&) for every series in exposition order: by label name, dc, net type.
    template <class F>
    void for_each(F&& f) const {
        sort_if_needed();
        for (uint32_t i : order_) {
            f(series_[i]);
        }
    }
    // Returns the label value of a series' label index (the path or "other").
    const std::string& label_name(uint32_t label) const { return labels_[label].name; }
    // Returns the same, escaped for the exposition.
    const std::string& label_escaped(uint32_t label) const { return labels_[label].escaped; }
    // Returns the value of the series (cgroup label, dc, net type), if there is one.
    const series* find(std::string_view cgroup, uint32_t dc, uint32_t net_type) const;
    // Returns how many distinct cgroup label values the series carry ("other" included).
    size_t labels_in_use() const;
    size_t series_count() const { return series_.size(); }
    const rollup_options& options() const { return options_; }

    // The label sets of the series, `{cgroup="...",dc="...",net="..."} ` each, in exposition
    // order: series i's ends at ends[i]. Kept until the series or the names change.
    struct label_sets {
        std::string text;
        std::vector<uint32_t> ends;
        uint64_t layout = UINT64_MAX;
        std::vector<std::string> dcs, nets;  // the names they were built with
    };
    // Returns the label sets for these names (dc and net type ids index them; 0 and ids out
    // of range are "other"), building them when the series or the names changed.
    const label_sets& label_sets_for(std::span<const std::string> dc_names,
                                     std::span<const std::string> net_names) const;
    // Returns a buffer render_traffic() keeps between scrapes (its second thread's half).
    std::string& spare_page() const { return spare_page_; }

  private:
    struct label {
        std::string name, escaped;
        bool used = false;      // a slot in use (free slots are reused)
        bool admitted = false;  // its own series; else it maps to "other"
        bool live = false;      // a live cgroup mapped to it in the last fold
        clock::time_point last_live{};
    };
    struct series_key {
        uint32_t label, dc, net_type;
        bool operator==(const series_key&) const = default;
    };
    struct series_key_hash {
        size_t operator()(const series_key& k) const {
            return detail::mix64((uint64_t(k.label) << 32 | k.dc) ^
                                 uint64_t(k.net_type) * 0x9e3779b97f4a7c15ULL);
        }
    };
    struct string_hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    uint32_t find_label(std::string_view name) const;
    uint32_t add_label(std::string_view name, bool admitted);
    uint32_t target(uint32_t label) const { return labels_[label].admitted ? label : 0; }
    uint32_t series_at(uint32_t target, uint32_t dc, uint32_t net_type);
    void drop_labels(clock::time_point now);
    void sort_if_needed() const;
    void arrange();

    rollup_options options_;
    std::vector<label> labels_;  // [0] is "other"
    std::vector<uint32_t> free_labels_;
    std::unordered_map<std::string, uint32_t, string_hash, std::equal_to<>> by_name_;
    uint32_t admitted_ = 0;
    std::vector<series> series_;
    detail::flat_index<series_key, series_key_hash> series_index_;  // parallel to series_
    mutable std::vector<uint32_t> order_;
    mutable bool order_dirty_ = true;
    uint64_t layout_ = 0;  // changes whenever series are added, dropped or reordered
    mutable label_sets sets_;
    mutable std::string spare_page_;

    // What fold() remembers between folds. A read gives the rows in the kernel's hash order,
    // which stays the same while the map's keys do: each row key's slot remembers the slot of
    // the row that came after it, so a fold that sees the same keys in the same order finds
    // each row's series with one comparison and reads these arrays front to back, and a
    // changed key costs one hash lookup.
    struct slot_memo {
        uint32_t id;      // position in ids_
        uint32_t next;    // the slot of the row that followed this one in the last fold
        uint32_t target;  // the series label the series below was found for
        uint32_t series;  // position in series_, or npos
    };
    struct id_memo {
        uint32_t label;   // the label its path rolled up to when last resolved, or npos
        uint32_t target;  // this fold's series label, or kHold / kFresh
        uint32_t stamp;   // the last fold that saw it
    };
    void forget_slots();
    detail::flat_index<detail::row_key, detail::row_key_hash> slots_;
    std::vector<slot_memo> slot_memo_;
    uint32_t first_slot_ = UINT32_MAX;
    detail::flat_index<uint64_t, detail::id_hash> ids_;
    std::vector<id_memo> id_memo_;
    uint32_t fold_no_ = 0;
    // fold()'s scratch.
    std::vector<uint32_t> fold_ids_;
    std::vector<uint32_t> row_slot_;
    std::vector<uint32_t> row_series_;
};

// ---------------------------------------------------------------------------------------------
// Exposition

// Returns `v` escaped as a label value of the text format (\\, \", \n), with bytes that are
// not UTF-8 replaced by U+FFFD (Prometheus rejects such label values).
std::string escape_label_value(std::string_view v);

// A program the daemon manages, for ebpf_agent_program_attached and _info.
struct program_state {
    std::string name;         // e.g. "net_stat_tx"
    std::string attach_type;  // e.g. "cgroup_inet_egress"
    std::string mode;         // "link" or "multi"
    bool attached = false;
    uint32_t prog_id = 0;
    uint32_t link_id = 0;  // 0: no link (rendered empty)
};

// What the daemon knows of itself; it fills this for each scrape.
struct self_state {
    std::string version, revision;
    std::string local_dc;     // ebpf_agent_node_info{dc}; omitted when empty
    std::string config_hash;  // short sha256 of the effective config
    bool last_reload_ok = false;
    double last_reload_time = 0;  // unix seconds of the last successful (re)load
    std::vector<program_state> programs;
    std::vector<map_fill> maps;  // maps besides the counter maps (their fill comes from a read)
};

// The standard process metrics.
struct process_stats {
    double resident_bytes = 0;
    double start_time = 0;   // unix seconds
    double cpu_seconds = 0;  // user + system
    double open_fds = 0;
};

// Reads this process's stats from /proc (fields it cannot read stay 0).
process_stats read_process_stats();

// Appends the four ebpf_agent_cgroup_{receive,transmit}_{bytes,packets}_total families. dc and
// net type ids index `dc_names` and `net_names` (index 0 is "other"; an id out of range is
// rendered "other"). Keeps the label sets in `rollup` between calls (one render of a roll-up
// at a time), and renders a large page on two threads (joined before it returns).
void render_traffic(const cgroup_rollup& rollup, std::span<const std::string> dc_names,
                    std::span<const std::string> net_names, std::string& out);

// Appends the agent's own metrics: self, the counter maps' fill and uncounted traffic from
// `snapshot`, cgroups tracked, the scrape's duration and the process metrics.
void render_self(const self_state& self, const counter_snapshot& snapshot, size_t cgroups_tracked,
                 double scrape_seconds, const process_stats& process, std::string& out);

// ---------------------------------------------------------------------------------------------
// The scrape

// Ties it together for the daemon: read the maps, resolve cgroups, retire removed ones
// (deleting their keys), fold, render. Not thread-safe: one scrape at a time.
class metrics_collector {
  public:
    using clock = std::chrono::steady_clock;

    metrics_collector(counter_maps maps, cgroup_names& names, rollup_options options = {});

    // Points at new maps (after a reload that replaced them). Counts of the old maps stay in
    // the roll-up's retired counts only as far as their cgroups were removed.
    void set_maps(counter_maps maps) { maps_ = maps; }
    // Takes new roll-up options; changed options start the series over.
    void set_options(const rollup_options& options);

    // Reads the maps and folds them (also retiring removed cgroups). On an error the last
    // fold stays in place; a failed cgroup walk is not an error here (see last_walk_error()).
    ebpf::result<void> collect(clock::time_point now = clock::now());

    // Renders /metrics: the traffic families and the self metrics.
    void render(const self_state& self, std::span<const std::string> dc_names,
                std::span<const std::string> net_names, double scrape_seconds,
                std::string& out) const;

    // Collects and renders; ebpf_agent_scrape_duration_seconds is the time both took. Returns
    // the collection error's message, empty when there was none (the page is rendered anyway,
    // from the last good fold).
    std::string scrape(const self_state& self, std::span<const std::string> dc_names,
                       std::span<const std::string> net_names, std::string& out);

    const counter_snapshot& snapshot() const { return snapshot_; }
    const cgroup_rollup& rollup() const { return rollup_; }
    const std::string& last_walk_error() const { return walk_error_; }
    // Returns how many cgroups were retired (their keys deleted) since the start.
    uint64_t retired_cgroups() const { return retired_cgroups_; }

  private:
    counter_maps maps_;
    cgroup_names& names_;
    cgroup_rollup rollup_;
    counter_snapshot snapshot_;
    std::vector<uint64_t> ids_;
    detail::flat_index<uint64_t, detail::id_hash> id_set_;
    std::vector<traffic_row> deleted_;
    std::string walk_error_;
    uint64_t retired_cgroups_ = 0;
};

}  // namespace agent
