// The agent's statistics on the running kernel: net_stat's counter maps created and filled from
// user space (per-CPU values summed, batch and iteration alike), the keys of removed cgroups
// deleted, cgroup ids resolved under the test's own cgroup, and a scrape that keeps a removed
// cgroup's counts in its label.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
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
    map cgroup, dc, errors, dc_1;

    static result<counter_set> create(uint32_t max_entries) {
        counter_set s;
        auto make = [&](map& m, uint32_t type, uint32_t key_size, uint32_t value_size,
                        uint32_t entries, const char* name) -> result<void> {
            auto r = map::create(
                {.type = type,
                 .key_size = key_size,
                 .value_size = value_size,
                 .max_entries = entries,
                 .flags = type == BPF_MAP_TYPE_PERCPU_HASH ? uint32_t(BPF_F_NO_PREALLOC) : 0u,
                 .name = name});
            if (!r) {
                return std::move(r).error();
            }
            m = std::move(*r);
            return {};
        };
        EBPF_TRY(make(s.cgroup, BPF_MAP_TYPE_PERCPU_HASH, 8, sizeof(net_stat_counters), max_entries,
                      NET_STAT_MAP_CGROUP));
        EBPF_TRY(make(s.dc, BPF_MAP_TYPE_PERCPU_HASH, 16, sizeof(net_stat_counters), max_entries,
                      NET_STAT_MAP_DC));
        EBPF_TRY(make(s.errors, BPF_MAP_TYPE_PERCPU_ARRAY, 4, sizeof(net_stat_value),
                      NET_STAT_ERR_MAX, NET_STAT_MAP_ERRORS));
        EBPF_TRY(make(s.dc_1, BPF_MAP_TYPE_PERCPU_HASH, 16, sizeof(net_stat_counters), max_entries,
                      NET_STAT_MAP_DC_1));
        return s;
    }
    // One dc map (as a reader of an older object sees it), or both halves.
    agent::counter_maps all() { return {&cgroup, &dc, &errors}; }
    agent::counter_maps halves() { return {&cgroup, &dc, &errors, &dc_1}; }
    // The half of the dc keys that holds `k`.
    map& dc_of(const net_stat_dc_key& k) { return net_stat_dc_shard(&k) ? dc_1 : dc; }
};

// Splits `total` over `cpus` parts that sum to it, different on each CPU.
uint64_t share(uint64_t total, uint32_t cpus, uint32_t c) {
    if (c == 0) {
        uint64_t rest = total;
        for (uint32_t i = 1; i < cpus; ++i) {
            rest -= share(total, cpus, i);
        }
        return rest;
    }
    return std::min(total / cpus, total / (2 * cpus) + c);
}

// Per-CPU values whose sum is `total`, different on each CPU.
template <class V>
std::vector<V> spread(const V& total, uint32_t cpus) {
    constexpr size_t words = sizeof(V) / sizeof(uint64_t);
    uint64_t t[words];
    std::memcpy(t, &total, sizeof t);
    std::vector<V> v(cpus);
    for (uint32_t c = 0; c < cpus; ++c) {
        uint64_t w[words];
        for (size_t i = 0; i < words; ++i) {
            w[i] = share(t[i], cpus, c);
        }
        std::memcpy(&v[c], w, sizeof w);
    }
    return v;
}

// Sets a counter key: {rx bytes, rx packets, tx bytes, tx packets} summed over the CPUs.
template <class K>
result<void> put(map& m, const K& key, const net_stat_counters& total) {
    auto h = percpu_hash<K, net_stat_counters>::view(m);
    if (!h) {
        return std::move(h).error();
    }
    auto v = spread(total, h->cpus());
    return h->update(key, std::span<const net_stat_counters>(v));
}

