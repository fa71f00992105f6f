// The agent's statistics on the running kernel: net_stat's counter maps created and filled from
// user space (per-CPU values summed, batch and iteration alike), the keys of removed cgroups
// deleted, cgroup ids resolved under the test's own cgroup, and a scrape that keeps a removed
// cgroup's counts in its label.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "../../bpf/include/net_stat.h"
#include "cgroup_names.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"
#include "metrics.hpp"

namespace ebpf {
namespace {

using test::test_cgroup;
using namespace std::chrono_literals;

uint64_t inode(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// net_stat's counter maps, made the way bpf/net_stat.bpf.c declares them (no programs needed).
struct counter_set {
    map tx, rx, dc_tx, dc_rx, errors;

    static result<counter_set> create(uint32_t max_entries) {
        counter_set s;
        auto make = [&](map& m, uint32_t type, uint32_t key_size, uint32_t entries,
                        const char* name) -> result<void> {
            auto r = map::create(
                {.type = type,
                 .key_size = key_size,
                 .value_size = sizeof(net_stat_value),
                 .max_entries = entries,
                 .flags = type == BPF_MAP_TYPE_PERCPU_HASH ? uint32_t(BPF_F_NO_PREALLOC) : 0u,
                 .name = name});
            if (!r) {
                return std::move(r).error();
            }
            m = std::move(*r);
            return {};
        };
        EBPF_TRY(make(s.tx, BPF_MAP_TYPE_PERCPU_HASH, 8, max_entries, NET_STAT_MAP_TX));
        EBPF_TRY(make(s.rx, BPF_MAP_TYPE_PERCPU_HASH, 8, max_entries, NET_STAT_MAP_RX));
        EBPF_TRY(make(s.dc_tx, BPF_MAP_TYPE_PERCPU_HASH, 16, max_entries, NET_STAT_MAP_DC_TX));
        EBPF_TRY(make(s.dc_rx, BPF_MAP_TYPE_PERCPU_HASH, 16, max_entries, NET_STAT_MAP_DC_RX));
        EBPF_TRY(
            make(s.errors, BPF_MAP_TYPE_PERCPU_ARRAY, 4, NET_STAT_ERR_MAX, NET_STAT_MAP_ERRORS));
        return s;
    }
    agent::counter_maps all() { return {&tx, &rx, &dc_tx, &dc_rx, &errors}; }
};

// Per-CPU values whose sum is (bytes, packets), different on each CPU.
std::vector<net_stat_value> spread(uint64_t bytes, uint64_t packets, uint32_t cpus) {
    std::vector<net_stat_value> v(cpus);
    uint64_t b = 0, p = 0;
    for (uint32_t c = 1; c < cpus; ++c) {
        v[c] = {std::min(bytes - b, bytes / (2 * cpus) + c), std::min(packets - p, uint64_t(c))};
        b += v[c].bytes;
        p += v[c].packets;
    }
    v[0] = {bytes - b, packets - p};
    return v;
}

template <class K>
result<void> put(map& m, const K& key, uint64_t bytes, uint64_t packets) {
    auto h = percpu_hash<K, net_stat_value>::view(m);
    if (!h) {
        return std::move(h).error();
    }
    auto v = spread(bytes, packets, h->cpus());
    return h->update(key, std::span<const net_stat_value>(v));
}

using row_map = std::map<std::tuple<uint64_t, uint32_t, uint32_t>, agent::traffic_row>;
row_map by_key(const agent::counter_snapshot& s) {
    row_map m;
    for (const auto& r : s.rows) {
        EXPECT_TRUE(m.emplace(std::make_tuple(r.cgroup_id, r.dc, r.net_type), r).second)
            << "row repeated: cgroup " << r.cgroup_id;
    }
    return m;
}

class AgentMetricsMaps : public test::KernelTest,
                         public ::testing::WithParamInterface<agent::read_mode> {};

TEST_P(AgentMetricsMaps, ReadsPerCpuValuesSummed) {
    auto set = counter_set::create(1024);
    ASSERT_OK(set);
    ASSERT_OK(put(set->tx, net_stat_key{10}, 1000, 10));
    ASSERT_OK(put(set->rx, net_stat_key{10}, 2000, 20));
    ASSERT_OK(put(set->tx, net_stat_key{11}, 7, 1));
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{10, 1, 2}, 600, 6));
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{10, 0, 0}, 400, 4));
    ASSERT_OK(put(set->dc_rx, net_stat_dc_key{10, 1, 2}, 2000, 20));
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{11, 3, 1}, 7, 1));
    auto errors = percpu_array<net_stat_value>::view(set->errors);
    ASSERT_OK(errors);
    auto ev = spread(1500, 3, errors->cpus());
    ASSERT_OK(errors->update(NET_STAT_ERR_DC_RX_FULL, std::span<const net_stat_value>(ev)));

    // The dc maps are the sources: the per-cgroup maps add nothing to the rows.
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    row_map rows = by_key(snap);
    ASSERT_EQ(rows.size(), 3u);
    const agent::traffic_row& a = rows[{10, 1, 2}];
    EXPECT_EQ(a.tx_bytes, 600u);
    EXPECT_EQ(a.tx_packets, 6u);
    EXPECT_EQ(a.rx_bytes, 2000u);
    EXPECT_EQ(a.rx_packets, 20u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].tx_bytes, 400u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].rx_bytes, 0u);
    EXPECT_EQ(rows[std::make_tuple(11, 3, 1)].tx_packets, 1u);
    EXPECT_TRUE(snap.has_errors);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_DC_RX_FULL].bytes, 1500u);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_DC_RX_FULL].packets, 3u);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_TX_FULL].bytes, 0u);
    std::map<std::string, uint64_t> fills;
    for (const auto& f : snap.fills) {
        fills[f.name] = f.entries;
        EXPECT_EQ(f.max_entries, 1024u);
    }
    EXPECT_EQ(fills, (std::map<std::string, uint64_t>{
                         {"stat_dc_tx", 3}, {"stat_dc_rx", 1}, {"stat_tx", 2}, {"stat_rx", 1}}));

    // Without the dc maps the per-cgroup maps are the sources (dc = net = 0).
    ASSERT_OK(agent::read_counters({.tx = &set->tx, .rx = &set->rx}, snap, GetParam()));
    rows = by_key(snap);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].tx_bytes, 1000u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].rx_bytes, 2000u);
    EXPECT_EQ(rows[std::make_tuple(11, 0, 0)].tx_bytes, 7u);
    EXPECT_FALSE(snap.has_errors);

    // Mixed: dc for transmit, per-cgroup for receive.
    ASSERT_OK(agent::read_counters({.rx = &set->rx, .dc_tx = &set->dc_tx}, snap, GetParam()));
    rows = by_key(snap);
    EXPECT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].tx_bytes, 400u);
    EXPECT_EQ(rows[std::make_tuple(10, 0, 0)].rx_bytes, 2000u);

    // None at all.
    ASSERT_OK(agent::read_counters({}, snap, GetParam()));
    EXPECT_TRUE(snap.rows.empty());
    EXPECT_TRUE(snap.fills.empty());
}

