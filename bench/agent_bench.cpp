// The cost of one /metrics scrape at 10,000 cgroups x 8 datacenters (80,000 series, four
// families): rendering from synthetic rows (roll-up included), reading net_stat's counter
// maps filled to that size (PERCPU_HASH, created here; no programs), and the whole scrape from
// the maps to the page, steady and while cgroups come and go (a new series and a gone one
// before each scrape). Also the two ways new cgroup ids get their names: a walk of a
// 10,000-directory tree (a scrape that meets an id it does not know, without CAP_DAC_READ_SEARCH)
// and opening 100 new real cgroups by handle (with it). Needs root (BPF maps, cgroups). Target:
// <= 50 ms per scrape.
//
// Every case runs kRounds times, interleaved; the summary gives the median wall time of each.

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../bpf/include/net_stat.h"
#include "bench_stats.hpp"
#include "cgroup_names.hpp"
#include "ebpf/cgroup.hpp"
#include "ebpf/map.hpp"
#include "generation.hpp"
#include "metrics.hpp"

namespace {

constexpr uint32_t kCgroups = 10000;
constexpr uint32_t kDcs = 8;
constexpr int kRounds = 15;
constexpr double kTargetMs = 50;
// scrape_10000x8_churn: between two scrapes one pod goes (cgroup 100000 + k) and another comes
// (kChurnBase + k), 8 dc keys each.
constexpr uint64_t kChurnBase = 900000;
constexpr uint32_t kChurnPool = 64;

template <class T>
T must(ebpf::result<T> r, const char* what) {
    if (!r) {
        std::fprintf(stderr, "%s: %s\n", what, r.error().full_message().c_str());
        std::exit(1);
    }
    return std::move(*r);
}

// Writes `n` keys and their per-CPU values (`cpus` each) with batch updates. A hash without
// preallocation takes its elements from a per-CPU cache the kernel refills asynchronously, so a
// long batch from user space can drain it (ENOMEM): a chunk that fails so is written again after
// a pause (BPF_ANY: rewriting is harmless).
template <class K, class V>
void fill(ebpf::map& m, const std::vector<K>& keys, const std::vector<V>& values, uint32_t cpus) {
    constexpr uint32_t chunk = 4096;
    const uint32_t n = uint32_t(keys.size());
    for (uint32_t done = 0, tries = 0; done < n;) {
        const uint32_t count = std::min(chunk, n - done);
        auto r = m.update_batch(&keys[done], &values[size_t(done) * cpus], count);
        if (!r && r.error().code() == ENOMEM && ++tries < 100) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        done += must(std::move(r), ("fill " + m.name()).c_str());
        tries = 0;
    }
}

// Kubernetes-like paths, four levels deep, one container per pod: at depth 3 each cgroup is a
// label of its own (the worst case for the page's size).
std::string path_of(uint32_t i) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "/kubepods.slice/kubepods-burstable.slice/"
                  "kubepods-burstable-pod%08x_1b2c_4d5e_8f90_%012x.slice/"
                  "cri-containerd-%016x%016x.scope",
                  i, i * 2654435761u, i * 40503u, i);
    return buf;
}

// Short systemd-like paths: "/system.slice/service-1234.service".
std::string short_path_of(uint32_t i) {
    return "/system.slice/service-" + std::to_string(i) + ".service";
}

struct fixture {
    std::unordered_map<uint64_t, std::string> paths;  // cgroup id -> path
    std::unordered_map<uint64_t, std::string> short_paths;
    std::vector<agent::traffic_row> rows;
    std::vector<std::string> dcs, nets;
    agent::self_state self;
    ebpf::map cgroup, dc, dc_1, errors;

    agent::cgroup_path resolve(uint64_t id) const {
        auto it = paths.find(id);
        return {it == paths.end() ? nullptr : &it->second, false};
    }
    agent::cgroup_path resolve_short(uint64_t id) const {
        auto it = short_paths.find(id);
        return {it == short_paths.end() ? nullptr : &it->second, false};
    }
};

