// Map element access through the raw bpf(2) syscall, the ebpf::sys layer and the typed views,
// interleaved round by round; then batch updates and mmap'd array writes. Needs root.
//
// Every (case, variant) is registered once per round, and the rounds run one after another,
// so raw, sys and typed of a case alternate throughout the run instead of running back to back.
// The summary at the end gives the median over the rounds of each variant's time per operation
// and the typed/raw ratio, which must stay at or below kLimit.
//
// Standard Google Benchmark flags apply, e.g. --benchmark_filter=hash for a quick partial run
// (the summary then shows only what ran). Each run has a fixed iteration count, so
// --benchmark_min_time does not change it.

#include <benchmark/benchmark.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bench_stats.hpp"
#include "ebpf/map.hpp"
#include "ebpf/sys/bpf.hpp"
#include "ebpf/typed_map.hpp"

namespace {

constexpr int kRounds = 100;
// Iterations of one registered run, fixed so that every round times the same work and no time
// goes to estimating it: 10-30 ms per run. Short runs in many rounds spread the noise of other
// processes evenly over the variants.
constexpr int64_t kElementIterations = 5000;
constexpr int64_t kBatchIterations = 25;  // of 1,024 elements each
constexpr int64_t kStoreIterations = 50000000;
constexpr double kLimit = 1.03;  // typed/raw must not exceed this
constexpr uint32_t kBatch = 1024;
constexpr uint32_t kKey = 7;  // the element the single-element cases touch

// ---------------------------------------------------------------------------------------------
// The raw baseline: union bpf_attr from the uapi header and syscall(2), nothing else.

constexpr unsigned kElemAttrSize = offsetof(union bpf_attr, flags) + sizeof(uint64_t);

// Returns 0 or the errno of the failed call.
inline int raw_elem(int cmd, int fd, const void* key, void* value, uint64_t flags) {
    union bpf_attr attr;
    std::memset(&attr, 0, kElemAttrSize);
    attr.map_fd = static_cast<uint32_t>(fd);
    attr.key = reinterpret_cast<uintptr_t>(key);
    attr.value = reinterpret_cast<uintptr_t>(value);
    attr.flags = flags;
    if (::syscall(__NR_bpf, cmd, &attr, kElemAttrSize) != 0) {
        return errno;
    }
    return 0;
}

inline int raw_update(int fd, const void* key, const void* value) {
    return raw_elem(BPF_MAP_UPDATE_ELEM, fd, key, const_cast<void*>(value), BPF_ANY);
}

inline int raw_lookup(int fd, const void* key, void* value) {
    return raw_elem(BPF_MAP_LOOKUP_ELEM, fd, key, value, 0);
}

std::string raw_error(const char* what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

// ---------------------------------------------------------------------------------------------
// The maps, made once.

template <class T>
T must(ebpf::result<T> r, const char* what) {
    if (!r) {
        std::fprintf(stderr, "map_bench: %s: %s\n", what, r.error().full_message().c_str());
        std::exit(1);
    }
    return std::move(*r);
}

void must(ebpf::result<void> r, const char* what) {
    if (!r) {
        std::fprintf(stderr, "map_bench: %s: %s\n", what, r.error().full_message().c_str());
        std::exit(1);
    }
}

ebpf::map make_map(const char* name, uint32_t type, uint32_t key_size, uint32_t value_size,
                   uint32_t max_entries, uint32_t flags = 0) {
    ebpf::map_options o;
    o.type = type;
    o.key_size = key_size;
    o.value_size = value_size;
    o.max_entries = max_entries;
    o.flags = flags;
    o.name = name;
    return must(ebpf::map::create(o), "create map");
}

struct Fixture {
    ebpf::map array, hash, lpm, percpu, batch_array, batch_hash, mm_array;
    uint32_t cpus = 0;
    ebpf::lpm_key lpm_update_key;  // a stored prefix (the /48)
    ebpf::lpm_key lpm_lookup_key;  // a full-length /128 address inside it
    std::vector<uint32_t> batch_keys;
    std::vector<uint64_t> batch_values;
    ebpf::map_mapping mapping;
};

std::unique_ptr<Fixture> make_fixture() {
    auto f = std::make_unique<Fixture>();
    f->cpus = must(ebpf::possible_cpus(), "possible CPUs");

    f->array = make_map("bench_array", BPF_MAP_TYPE_ARRAY, 4, 8, 1024);
    f->hash = make_map("bench_hash", BPF_MAP_TYPE_HASH, 4, 8, 1024);
    f->lpm = make_map("bench_lpm", BPF_MAP_TYPE_LPM_TRIE, sizeof(ebpf::lpm_key), 8, 64,
                      BPF_F_NO_PREALLOC);
    f->percpu = make_map("bench_percpu", BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 1024);
    f->batch_array = make_map("bench_barray", BPF_MAP_TYPE_ARRAY, 4, 8, kBatch);
    f->batch_hash = make_map("bench_bhash", BPF_MAP_TYPE_HASH, 4, 8, kBatch);
    f->mm_array = make_map("bench_mmarray", BPF_MAP_TYPE_ARRAY, 4, 8, 1024, BPF_F_MMAPABLE);

    const uint32_t key = kKey;
    const uint64_t one = 1;
    must(f->hash.update(&key, &one), "insert into the hash");
    std::vector<uint64_t> per_cpu(f->cpus, 1);
    must(f->percpu.update(&key, per_cpu.data()), "insert into the per-CPU hash");

    const char* prefixes[] = {"::/0", "2001:db8::/32", "2001:db8:1::/48", "10.0.0.0/8",
                              "192.168.0.0/16"};
    uint64_t v = 100;
    for (const char* p : prefixes) {
        auto k = must(ebpf::lpm_key::parse(p), "parse a prefix");
        must(f->lpm.update(&k, &v), "insert into the LPM trie");
        ++v;
    }
    f->lpm_update_key = must(ebpf::lpm_key::parse("2001:db8:1::/48"), "parse a prefix");
    f->lpm_lookup_key = must(ebpf::lpm_key::parse("2001:db8:1::42"), "parse an address");
    uint64_t found = 0;
    if (!must(f->lpm.lookup(&f->lpm_lookup_key, &found), "look up the LPM trie") || found != 102) {
        std::fprintf(stderr, "map_bench: the /128 key does not match the /48 prefix\n");
        std::exit(1);
    }

    for (uint32_t i = 0; i < kBatch; ++i) {
        f->batch_keys.push_back(i);
        f->batch_values.push_back(i);
    }
    f->mapping = must(f->mm_array.mmap(), "mmap the array");
    return f;
}

// ---------------------------------------------------------------------------------------------
// The loop every benchmark runs: op(i, err) does one operation and returns false on failure.
// The loop is one non-template function for every variant and calls the operation through a
// pointer to a function that is never inlined, so the variants run the same loop code and
// differ only in the operation: otherwise code layout alone moves a variant by a few percent.

using OpFn = bool (*)(const void* op, uint64_t i, std::string& err);

// The loop with the operation inlined: for the mmap'd store, which costs less than a call.
template <class Op>
void run_inline_loop(benchmark::State& state, Op op) {
    uint64_t i = 0;
    std::string err;
    for (auto _ : state) {
        if (!op(i++, err)) [[unlikely]] {
            state.SkipWithError(err.c_str());
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
}

template <class Op>
__attribute__((noinline)) bool invoke(const void* op, uint64_t i, std::string& err) {
    return (*static_cast<const Op*>(op))(i, err);
}

__attribute__((noinline)) void run_loop(benchmark::State& state, OpFn fn, const void* op,
                                        int64_t items_per_op) {
    uint64_t i = 0;
    std::string err;
    for (auto _ : state) {
        if (!fn(op, i++, err)) [[unlikely]] {
            state.SkipWithError(err.c_str());
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * items_per_op);
}

// Reports the error of a library result into err; true on success.
template <class R>
bool ok(const R& r, std::string& err) {
    if (!r) [[unlikely]] {
        err = r.error().message();
        return false;
    }
    return true;
}

bool not_found(std::string& err) {
    err = "the key is absent";
    return false;
}

// ---------------------------------------------------------------------------------------------
// Cases: each has variants that are timed against each other.

using BenchFn = std::function<void(benchmark::State&)>;

struct Variant {
    std::string name;
    BenchFn fn;
    int64_t iterations = kElementIterations;
};

struct Case {
    std::string name;
    std::vector<Variant> variants;
    int64_t items_per_op = 1;  // elements one operation handles (1024 for the batch cases)
};

// The benchmark body for an operation.
template <class Op>
BenchFn loop(Op op, int64_t items_per_op = 1) {
    return [op, items_per_op](benchmark::State& s) {
        run_loop(s, &invoke<Op>, &op, items_per_op);
    };
}

// Raw, sys and typed variants of one element operation on one map.
template <class Raw, class Sys, class Typed>
Case element_case(std::string name, Raw raw, Sys sys, Typed typed) {
    return Case{std::move(name), {{"raw", loop(raw)}, {"sys", loop(sys)}, {"typed", loop(typed)}}};
}

// The update case of one map through raw, sys and typed: `key` points at a K that outlives the
// benchmark, the value is `slots` u64s (one per CPU for per-CPU maps), and every variant writes
// `i` to each slot, as percpu_hash::update_all does. `typed` goes through the view.
template <class K, class Typed>
Case update_case(std::string name, int fd, const K* key, uint32_t slots, Typed typed) {
    auto buf = [slots] {
        return std::make_shared<std::vector<uint64_t>>(slots);
    };
    return element_case(
        std::move(name),
        [fd, key, b = buf()](uint64_t i, std::string& err) {
            std::fill(b->begin(), b->end(), i);
            if (int e = raw_update(fd, key, b->data()); e != 0) [[unlikely]] {
                err = raw_error("BPF_MAP_UPDATE_ELEM", e);
                return false;
            }
            return true;
        },
        [fd, key, b = buf()](uint64_t i, std::string& err) {
            std::fill(b->begin(), b->end(), i);
            return ok(ebpf::sys::map_update_elem(fd, key, b->data()), err);
        },
        typed);
}

// The lookup case of one map, as update_case; the key must be present.
template <class K, class Typed>
Case lookup_case(std::string name, int fd, const K* key, uint32_t slots, Typed typed) {
    auto buf = [slots] {
        return std::make_shared<std::vector<uint64_t>>(slots);
    };
    return element_case(
        std::move(name),
        [fd, key, b = buf()](uint64_t, std::string& err) {
            if (int e = raw_lookup(fd, key, b->data()); e != 0) [[unlikely]] {
                err = raw_error("BPF_MAP_LOOKUP_ELEM", e);
                return false;
            }
            benchmark::DoNotOptimize((*b)[0]);
            return true;
        },
        [fd, key, b = buf()](uint64_t, std::string& err) {
            auto r = ebpf::sys::map_lookup_elem(fd, key, b->data());
            if (!ok(r, err)) [[unlikely]] {
                return false;
            }
            if (!*r) [[unlikely]] {
                return not_found(err);
            }
            benchmark::DoNotOptimize((*b)[0]);
            return true;
        },
        typed);
}

// The typed lookup of a view whose lookup(key) gives result<optional<V>>.
template <class View, class K>
auto optional_lookup(const View* view, const K* key) {
    return [view, key](uint64_t, std::string& err) {
        auto r = view->lookup(*key);
        if (!ok(r, err)) [[unlikely]] {
            return false;
        }
        if (!*r) [[unlikely]] {
            return not_found(err);
        }
        benchmark::DoNotOptimize(**r);
        return true;
    };
}

// Typed views live as long as the fixture; they refer to its maps.
struct Views {
    ebpf::array<uint64_t> array;
    ebpf::hash<uint32_t, uint64_t> hash;
    ebpf::lpm_trie<uint64_t> lpm;
    ebpf::percpu_hash<uint32_t, uint64_t> percpu;
};

std::vector<Case> make_cases(Fixture& f, Views& v) {
    std::vector<Case> cases;
    static const uint32_t key = kKey;

    cases.push_back(update_case(
        "array/update", f.array.fd(), &key, 1,
        [a = &v.array](uint64_t i, std::string& err) { return ok(a->update(kKey, i), err); }));
    cases.push_back(lookup_case("array/lookup", f.array.fd(), &key, 1,
                                [a = &v.array](uint64_t, std::string& err) {
                                    auto r = a->lookup(kKey);
                                    if (!ok(r, err)) [[unlikely]] {
                                        return false;
                                    }
                                    benchmark::DoNotOptimize(*r);
                                    return true;
                                }));

    cases.push_back(update_case(
        "hash/update", f.hash.fd(), &key, 1,
        [h = &v.hash](uint64_t i, std::string& err) { return ok(h->update(kKey, i), err); }));
    cases.push_back(
        lookup_case("hash/lookup", f.hash.fd(), &key, 1, optional_lookup(&v.hash, &key)));

    // Update rewrites the stored /48; lookup finds it from a /128 address.
    const ebpf::lpm_key* upd = &f.lpm_update_key;
    const ebpf::lpm_key* look = &f.lpm_lookup_key;
    cases.push_back(update_case(
        "lpm_trie/update", f.lpm.fd(), upd, 1,
        [t = &v.lpm, upd](uint64_t i, std::string& err) { return ok(t->update(*upd, i), err); }));
    cases.push_back(
        lookup_case("lpm_trie/lookup", f.lpm.fd(), look, 1, optional_lookup(&v.lpm, look)));

    const uint32_t cpus = f.cpus;
    cases.push_back(update_case(
        "percpu_hash/update", f.percpu.fd(), &key, cpus,
        [p = &v.percpu](uint64_t i, std::string& err) { return ok(p->update_all(kKey, i), err); }));
    cases.push_back(lookup_case("percpu_hash/lookup", f.percpu.fd(), &key, cpus,
                                [p = &v.percpu, b = std::make_shared<std::vector<uint64_t>>(cpus)](
                                    uint64_t, std::string& err) {
                                    auto r = p->lookup(kKey, std::span<uint64_t>(*b));
                                    if (!ok(r, err)) [[unlikely]] {
                                        return false;
                                    }
                                    if (!*r) [[unlikely]] {
                                        return not_found(err);
                                    }
                                    benchmark::DoNotOptimize((*b)[0]);
                                    return true;
                                }));

    // Batch update of 1,024 keys against 1,024 single raw updates, timed per element.
    for (ebpf::map* m : {&f.batch_hash, &f.batch_array}) {
        const int fd = m->fd();
        const uint32_t* keys = f.batch_keys.data();
        const uint64_t* values = f.batch_values.data();
        std::string name = m == &f.batch_hash ? "hash/batch_update" : "array/batch_update";
        auto single = [fd, keys, values](uint64_t, std::string& err) {
            for (uint32_t k = 0; k < kBatch; ++k) {
                if (int e = raw_update(fd, &keys[k], &values[k]); e != 0) [[unlikely]] {
                    err = raw_error("BPF_MAP_UPDATE_ELEM", e);
                    return false;
                }
            }
            return true;
        };
        auto batch = [m, keys, values](uint64_t, std::string& err) {
            auto r = m->update_batch(keys, values, kBatch);
            if (!ok(r, err)) [[unlikely]] {
                return false;
            }
            if (*r != kBatch) [[unlikely]] {
                err = "update_batch wrote " + std::to_string(*r) + " elements";
                return false;
            }
            return true;
        };
        cases.push_back(Case{std::move(name),
                             {{"single", loop(single, kBatch), kBatchIterations},
                              {"batch", loop(batch, kBatch), kBatchIterations}},
                             kBatch});
    }

    // One element of a BPF_F_MMAPABLE array: a store through the mapping against a raw update.
    {
        const int fd = f.mm_array.fd();
        auto* slot = reinterpret_cast<uint64_t*>(f.mapping.data()) + kKey;
        auto raw = [fd](uint64_t i, std::string& err) {
            if (int e = raw_update(fd, &key, &i); e != 0) [[unlikely]] {
                err = raw_error("BPF_MAP_UPDATE_ELEM", e);
                return false;
            }
            return true;
        };
        auto store = [slot](uint64_t i, std::string&) {
            *slot = i;
            benchmark::ClobberMemory();
            return true;
        };
        auto checked_store = [fd, slot, store](benchmark::State& s) {
            run_inline_loop(s, store);
            // The store must be what the kernel sees.
            uint64_t seen = 0;
            if (int e = raw_lookup(fd, &key, &seen); e != 0 || seen != *slot) {
                s.SkipWithError("the mmap'd store is not visible through the syscall");
            }
        };
        cases.push_back(Case{"mmap_array/write",
                             {{"syscall", loop(raw)}, {"mmap", checked_store, kStoreIterations}}});
    }
    return cases;
}

// ---------------------------------------------------------------------------------------------
// Collecting the runs: a display reporter that also records every run's time per operation.

using Slot = bench::slot;
using Samples = bench::samples;  // times per operation in ns

using bench::median;
using bench::paired_ratio;

// Formats a median per element ("-" when nothing ran).
std::string ns(const Samples& s, int64_t items_per_op) {
    if (s.cpu.empty()) {
        return "-";
    }
    char buf[32];
    const double t = median(s.cpu) / double(items_per_op);
    std::snprintf(buf, sizeof buf, t < 10 ? "%.2f" : "%.1f", t);
    return buf;
}

std::string ratio(const std::vector<double>& a, const std::vector<double>& b,
                  const char* format = "%.3f") {
    if (a.empty() || b.empty()) {
        return "-";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, format, paired_ratio(a, b));
    return buf;
}

void print_summary(const std::vector<Case>& cases, const std::vector<std::vector<Samples>>& s) {
    std::printf(
        "\nSummary: medians over %d interleaved rounds, CPU time (user+system) per operation in "
        "ns.\nRatios are medians of the per-round ratios (CPU time; wall-clock in the last "
        "ratio column).\nLimit: typed/raw <= %.2f.\n\n",
        kRounds, kLimit);
    std::printf("%-22s %9s %9s %9s %8s %10s %11s  %s\n", "case", "raw", "sys", "typed", "sys/raw",
                "typed/raw", "(wall t/r)", "verdict");
    int failed = 0;
    for (size_t c = 0; c < cases.size(); ++c) {
        if (cases[c].variants.size() != 3) {
            continue;
        }
        const auto& raw = s[c][0];
        const auto& sys = s[c][1];
        const auto& typed = s[c][2];
        const char* verdict = "-";
        if (!raw.cpu.empty() && !typed.cpu.empty()) {
            bool pass = paired_ratio(typed.cpu, raw.cpu) <= kLimit;
            verdict = pass ? "PASS" : "FAIL";
            failed += !pass;
        }
        std::printf("%-22s %9s %9s %9s %8s %10s %11s  %s\n", cases[c].name.c_str(),
                    ns(raw, 1).c_str(), ns(sys, 1).c_str(), ns(typed, 1).c_str(),
                    ratio(sys.cpu, raw.cpu).c_str(), ratio(typed.cpu, raw.cpu).c_str(),
                    ratio(typed.real, raw.real).c_str(), verdict);
    }

    std::printf("\nBatch update of %u keys against %u single raw updates, ns per element:\n\n",
                kBatch, kBatch);
    std::printf("%-22s %9s %9s %13s\n", "case", "single", "batch", "batch/single");
    for (size_t c = 0; c < cases.size(); ++c) {
        if (cases[c].variants.size() != 2 || cases[c].items_per_op == 1) {
            continue;
        }
        std::printf("%-22s %9s %9s %13s\n", cases[c].name.c_str(),
                    ns(s[c][0], cases[c].items_per_op).c_str(),
                    ns(s[c][1], cases[c].items_per_op).c_str(),
                    ratio(s[c][1].cpu, s[c][0].cpu).c_str());
    }

    std::printf("\nOne element of a BPF_F_MMAPABLE array, ns per write:\n\n");
    std::printf("%-22s %9s %9s %13s\n", "case", "syscall", "mmap", "syscall/mmap");
    for (size_t c = 0; c < cases.size(); ++c) {
        if (cases[c].variants.size() != 2 || cases[c].items_per_op != 1) {
            continue;
        }
        std::printf("%-22s %9s %9s %13s\n", cases[c].name.c_str(), ns(s[c][0], 1).c_str(),
                    ns(s[c][1], 1).c_str(), ratio(s[c][0].cpu, s[c][1].cpu, "%.0fx").c_str());
    }
    std::printf("\n%s\n", failed ? "FAIL: typed/raw is above the limit in some case"
                                 : "typed/raw within the limit wherever it ran");
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }

    auto fixture = make_fixture();
    Views views{
        must(ebpf::array<uint64_t>::view(fixture->array), "array view"),
        must(ebpf::hash<uint32_t, uint64_t>::view(fixture->hash), "hash view"),
        must(ebpf::lpm_trie<uint64_t>::view(fixture->lpm), "lpm_trie view"),
        must(ebpf::percpu_hash<uint32_t, uint64_t>::view(fixture->percpu), "percpu_hash view")};
    const std::vector<Case> cases = make_cases(*fixture, views);

    // Round-robin registration; within a round the variant order rotates, so that no variant
    // always runs first after a switch of case.
    std::map<std::string, Slot> slots;
    for (int round = 0; round < kRounds; ++round) {
        for (size_t c = 0; c < cases.size(); ++c) {
            const size_t n = cases[c].variants.size();
            for (size_t k = 0; k < n; ++k) {
                const size_t v = (k + size_t(round)) % n;
                std::string name = cases[c].name + "/" + cases[c].variants[v].name +
                                   "/round:" + std::to_string(round);
                benchmark::RegisterBenchmark(name.c_str(), cases[c].variants[v].fn)
                    ->Unit(benchmark::kNanosecond)
                    ->Iterations(cases[c].variants[v].iterations);
                slots.emplace(std::move(name), Slot{c, v});
            }
        }
    }

    std::vector<std::vector<Samples>> samples(cases.size());
    for (size_t c = 0; c < cases.size(); ++c) {
        samples[c].resize(cases[c].variants.size());
    }
    bench::recording_reporter reporter(std::move(slots), samples);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    // Nothing ran with --benchmark_list_tests or a filter that matches nothing.
    bool any = false;
    for (const auto& c : samples) {
        for (const auto& v : c) {
            any = any || !v.cpu.empty();
        }
    }
    if (any) {
        print_summary(cases, samples);
    }
    return 0;
}