// Writes `n` keys and their per-CPU values (`cpus` each) with batch updates. A hash without
// preallocation takes its elements from a per-CPU cache the kernel refills asynchronously, so a
// long batch from user space can drain it (ENOMEM, seen once in a few hundred runs of 40,000
// keys): a chunk that fails so is written again after a pause (BPF_ANY: rewriting is harmless).
template <class K, class V>
result<void> put_all(map& m, const std::vector<K>& keys, const std::vector<V>& values,
                     uint32_t cpus) {
    constexpr uint32_t chunk = 1024;
    const uint32_t n = uint32_t(keys.size());
    for (uint32_t done = 0, tries = 0; done < n;) {
        const uint32_t count = std::min(chunk, n - done);
        auto r = m.update_batch(&keys[done], &values[size_t(done) * cpus], count);
        if (!r && r.error().code() == ENOMEM && ++tries < 100) {
            std::this_thread::sleep_for(1ms);
            continue;
        }
        if (!r) {
            return std::move(r).error();
        }
        done += *r;
        tries = 0;
    }
    return {};
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

// The four counters of a row, in net_stat_counters order.
std::tuple<uint64_t, uint64_t, uint64_t, uint64_t> counts(const agent::traffic_row& r) {
    return {r.rx_bytes, r.rx_packets, r.tx_bytes, r.tx_packets};
}
using four = std::tuple<uint64_t, uint64_t, uint64_t, uint64_t>;

class AgentMetricsMaps : public test::KernelTest,
                         public ::testing::WithParamInterface<agent::read_mode> {};

TEST_P(AgentMetricsMaps, ReadsPerCpuValuesSummed) {
    auto set = counter_set::create(1024);
    ASSERT_OK(set);
    ASSERT_OK(put(set->cgroup, net_stat_key{10}, {2000, 20, 1000, 10}));
    ASSERT_OK(put(set->cgroup, net_stat_key{11}, {0, 0, 7, 1}));
    ASSERT_OK(put(set->dc, net_stat_dc_key{10, 1, 2}, {2000, 20, 600, 6}));
    ASSERT_OK(put(set->dc, net_stat_dc_key{10, 0, 0}, {0, 0, 400, 4}));
    ASSERT_OK(put(set->dc, net_stat_dc_key{11, 3, 1}, {0, 0, 7, 1}));
    auto errors = percpu_array<net_stat_value>::view(set->errors);
    ASSERT_OK(errors);
    auto ev = spread(net_stat_value{1500, 3}, errors->cpus());
    ASSERT_OK(errors->update(NET_STAT_ERR_DC_RX_FULL, std::span<const net_stat_value>(ev)));

    // The dc map is the source: the per-cgroup map adds nothing to the rows.
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    row_map rows = by_key(snap);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(counts(rows[{10, 1, 2}]), four(2000, 20, 600, 6));
    EXPECT_EQ(counts(rows[{10, 0, 0}]), four(0, 0, 400, 4));
    EXPECT_EQ(counts(rows[{11, 3, 1}]), four(0, 0, 7, 1));
    EXPECT_TRUE(snap.has_errors);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_DC_RX_FULL].bytes, 1500u);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_DC_RX_FULL].packets, 3u);
    EXPECT_EQ(snap.uncounted[NET_STAT_ERR_CGROUP_TX_FULL].bytes, 0u);
    std::vector<std::pair<std::string, uint64_t>> fills;
    for (const auto& f : snap.fills) {
        fills.emplace_back(f.name, f.entries);
        EXPECT_EQ(f.max_entries, 1024u);
    }
    EXPECT_EQ(fills,
              (std::vector<std::pair<std::string, uint64_t>>{{"stat_dc", 3}, {"stat_cgroup", 2}}));
    std::vector<uint64_t> other = snap.other_ids;
    std::sort(other.begin(), other.end());
    EXPECT_EQ(other, (std::vector<uint64_t>{10, 11}));

    // Without the dc map the per-cgroup map is the source (dc = net = 0).
    ASSERT_OK(agent::read_counters({.cgroup = &set->cgroup}, snap, GetParam()));
    rows = by_key(snap);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(counts(rows[{10, 0, 0}]), four(2000, 20, 1000, 10));
    EXPECT_EQ(counts(rows[{11, 0, 0}]), four(0, 0, 7, 1));
    EXPECT_FALSE(snap.has_errors);
    EXPECT_TRUE(snap.other_ids.empty());
    ASSERT_EQ(snap.fills.size(), 1u);
    EXPECT_EQ(snap.fills[0].name, "stat_cgroup");

    // The dc map alone.
    ASSERT_OK(agent::read_counters({.dc = &set->dc}, snap, GetParam()));
    EXPECT_EQ(by_key(snap).size(), 3u);
    EXPECT_TRUE(snap.other_ids.empty());

    // None at all.
    ASSERT_OK(agent::read_counters({}, snap, GetParam()));
    EXPECT_TRUE(snap.rows.empty());
    EXPECT_TRUE(snap.fills.empty());
}