fixture make_fixture() {
    fixture f;
    f.dcs = {"other", "ams1", "fra1", "sas", "vla", "man", "iva", "myt"};
    f.nets = {"other", "backbone", "fastbone"};
    f.self.version = "0.1.0";
    f.self.revision = "bench";
    f.self.local_dc = "fra1";
    f.self.config_hash = "0123456789ab";
    f.self.last_reload_ok = true;
    for (uint32_t i = 0; i < kCgroups; ++i) {
        const uint64_t id = 100000 + i;
        f.paths.emplace(id, path_of(i));
        f.short_paths.emplace(id, short_path_of(i));
        if (i < kChurnPool) {  // the pods that come in scrape_10000x8_churn
            f.paths.emplace(kChurnBase + i, path_of(kCgroups + i));
            f.short_paths.emplace(kChurnBase + i, short_path_of(kCgroups + i));
        }
        for (uint32_t dc = 0; dc < kDcs; ++dc) {
            agent::traffic_row r;
            r.cgroup_id = id;
            r.dc = dc;
            r.net_type = 1 + dc % 2;
            r.rx_bytes = uint64_t(i) * 1000003 + dc * 7919;
            r.rx_packets = r.rx_bytes / 1400;
            r.tx_bytes = uint64_t(i) * 999983 + dc * 104729;
            r.tx_packets = r.tx_bytes / 1400;
            f.rows.push_back(r);
        }
    }

    auto create = [](uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                     const char* name) {
        return must(
            ebpf::map::create(
                {.type = type,
                 .key_size = key_size,
                 .value_size = value_size,
                 .max_entries = max_entries,
                 // As bpf/net_stat.bpf.c declares the counter hashes.
                 .flags = type == BPF_MAP_TYPE_PERCPU_HASH ? uint32_t(BPF_F_NO_PREALLOC) : 0u,
                 .name = name}),
            name);
    };
    const uint32_t entries = kCgroups * kDcs;
    // As the agent sizes the two halves of the dc keys for max_dc_entries = 100,000.
    const uint32_t half = agent::dc_map_entries(entries + entries / 4);
    f.dc = create(BPF_MAP_TYPE_PERCPU_HASH, 16, sizeof(net_stat_counters), half, NET_STAT_MAP_DC);
    f.dc_1 =
        create(BPF_MAP_TYPE_PERCPU_HASH, 16, sizeof(net_stat_counters), half, NET_STAT_MAP_DC_1);
    f.cgroup = create(BPF_MAP_TYPE_PERCPU_HASH, 8, sizeof(net_stat_counters),
                      kCgroups + kCgroups / 4, NET_STAT_MAP_CGROUP);
    f.errors = create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, sizeof(net_stat_value), NET_STAT_ERR_MAX,
                      NET_STAT_MAP_ERRORS);

    const uint32_t cpus = must(ebpf::possible_cpus(), "possible CPUs");
    std::vector<net_stat_dc_key> dc_keys[2];
    std::vector<net_stat_counters> dc_values[2];
    for (const agent::traffic_row& r : f.rows) {
        const net_stat_dc_key k{r.cgroup_id, r.dc, r.net_type};
        const int h = net_stat_dc_shard(&k);
        dc_keys[h].push_back(k);
        for (uint32_t c = 0; c < cpus; ++c) {
            dc_values[h].push_back(
                {r.rx_bytes / cpus, r.rx_packets / cpus, r.tx_bytes / cpus, r.tx_packets / cpus});
        }
    }
    fill(f.dc, dc_keys[0], dc_values[0], cpus);
    fill(f.dc_1, dc_keys[1], dc_values[1], cpus);
    std::vector<net_stat_key> keys;
    std::vector<net_stat_counters> values;
    for (uint32_t i = 0; i < kCgroups; ++i) {
        keys.push_back({100000 + uint64_t(i)});
        for (uint32_t c = 0; c < cpus; ++c) {
            values.push_back({1000, 1, 1000, 1});
        }
    }
    fill(f.cgroup, keys, values, cpus);
    return f;
}