TEST_P(AgentMetricsMaps, ReadsLargeMapsInChunks) {
    constexpr uint32_t n = 40000;  // more than one batch of 1 MiB of values on 2+ CPUs
    auto set = counter_set::create(n);
    ASSERT_OK(set);
    auto cpus = possible_cpus();
    ASSERT_OK(cpus);
    std::vector<net_stat_dc_key> keys(n);
    std::vector<net_stat_value> values(size_t(n) * *cpus);
    uint64_t want_bytes = 0;
    for (uint32_t i = 0; i < n; ++i) {
        keys[i] = {1000 + i / 8, i % 8, 1};
        for (uint32_t c = 0; c < *cpus; ++c) {
            values[size_t(i) * *cpus + c] = {i + c, 1};
            want_bytes += i + c;
        }
    }
    auto written = set->dc_tx.update_batch(keys.data(), values.data(), n);
    ASSERT_OK(written);
    ASSERT_EQ(*written, n);
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters({.dc_tx = &set->dc_tx}, snap, GetParam()));
    ASSERT_EQ(snap.rows.size(), n);
    uint64_t bytes = 0, packets = 0;
    for (const auto& r : snap.rows) {
        bytes += r.tx_bytes;
        packets += r.tx_packets;
    }
    EXPECT_EQ(bytes, want_bytes);
    EXPECT_EQ(packets, uint64_t(n) * *cpus);
}