TEST_P(AgentMetricsMaps, RejectsAMapOfAnotherLayout) {
    auto set = counter_set::create(64);
    ASSERT_OK(set);
    agent::counter_snapshot snap;
    // The per-cgroup map passed as the dc map: its key is 8 bytes, not 16.
    auto r = agent::read_counters({.dc = &set->cgroup}, snap, GetParam());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("stat_cgroup"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("struct net_stat_counters"), std::string::npos)
        << r.error().message();
}

TEST_P(AgentMetricsMaps, ReadsLargeMapsInChunks) {
    constexpr uint32_t n = 40000;  // more than one batch of 1 MiB of values on 2+ CPUs
    auto set = counter_set::create(n);
    ASSERT_OK(set);
    auto cpus = possible_cpus();
    ASSERT_OK(cpus);
    std::vector<net_stat_dc_key> keys(n);
    std::vector<net_stat_counters> values(size_t(n) * *cpus);
    uint64_t want_rx = 0, want_tx = 0;
    for (uint32_t i = 0; i < n; ++i) {
        keys[i] = {1000 + i / 8, i % 8, 1};
        for (uint32_t c = 0; c < *cpus; ++c) {
            values[size_t(i) * *cpus + c] = {2 * i + c, 2, i + c, 1};
            want_rx += 2 * i + c;
            want_tx += i + c;
        }
    }
    ASSERT_OK(put_all(set->dc, keys, values, *cpus));
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters({.dc = &set->dc}, snap, GetParam()));
    ASSERT_EQ(snap.rows.size(), n);
    uint64_t rx = 0, rx_packets = 0, tx = 0, tx_packets = 0;
    for (const auto& r : snap.rows) {
        rx += r.rx_bytes;
        rx_packets += r.rx_packets;
        tx += r.tx_bytes;
        tx_packets += r.tx_packets;
    }
    EXPECT_EQ(rx, want_rx);
    EXPECT_EQ(rx_packets, 2 * uint64_t(n) * *cpus);
    EXPECT_EQ(tx, want_tx);
    EXPECT_EQ(tx_packets, uint64_t(n) * *cpus);
}

TEST_P(AgentMetricsMaps, DeletesTheKeysOfRemovedCgroups) {
    auto set = counter_set::create(64);
    ASSERT_OK(set);
    for (uint64_t id : {20, 21}) {
        ASSERT_OK(put(set->cgroup, net_stat_key{id}, {100, 1, 100, 1}));
        ASSERT_OK(put(set->dc, net_stat_dc_key{id, 1, 1}, {100, 1, 60, 1}));
        ASSERT_OK(put(set->dc, net_stat_dc_key{id, 2, 1}, {0, 0, 40, 1}));
    }
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    // Traffic after the read is in the final values.
    ASSERT_OK(put(set->dc, net_stat_dc_key{20, 1, 1}, {100, 1, 65, 2}));

    std::vector<agent::traffic_row> deleted;
    const uint64_t gone[] = {20};
    ASSERT_OK(agent::delete_cgroups(set->all(), gone, snap.rows, deleted));
    ASSERT_EQ(deleted.size(), 2u);
    std::sort(deleted.begin(), deleted.end(),
              [](const auto& a, const auto& b) { return a.dc < b.dc; });
    EXPECT_EQ(deleted[0].cgroup_id, 20u);
    EXPECT_EQ(deleted[0].dc, 1u);
    EXPECT_EQ(counts(deleted[0]), four(100, 1, 65, 2));
    EXPECT_EQ(deleted[1].dc, 2u);
    EXPECT_EQ(counts(deleted[1]), four(0, 0, 40, 1));

    // Every key of cgroup 20 is gone, in both maps; cgroup 21 is untouched.
    ASSERT_OK(agent::read_counters(set->all(), snap, GetParam()));
    for (const auto& r : snap.rows) {
        EXPECT_EQ(r.cgroup_id, 21u);
    }
    EXPECT_EQ(snap.rows.size(), 2u);
    std::vector<std::byte> buf(set->cgroup.value_buffer_size());
    net_stat_key k{20};
    auto found = set->cgroup.lookup(&k, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found);
    k.cgroup_id = 21;
    found = set->cgroup.lookup(&k, buf.data());
    ASSERT_OK(found);
    EXPECT_TRUE(*found);

    // With the per-cgroup map as the source, its key goes with its final values.
    ASSERT_OK(agent::read_counters({.cgroup = &set->cgroup}, snap, GetParam()));
    ASSERT_OK(put(set->cgroup, net_stat_key{21}, {150, 2, 100, 1}));
    deleted.clear();
    const uint64_t gone2[] = {21};
    ASSERT_OK(agent::delete_cgroups({.cgroup = &set->cgroup}, gone2, snap.rows, deleted));
    ASSERT_EQ(deleted.size(), 1u);
    EXPECT_EQ(deleted[0].cgroup_id, 21u);
    EXPECT_EQ(counts(deleted[0]), four(150, 2, 100, 1));
    found = set->cgroup.lookup(&k, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found);
}