// A tree of kCgroups directories shaped like the paths above, for the walk.
class temp_tree {
  public:
    temp_tree() {
        char tmpl[] = "/tmp/agent-bench-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            return;
        }
        root_ = tmpl;
        ::mkdir((root_ + "/kubepods.slice").c_str(), 0755);
        ::mkdir((root_ + "/kubepods.slice/kubepods-burstable.slice").c_str(), 0755);
        for (uint32_t i = 0; i < kCgroups / 2; ++i) {
            std::string p = path_of(i);
            p.resize(p.rfind('/'));
            ::mkdir((root_ + p).c_str(), 0755);
            ::mkdir((root_ + path_of(i)).c_str(), 0755);
        }
    }
    ~temp_tree() {
        if (!root_.empty()) {
            std::system(("rm -rf " + root_).c_str());
        }
    }
    const std::string& root() const { return root_; }

  private:
    std::string root_;
};

}  // namespace

// A cgroup of the benchmark's own under the cgroup2 mount, and kNewCgroups children made and
// removed on demand (no process joins them): new ids to name by handle. Removed on destruction.
constexpr uint32_t kNewCgroups = 100;

class bench_cgroups {
  public:
    bench_cgroups() {
        auto mount = ebpf::cgroup2_mount();
        if (!mount) {
            return;
        }
        const std::string parent = *mount + "/ebpf-agent-bench-" + std::to_string(::getpid());
        if (::mkdir(parent.c_str(), 0755) == 0) {
            mount_ = *mount;
            parent_ = parent;
        }
    }
    ~bench_cgroups() {
        remove_children();
        if (!parent_.empty()) {
            ::rmdir(parent_.c_str());
        }
    }
    // Makes the children; false when one cannot be made.
    bool make_children() {
        for (uint32_t i = 0; i < kNewCgroups && !parent_.empty(); ++i) {
            const std::string p = parent_ + "/pod" + std::to_string(i);
            struct stat st {};
            if (::mkdir(p.c_str(), 0755) != 0 || ::stat(p.c_str(), &st) != 0) {
                return false;
            }
            children_.push_back(p);
            ids_.push_back(st.st_ino);
        }
        return ids_.size() == kNewCgroups;
    }
    void remove_children() {
        for (const auto& c : children_) {
            ::rmdir(c.c_str());
        }
        children_.clear();
        ids_.clear();
    }
    const std::string& mount() const { return mount_; }
    const std::vector<uint64_t>& ids() const { return ids_; }