TEST_P(AgentMetricsMaps, DeletesTheKeysOfRemovedCgroups) {
    auto set = counter_set::create(64);
    ASSERT_OK(set);
    for (uint64_t id : {20, 21}) {
        ASSERT_OK(put(set->tx, net_stat_key{id}, 100, 1));
        ASSERT_OK(put(set->rx, net_stat_key{id}, 100, 1));
        ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id, 1, 1}, 60, 1));
        ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id, 2, 1}, 40, 1));
        ASSERT_OK(put(set->dc_rx, net_stat_dc_key{id, 1, 1}, 100, 1));
    }
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    // Traffic after the read is in the final values.
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{20, 1, 1}, 65, 2));

    std::vector<agent::deleted_row> deleted;
    const uint64_t gone[] = {20};
    ASSERT_OK(agent::delete_cgroups(set->all(), gone, snap.rows, deleted));
    ASSERT_EQ(deleted.size(), 2u);
    std::sort(deleted.begin(), deleted.end(),
              [](const auto& a, const auto& b) { return a.last.dc < b.last.dc; });
    EXPECT_TRUE(deleted[0].rx && deleted[0].tx);
    EXPECT_EQ(deleted[0].last.dc, 1u);
    EXPECT_EQ(deleted[0].last.tx_bytes, 65u);
    EXPECT_EQ(deleted[0].last.tx_packets, 2u);
    EXPECT_EQ(deleted[0].last.rx_bytes, 100u);
    EXPECT_EQ(deleted[1].last.dc, 2u);
    EXPECT_EQ(deleted[1].last.tx_bytes, 40u);
    EXPECT_EQ(deleted[1].last.rx_bytes, 0u);

    // Every key of cgroup 20 is gone, in all four maps; cgroup 21 is untouched.
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    for (const auto& r : snap.rows) {
        EXPECT_EQ(r.cgroup_id, 21u);
    }
    EXPECT_EQ(snap.rows.size(), 2u);
    std::vector<std::byte> buf(set->tx.value_buffer_size());
    for (map* m : {&set->tx, &set->rx}) {
        net_stat_key k{20};
        auto found = m->lookup(&k, buf.data());
        ASSERT_OK(found);
        EXPECT_FALSE(*found) << m->name();
        k.cgroup_id = 21;
        found = m->lookup(&k, buf.data());
        ASSERT_OK(found);
        EXPECT_TRUE(*found) << m->name();
    }
}

INSTANTIATE_TEST_SUITE_P(AgentMetrics, AgentMetricsMaps,
                         ::testing::Values(agent::read_mode::batch, agent::read_mode::iterate),
                         [](const auto& info) {
                             return info.param == agent::read_mode::batch ? "Batch" : "Iterate";
                         });

// A child cgroup under the test's cgroup, removed on destruction unless already gone.
class sub_cgroup {
  public:
    explicit sub_cgroup(std::string path) : path_(std::move(path)) {
        if (::mkdir(path_.c_str(), 0755) != 0) {
            ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
        }
    }
    ~sub_cgroup() { remove(); }
    sub_cgroup(const sub_cgroup&) = delete;
    sub_cgroup& operator=(const sub_cgroup&) = delete;
    void remove() {
        if (!removed_ && ::rmdir(path_.c_str()) != 0) {
            ADD_FAILURE() << "rmdir " << path_ << ": " << std::strerror(errno);
        }
        removed_ = true;
    }
    const std::string& path() const { return path_; }
    uint64_t id() const { return inode(path_); }

  private:
    std::string path_;
    bool removed_ = false;
};

class AgentMetricsCgroups : public test::KernelTest {};