// The dc keys split over two maps as net_stat_dc_shard() says: a read gives the rows of both (the
// second half read on a second thread), each once, and a deletion takes each key from its half.
TEST_P(AgentMetricsMaps, ReadsAndDeletesAcrossBothHalvesOfTheDcKeys) {
    auto set = counter_set::create(256);
    ASSERT_OK(set);
    int in_half[2] = {};
    for (uint64_t id = 30; id < 40; ++id) {
        ASSERT_OK(put(set->cgroup, net_stat_key{id}, {8, 8, 8, 8}));
        for (uint32_t dc = 1; dc <= 4; ++dc) {
            const net_stat_dc_key k{id, dc, 1};
            ++in_half[net_stat_dc_shard(&k)];
            ASSERT_OK(put(set->dc_of(k), k, {id, 1, dc, 2}));
        }
    }
    ASSERT_GT(in_half[0], 0);
    ASSERT_GT(in_half[1], 0);
    agent::counter_snapshot snap;
    ASSERT_OK(agent::read_counters(set->halves(), snap, GetParam()));
    row_map rows = by_key(snap);
    ASSERT_EQ(rows.size(), 40u);
    EXPECT_EQ(counts(rows[{33, 4, 1}]), four(33, 1, 4, 2));
    std::vector<std::pair<std::string, uint64_t>> fills;
    for (const auto& f : snap.fills) {
        fills.emplace_back(f.name, f.entries);
    }
    EXPECT_EQ(fills,
              (std::vector<std::pair<std::string, uint64_t>>{{"stat_dc", uint64_t(in_half[0])},
                                                             {"stat_dc_1", uint64_t(in_half[1])},
                                                             {"stat_cgroup", 10}}));

    std::vector<agent::traffic_row> deleted;
    const uint64_t gone[] = {33, 37};
    ASSERT_OK(agent::delete_cgroups(set->halves(), gone, snap.rows, deleted));
    EXPECT_EQ(deleted.size(), 8u);
    for (const auto& d : deleted) {
        EXPECT_EQ(counts(d), four(d.cgroup_id, 1, d.dc, 2)) << d.cgroup_id << " " << d.dc;
    }
    ASSERT_OK(agent::read_counters(set->halves(), snap, GetParam()));
    EXPECT_EQ(snap.rows.size(), 32u);
    for (const auto& r : snap.rows) {
        EXPECT_TRUE(r.cgroup_id != 33 && r.cgroup_id != 37) << r.cgroup_id;
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

    // Walks only: a new id named by its handle would trigger no walk (the next test).
    agent::cgroup_names names(*mount, {.min_rewalk = 0s, .max_age = 60s, .open_by_handle = false});
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

TEST_F(AgentMetricsCgroups, NamesNewCgroupsByHandleWithoutAWalk) {
    auto mount = cgroup2_mount();
    ASSERT_OK(mount);
    test_cgroup cg;
    ASSERT_FALSE(cg.path().empty());
    const std::string rel = cg.path().substr(mount->size());
    sub_cgroup a(cg.path() + "/a");
    sub_cgroup b(a.path() + "/b");

    agent::cgroup_names names(*mount, {.min_rewalk = 0s, .max_age = 60s});
    ASSERT_OK(names.walk());
    sub_cgroup c(a.path() + "/c");  // after the walk
    const uint64_t ids[] = {1, a.id(), c.id()};
    std::string err;
    EXPECT_TRUE(names.update(ids, err).empty());
    EXPECT_EQ(err, "");
    EXPECT_EQ(names.walks(), 1u) << "the new id needed no walk";
    EXPECT_EQ(names.opened_by_handle(), 1u);
    ASSERT_NE(names.lookup(c.id()).path, nullptr);
    EXPECT_EQ(*names.lookup(c.id()).path, rel + "/a/c");
    EXPECT_FALSE(names.lookup(c.id()).hold);

    // A removed cgroup cannot be opened by its handle: its id waits for the walk, which finds it
    // gone.
    const uint64_t id_b = b.id();
    b.remove();
    agent::cgroup_names fresh(*mount, {.min_rewalk = 0s, .max_age = 60s});
    const uint64_t gone_ids[] = {id_b};
    EXPECT_EQ(fresh.update(gone_ids, err), std::vector<uint64_t>{id_b});
    EXPECT_EQ(fresh.opened_by_handle(), 0u);
    EXPECT_EQ(fresh.walks(), 1u);
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
    ASSERT_OK(put(set->cgroup, net_stat_key{id_x}, {0, 0, 1000, 10}));
    ASSERT_OK(put(set->dc, net_stat_dc_key{id_x, 1, 1}, {0, 0, 1000, 10}));
    ASSERT_OK(put(set->dc, net_stat_dc_key{id_y, 1, 1}, {70, 1, 500, 5}));

    // Depth 1: x and y add into the test cgroup's label.
    agent::cgroup_names names(*mount, {.min_rewalk = 0s, .max_age = 0s});
    agent::metrics_collector c(set->all(), names, {.cgroup_depth = 1, .max_cgroups = 100});
    const std::vector<std::string> dcs = {"other", "ams1"}, nets = {"other", "backbone"};
    agent::self_state self;
    std::string page;
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    const std::string line = "ebpf_agent_cgroup_transmit_bytes_total{cgroup=\"" + label +
                             "\",dc=\"ams1\",net=\"backbone\"} ";
    const std::string rx_line = "ebpf_agent_cgroup_receive_bytes_total{cgroup=\"" + label +
                                "\",dc=\"ams1\",net=\"backbone\"} ";
    EXPECT_NE(page.find(line + "1500\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find(rx_line + "70\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_dc\"} 2\n"), std::string::npos);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_cgroup\"} 1\n"), std::string::npos);

    // x sends a little more and is removed: its keys go, its counts stay in the label.
    ASSERT_OK(put(set->dc, net_stat_dc_key{id_x, 1, 1}, {0, 0, 1200, 12}));
    x.remove();
    page.clear();
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    EXPECT_NE(page.find(line + "1700\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_EQ(c.retired_cgroups(), 1u);
    std::vector<std::byte> buf(set->dc.value_buffer_size());
    net_stat_dc_key k{id_x, 1, 1};
    auto found = set->dc.lookup(&k, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found);
    net_stat_key pk{id_x};
    found = set->cgroup.lookup(&pk, buf.data());
    ASSERT_OK(found);
    EXPECT_FALSE(*found) << "the per-cgroup map keeps the removed cgroup's key";

    // And the next scrape still has them.
    ASSERT_OK(put(set->dc, net_stat_dc_key{id_y, 1, 1}, {80, 2, 600, 6}));
    page.clear();
    EXPECT_EQ(c.scrape(self, dcs, nets, page), "");
    EXPECT_NE(page.find(line + "1800\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find(rx_line + "80\n"), std::string::npos) << page.substr(0, 2000);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_dc\"} 1\n"), std::string::npos);
    EXPECT_NE(page.find("ebpf_agent_map_entries{map=\"stat_cgroup\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace ebpf