  private:
    std::string mount_, parent_;
    std::vector<std::string> children_;
    std::vector<uint64_t> ids_;
};

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    fixture f = make_fixture();
    auto resolve = [&f](uint64_t id) {
        return f.resolve(id);
    };
    auto resolve_short = [&f](uint64_t id) {
        return f.resolve_short(id);
    };
    const agent::rollup_options opts{.cgroup_depth = 3, .max_cgroups = kCgroups};
    agent::counter_maps maps{&f.cgroup, &f.dc, &f.errors, &f.dc_1};
    temp_tree tree;
    bench_cgroups new_cgroups;

    // One scrape as the daemon makes it: the maps read, the rows rolled up, the page rendered.
    // False (the benchmark told why) when the read fails.
    auto scrape = [&](benchmark::State& st, agent::counter_snapshot& snap,
                      agent::cgroup_rollup& rollup, const auto& resolve_fn, std::string& page) {
        page.clear();
        auto r = agent::read_counters(maps, snap);
        if (!r) {
            st.SkipWithError(r.error().message().c_str());
            return false;
        }
        rollup.fold(snap.rows, resolve_fn);
        agent::render_traffic(rollup, f.dcs, f.nets, page);
        agent::render_self(f.self, snap, rollup.labels_in_use(), 0, agent::read_process_stats(),
                           page);
        benchmark::DoNotOptimize(page.data());
        return true;
    };

    size_t page_bytes = 0, short_page_bytes = 0, series = 0;
    struct bench_case {
        std::string name;
        std::function<void(benchmark::State&)> fn;
    };
    std::vector<bench_case> cases = {
        // Synthetic rows: roll-up (fold) and the whole page.
        {"render_10000x8",
         [&](benchmark::State& st) {
             agent::cgroup_rollup rollup(opts);
             std::string page;
             for (auto _ : st) {
                 page.clear();
                 rollup.fold(f.rows, resolve);
                 agent::render_traffic(rollup, f.dcs, f.nets, page);
                 agent::render_self(f.self, {}, rollup.labels_in_use(), 0, {}, page);
                 benchmark::DoNotOptimize(page.data());
             }
             page_bytes = page.size();
             series = rollup.series_count();
         }},
        // Its parts: the roll-up alone, the page alone.
        {"fold_10000x8",
         [&](benchmark::State& st) {
             agent::cgroup_rollup rollup(opts);
             for (auto _ : st) {
                 rollup.fold(f.rows, resolve);
             }
         }},
        {"page_10000x8",
         [&](benchmark::State& st) {
             agent::cgroup_rollup rollup(opts);
             rollup.fold(f.rows, resolve);
             std::string page;
             for (auto _ : st) {
                 page.clear();
                 agent::render_traffic(rollup, f.dcs, f.nets, page);
                 benchmark::DoNotOptimize(page.data());
             }
         }},
        // The counter maps (the two halves of the dc keys, and the per-cgroup map) read with
        // batch lookups.
        {"read_maps_10000x8",
         [&](benchmark::State& st) {
             agent::counter_snapshot snap;
             for (auto _ : st) {
                 auto r = agent::read_counters(maps, snap);
                 if (!r || snap.rows.size() != kCgroups * kDcs) {
                     st.SkipWithError("read_counters failed or read the wrong number of rows");
                     return;
                 }
             }
         }},
        // The roll-up of rows in the order a read gives them (the kernel's hash order).
        {"fold_read_rows",
         [&](benchmark::State& st) {
             agent::counter_snapshot snap;
             if (!agent::read_counters(maps, snap)) {
                 st.SkipWithError("read_counters failed");
                 return;
             }
             agent::cgroup_rollup rollup(opts);
             for (auto _ : st) {
                 rollup.fold(snap.rows, resolve);
             }
         }},
        // The scrape: maps -> rows -> roll-up -> page; with the Kubernetes-like paths (about
        // 150 characters) and with short systemd-like ones.
        {"scrape_10000x8",
         [&](benchmark::State& st) {
             agent::counter_snapshot snap;
             agent::cgroup_rollup rollup(opts);
             std::string page;
             for (auto _ : st) {
                 if (!scrape(st, snap, rollup, resolve, page)) {
                     return;
                 }
             }
         }},
        // The same while the cgroups change: before each scrape one cgroup's keys go and a new
        // cgroup's come (made outside the timing), so the roll-up meets a new series and a gone
        // one every time, as on a host where pods come and go. The maps are put back after.
        {"scrape_10000x8_churn",
         [&](benchmark::State& st) {
             const uint32_t cpus = must(ebpf::possible_cpus(), "possible CPUs");
             const std::vector<net_stat_counters> per_cpu(cpus,
                                                          net_stat_counters{1000, 1, 1000, 1});
             auto half = [&](const net_stat_dc_key& k) -> ebpf::map& {
                 return net_stat_dc_shard(&k) ? f.dc_1 : f.dc;
             };
             // Moves cgroup `from`'s 8 keys to cgroup `to`.
             auto move_keys = [&](uint64_t from, uint64_t to) {
                 for (uint32_t dc = 0; dc < kDcs; ++dc) {
                     const net_stat_dc_key gone{from, dc, 1 + dc % 2}, come{to, dc, 1 + dc % 2};
                     (void)half(gone).erase(&gone);
                     if (auto r = half(come).update(&come, per_cpu.data()); !r) {
                         std::fprintf(stderr, "churn: %s\n", r.error().full_message().c_str());
                         std::exit(1);
                     }
                 }
             };
             agent::counter_snapshot snap;
             agent::cgroup_rollup rollup(opts);
             std::string page;
             uint32_t k = 0;
             for (auto _ : st) {
                 st.PauseTiming();
                 move_keys(100000 + k % kChurnPool, kChurnBase + k % kChurnPool);
                 ++k;
                 st.ResumeTiming();
                 if (!scrape(st, snap, rollup, resolve, page)) {
                     break;
                 }
             }
             for (uint32_t i = 0; i < k && i < kChurnPool; ++i) {
                 move_keys(kChurnBase + i, 100000 + i);
             }
         }},
        {"scrape_10000x8_short",
         [&](benchmark::State& st) {
             agent::counter_snapshot snap;
             agent::cgroup_rollup rollup(opts);
             std::string page;
             for (auto _ : st) {
                 if (!scrape(st, snap, rollup, resolve_short, page)) {
                     return;
                 }
             }
             short_page_bytes = page.size();
         }},
        // Naming new cgroups without a walk: kNewCgroups ids the resolver has not seen, each
        // opened by its handle (open_by_handle_at), after a walk of this host's cgroups made
        // outside the timing.
        {"name_100_new_by_handle",
         [&](benchmark::State& st) {
             for (auto _ : st) {
                 st.PauseTiming();
                 agent::cgroup_names names(new_cgroups.mount());
                 auto r = names.walk();
                 const bool made = new_cgroups.make_children();
                 st.ResumeTiming();
                 std::string err;
                 names.update(new_cgroups.ids(), err);
                 st.PauseTiming();
                 const bool named = names.opened_by_handle() == kNewCgroups && names.walks() == 1;
                 new_cgroups.remove_children();
                 st.ResumeTiming();
                 if (!r || !made || !named) {
                     st.SkipWithError("not named by handle");
                     return;
                 }
             }
         }},
        // Resolving names: a walk of 10,000 directories (a file system tree, not cgroupfs).
        {"walk_10000_dirs",
         [&](benchmark::State& st) {
             agent::cgroup_names names(tree.root());
             for (auto _ : st) {
                 auto r = names.walk();
                 if (!r || names.alive() < kCgroups) {
                     st.SkipWithError("walk failed");
                     return;
                 }
             }
         }},
    };

    std::map<std::string, bench::slot> slots;
    for (int round = 0; round < kRounds; ++round) {
        for (size_t c = 0; c < cases.size(); ++c) {
            const std::string name = cases[c].name + "/round:" + std::to_string(round);
            benchmark::RegisterBenchmark(name.c_str(), cases[c].fn)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->Iterations(5);
            slots.emplace(name, bench::slot{c, 0});
        }
    }
    std::vector<std::vector<bench::samples>> samples(cases.size(), std::vector<bench::samples>(1));
    bench::recording_reporter reporter(std::move(slots), samples);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    std::printf(
        "\nmedian over %d rounds (wall ms per operation; %u cgroups x %u dcs, %zu series, "
        "page %.1f MB (short paths: %.1f MB), %u possible CPUs):\n",
        kRounds, kCgroups, kDcs, series, double(page_bytes) / 1e6, double(short_page_bytes) / 1e6,
        must(ebpf::possible_cpus(), "cpus"));
    bool ok = true;
    for (size_t c = 0; c < cases.size(); ++c) {
        if (samples[c][0].real.empty()) {
            continue;
        }
        const double ms = bench::median(samples[c][0].real);
        const bool is_scrape = cases[c].name.rfind("scrape", 0) == 0;
        std::printf("  %-20s %8.2f ms%s\n", cases[c].name.c_str(), ms,
                    is_scrape ? (ms <= kTargetMs ? "  (target <= 50 ms: met)"
                                                 : "  (target <= 50 ms: NOT met)")
                              : "");
        ok &= !is_scrape || ms <= kTargetMs;
    }
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    std::printf("  peak RSS of this benchmark %.1f MB (maps filled from user space included)\n",
                double(ru.ru_maxrss) / 1e3);
    return ok ? 0 : 2;
}