TEST_F(AgentMetricsCgroups, ResolvesATestCgroupAndNoticesItsRemoval) {
    auto mount = cgroup2_mount();
    ASSERT_OK(mount);
    test_cgroup cg;
    ASSERT_FALSE(cg.path().empty());
    const std::string rel = cg.path().substr(mount->size());  // "/ebpf-test-..."
    sub_cgroup a(cg.path() + "/a");
    sub_cgroup b(a.path() + "/b");
    const uint64_t id_a = a.id(), id_b = b.id();

    agent::cgroup_names names(*mount, {.min_rewalk = 0s, .max_age = 60s});
    std::string err;
    const uint64_t ids[] = {1, id_a, id_b};  // 1: the root cgroup
    EXPECT_TRUE(names.update(ids, err).empty());
    EXPECT_EQ(err, "");
    ASSERT_NE(names.lookup(id_b).path, nullptr);
    EXPECT_EQ(*names.lookup(id_b).path, rel + "/a/b");
    EXPECT_EQ(*names.lookup(id_a).path, rel + "/a");
    ASSERT_NE(names.lookup(1).path, nullptr);
    EXPECT_EQ(*names.lookup(1).path, "/");
    EXPECT_EQ(inode(*mount), 1u);

    // The walk that a new id triggers notices the removal.
    b.remove();
    sub_cgroup c(a.path() + "/c");
    const uint64_t ids2[] = {id_a, id_b, c.id()};
    auto gone = names.update(ids2, err);
    EXPECT_EQ(err, "");
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0], id_b);
    EXPECT_EQ(*names.lookup(c.id()).path, rel + "/a/c");
    EXPECT_EQ(*names.lookup(id_b).path, rel + "/a/b");  // kept for its last counts
}

TEST_F(AgentMetricsCgroups, ScrapeKeepsARemovedCgroupsCountsInItsLabel) {
    auto mount = cgroup2_mount();
    ASSERT_OK(mount);
    test_cgroup cg;
    ASSERT_FALSE(cg.path().empty());
    const std::string label = cg.path().substr(mount->size());
    sub_cgroup x(cg.path() + "/x");
    sub_cgroup y(cg.path() + "/y");
    const uint64_t id_x = x.id(), id_y = y.id();
    auto set = counter_set::create(256);
    ASSERT_OK(set);
    ASSERT_OK(put(set->tx, net_stat_key{id_x}, 1000, 10));
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id_x, 1, 1}, 1000, 10));
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id_y, 1, 1}, 500, 5));
    ASSERT_OK(put(set->dc_rx, net_stat_dc_key{id_y, 1, 1}, 70, 1));

    // Depth 1: x and y add into the test cgroup's label.
    agent::cgroup_names names(*mount, {.min_rewalk = 0s, .max_age = 0s});
    agent::metrics_collector c(set->all(), names, {.cgroup_depth = 1, .max_cgroups = 100});
    const std::vector<std::string> dcs = {"other", "ams1"}, nets = {"other", "backbone"};
    agent::self_state self;
    std::string page;
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    const std::string line = "ebpf_agent_cgroup_transmit_bytes_total{cgroup=\"" + label +
                             "\",dc=\"ams1\",net=\"backbone\"} ";
    EXPECT_NE(page.find(line + "1500\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_dc_tx\"} 2\n"), std::string::npos);

    // x sends a little more and is removed: its keys go, its counts stay in the label.
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id_x, 1, 1}, 1200, 12));
    x.remove();
    page.clear();
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    EXPECT_NE(page.find(line + "1700\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_EQ(c.retired_cgroups(), 1u);
    std::vector<std::byte> buf(set->dc_tx.value_buffer_size());
    net_stat_dc_key k{id_x, 1, 1};
    auto found = set->dc_tx.lookup(&k, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found);
    net_stat_key pk{id_x};
    found = set->tx.lookup(&pk, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found) << "the per-cgroup map keeps the removed cgroup's key";

    // And the next scrape still has them.
    ASSERT_OK(put(set->dc_tx, net_stat_dc_key{id_y, 1, 1}, 600, 6));
    page.clear();
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    EXPECT_NE(page.find(line + "1800\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_dc_tx\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace ebpf
