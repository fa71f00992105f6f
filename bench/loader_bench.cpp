// Our loader against libbpf (Debian's libbpf-dev 1.1, used by this benchmark only) on the same
// objects in the same run: vmlinux BTF parsing, object open, and object open + load; then our
// own costs piece by piece. Needs root.
//
// Every (case, variant) is registered once per round and the rounds run one after another, so
// ours and libbpf alternate throughout the run. The summary gives the median over the rounds of
// each variant's time per operation and the median of the per-round libbpf/ours ratios, against
// two targets: vmlinux BTF read + parse + index <= kBtfLimitMs, and the full load of the object
// with CO-RE relocations against the kernel >= kLoadSpeedup times faster than libbpf's.
//
// Our loads find the kernel BTF cached: kernel_btf() parses vmlinux once per process, while
// libbpf parses it again in every bpf_object__load that needs it. Both are what users get; our
// one-time cost is the vmlinux row, and our first load of the process is timed once, cold.
// Faulting in fresh pages for vmlinux-sized buffers costs as much as parsing them here, so the
// cases with such buffers run twice: with fresh pages and with a warm heap (see use_heap).
//
// Standard Google Benchmark flags apply, e.g. --benchmark_filter=load for a partial run.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/btf.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
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
#include "ebpf/btf/btf.hpp"
#include "ebpf/collection.hpp"
#include "ebpf/core/candidate_cache.hpp"
#include "ebpf/kernel_btf.hpp"
#include "ebpf/spec/collection_spec.hpp"

// After ours: libbpf's btf.h declares functions named btf_array, btf_enum, btf_enum64, ... that
// hide the <linux/btf.h> structs of the same names from C++ code that follows it.
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#ifndef EBPF_BENCH_LOADER_OBJECT
#error "EBPF_BENCH_LOADER_OBJECT must name the project's loader_test.bpf.o"
#endif
#ifndef EBPF_BENCH_CORE_OBJECT
#error "EBPF_BENCH_CORE_OBJECT must name the benchmark's core_load.bpf.o"
#endif
#ifndef EBPF_BENCH_CORPUS
#error "EBPF_BENCH_CORPUS must name the corpus directory"
#endif

namespace {

constexpr int kRounds = 50;
// Each registered run times a fixed number of operations, picked once from a trial so that the
// slower variant of a case takes about this long: short runs in many rounds spread the noise of
// other processes evenly over the variants.
constexpr double kRunBudgetMs = 20;
constexpr double kBtfLimitMs = 3;   // ours: vmlinux BTF read + parse + index
constexpr double kLoadSpeedup = 4;  // libbpf/ours for the full load of the CO-RE object

const char* const kVmlinux = "/sys/kernel/btf/vmlinux";
const char* const kBtfTargetCase = "read + parse + index";

// ---------------------------------------------------------------------------------------------
// libbpf's messages: silent, except while a trial run collects them to explain a failure.

std::string* libbpf_log = nullptr;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
    if (libbpf_log && level != LIBBPF_DEBUG) {
        char buf[1024];
        std::vsnprintf(buf, sizeof buf, format, args);
        *libbpf_log += buf;
    }
    return 0;
}

std::string errno_text(int e) {
    return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")";
}

// ---------------------------------------------------------------------------------------------
// The operations. Each does one complete piece of work and drops everything it made; it returns
// false with a reason on failure.

using Op = std::function<bool(std::string& err)>;

template <class R>
bool ok(const R& r, std::string& err) {
    if (!r) [[unlikely]] {
        err = r.error().full_message();
        return false;
    }
    return true;
}

// The questions CO-RE asks of vmlinux first: a type by name (the name index), and relocation
// candidates (the candidate index).
bool index_ours(const ebpf::btf::spec& s, bool candidates, std::string& err) {
    if (s.find("task_struct", BTF_KIND_STRUCT).empty()) [[unlikely]] {
        err = "no task_struct in vmlinux BTF";
        return false;
    }
    if (candidates) {
        ebpf::core::candidate_cache cache(s);
        if (cache.find("task_struct", BTF_KIND_STRUCT).empty()) [[unlikely]] {
            err = "no candidate for task_struct";
            return false;
        }
    }
    return true;
}

bool index_libbpf(struct btf* b, std::string& err) {
    const int id = btf__find_by_name_kind(b, "task_struct", BTF_KIND_STRUCT);
    btf__free(b);
    if (id <= 0) [[unlikely]] {
        err = "no task_struct in vmlinux BTF";
        return false;
    }
    return true;
}

// What kernel_btf() does on first use (map the file where the kernel allows it, else read it;
// parse; then the first find builds the name index), uncached. The CO-RE candidate index is
// timed on its own row.
bool btf_file_ours(std::string& err) {
    auto s = ebpf::detail::parse_raw_btf_file(kVmlinux);
    return ok(s, err) && index_ours(*s, false, err);
}

bool btf_file_libbpf(std::string& err) {
    struct btf* b = btf__parse(kVmlinux, nullptr);
    if (!b) [[unlikely]] {
        err = "btf__parse: " + errno_text(errno);
        return false;
    }
    return index_libbpf(b, err);
}

bool btf_memory_ours(const std::vector<std::byte>& bytes, std::string& err) {
    auto s = ebpf::btf::spec::parse(std::span<const std::byte>(bytes));
    return ok(s, err) && index_ours(*s, false, err);
}

bool btf_memory_libbpf(const std::vector<std::byte>& bytes, std::string& err) {
    struct btf* b = btf__new(bytes.data(), uint32_t(bytes.size()));
    if (!b) [[unlikely]] {
        err = "btf__new: " + errno_text(errno);
        return false;
    }
    return index_libbpf(b, err);
}

bool open_ours(const std::string& path, std::string& err) {
    auto spec = ebpf::collection_spec::open(path);
    benchmark::DoNotOptimize(spec);
    return ok(spec, err);
}

bool open_libbpf(const std::string& path, std::string& err) {
    struct bpf_object* obj = bpf_object__open(path.c_str());
    if (!obj) [[unlikely]] {
        err = "bpf_object__open: " + errno_text(errno);
        return false;
    }
    bpf_object__close(obj);
    return true;
}

bool load_ours(const std::string& path, const ebpf::collection_options& o, std::string& err) {
    auto spec = ebpf::collection_spec::open(path);
    if (!ok(spec, err)) [[unlikely]] {
        return false;
    }
    auto c = ebpf::collection::load(*spec, o);
    return ok(c, err);
}

bool load_libbpf(const std::string& path, std::string& err) {
    struct bpf_object* obj = bpf_object__open(path.c_str());
    if (!obj) [[unlikely]] {
        err = "bpf_object__open: " + errno_text(errno);
        return false;
    }
    // libbpf 1.1 sizes a ring buffer's key and value from its __type() declarations (cilium
    // declares a value type), and the kernel refuses such a ring buffer (EINVAL): it wants 0.
    struct bpf_map* m;
    bpf_object__for_each_map(m, obj) {
        if (bpf_map__type(m) == BPF_MAP_TYPE_RINGBUF) {
            bpf_map__set_key_size(m, 0);
            bpf_map__set_value_size(m, 0);
        }
    }
    const int e = bpf_object__load(obj);
    bpf_object__close(obj);
    if (e != 0) [[unlikely]] {
        err = "bpf_object__load: " + errno_text(-e);
        return false;
    }
    return true;
}

// The reference for the library's file reader: read(2) into a buffer of the file's size.
bool read_presized(std::string& err) {
    const int fd = ::open(kVmlinux, O_RDONLY | O_CLOEXEC);
    if (fd < 0) [[unlikely]] {
        err = std::string("open ") + kVmlinux + ": " + errno_text(errno);
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) [[unlikely]] {
        err = "fstat: " + errno_text(errno);
        ::close(fd);
        return false;
    }
    std::vector<std::byte> out(size_t(st.st_size));
    size_t n = 0;
    while (n < out.size()) {
        const ssize_t r = ::read(fd, out.data() + n, out.size() - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        n += size_t(r);
    }
    ::close(fd);
    benchmark::DoNotOptimize(out.data());
    if (n != out.size()) [[unlikely]] {
        err = "short read";
        return false;
    }
    return true;
}

// The other reference: mapping the file, which newer kernels allow for vmlinux BTF.
bool map_vmlinux(std::string& err) {
    const int fd = ::open(kVmlinux, O_RDONLY | O_CLOEXEC);
    if (fd < 0) [[unlikely]] {
        err = std::string("open ") + kVmlinux + ": " + errno_text(errno);
        return false;
    }
    struct stat st;
    void* p = MAP_FAILED;
    if (::fstat(fd, &st) == 0) {
        p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    }
    const int e = errno;
    ::close(fd);
    if (p == MAP_FAILED) {
        err = "mmap " + std::string(kVmlinux) + ": " + errno_text(e);
        return false;
    }
    // Touch every page, as a parse would.
    uint32_t sum = 0;
    for (size_t off = 0; off < size_t(st.st_size); off += 4096) {
        sum += static_cast<const uint8_t*>(p)[off];
    }
    benchmark::DoNotOptimize(sum);
    ::munmap(p, size_t(st.st_size));
    return true;
}

// ---------------------------------------------------------------------------------------------
// Where large buffers come from. A process that loads once gets new pages from the kernel for
// each vmlinux-sized buffer (5 MB or so), and faulting them in can cost more than the parse; a
// process that keeps loading may find them in its heap. glibc drifts between the two by itself
// (its mmap and trim thresholds follow the sizes freed), so the cases with such buffers run
// once with each, fixed: fresh gives the heap's free pages back to the kernel after every
// operation, untimed; warm keeps every large block in the heap and grows the heap before
// timing. The other cases allocate little and run warm.

enum class heap { fresh, warm, small };

const char* heap_name(heap h) {
    return h == heap::fresh ? "fresh" : h == heap::warm ? "warm" : "-";
}

void use_heap(heap h) {
    // Set explicitly, the thresholds stay put; 32 MiB is the largest mmap threshold glibc takes.
    const int mmap_threshold = h == heap::fresh ? 128 * 1024 : 32 * 1024 * 1024;
    if (::mallopt(M_MMAP_THRESHOLD, mmap_threshold) != 1 ||
        ::mallopt(M_TRIM_THRESHOLD, h == heap::fresh ? 128 * 1024 : 1 << 30) != 1) {
        std::fprintf(stderr, "loader_bench: mallopt failed\n");
        std::exit(1);
    }
    if (h == heap::fresh) {
        ::malloc_trim(0);
    }
}

// ---------------------------------------------------------------------------------------------
// Cases: a comparison has the variants ours and libbpf; a part of our own cost has ours alone.

struct Variant {
    std::string name;
    Op op;
};

enum class group { btf, open, load, part };

struct Case {
    group g;
    std::string name;
    heap h = heap::small;
    std::vector<Variant> variants;
    bool target = false;  // the object the load target applies to
    int64_t iterations = 1;
};

struct Object {
    std::string name;
    std::string path;
    bool target = false;  // the object with CO-RE relocations against the kernel
    size_t programs = 0, core_relos = 0, maps = 0;
};

std::vector<Object> objects() {
    const std::string corpus = std::string(EBPF_BENCH_CORPUS) + "/cilium/";
    return {
        // Six tracing programs with 29 CO-RE relocations against the kernel and two small maps:
        // the load target applies here.
        {"core_load.bpf.o", EBPF_BENCH_CORE_OBJECT, true},
        {"tcprtt_sockops", corpus + "examples_tcprtt_sockops_bpf_bpfel.o"},
        {"variables", corpus + "testdata_variables-el.elf"},
        {"counter", corpus + "docs_examples_getting_started_counter_bpfel.o"},
    };
}

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "loader_bench: %s\n", what.c_str());
    std::exit(1);
}

// Counts what our reading of each object holds, for the tables. An object we cannot read stays
// in: its cases fail in the trial and are reported there.
void describe(std::vector<Object>& objs) {
    for (auto& o : objs) {
        auto spec = ebpf::collection_spec::open(o.path);
        if (!spec) {
            continue;
        }
        for (const auto& m : spec->maps) {
            if (m.pinning == ebpf::pin_by_name) {
                fail(o.path + ": map " + m.name + " is pinned by name; pick another object");
            }
        }
        o.maps = spec->maps.size();
        for (const auto& p : spec->programs) {
            o.programs += p.autoload;
            o.core_relos += p.autoload ? p.core_relos.size() : 0;
        }
    }
}

struct Inputs {
    std::vector<Object> objects;
    std::vector<std::byte> vmlinux;  // the bytes of /sys/kernel/btf/vmlinux
    ebpf::collection_options maps_only{.load_programs = false};
    ebpf::collection_options full{};
};

std::vector<Case> make_cases(const Inputs& in) {
    std::vector<Case> cases;
    // Cases whose buffers are vmlinux-sized run with both heaps.
    auto both = [&](Case c) {
        c.h = heap::fresh;
        cases.push_back(c);
        c.h = heap::warm;
        cases.push_back(std::move(c));
    };
    auto vs = [](Op ours, Op libbpf) {
        return std::vector<Variant>{{"ours", std::move(ours)}, {"libbpf", std::move(libbpf)}};
    };

    const std::vector<std::byte>* bytes = &in.vmlinux;
    both({group::btf, kBtfTargetCase, {}, vs(btf_file_ours, btf_file_libbpf)});
    both({group::btf,
          "parse + index (bytes in memory)",
          {},
          vs([bytes](std::string& e) { return btf_memory_ours(*bytes, e); },
             [bytes](std::string& e) { return btf_memory_libbpf(*bytes, e); })});
    for (const auto& o : in.objects) {
        const std::string path = o.path;
        cases.push_back({group::open, o.name, heap::small,
                         vs([path](std::string& e) { return open_ours(path, e); },
                            [path](std::string& e) { return open_libbpf(path, e); })});
    }
    for (const auto& o : in.objects) {
        const std::string path = o.path;
        const ebpf::collection_options* full = &in.full;
        Case c{group::load, o.name, heap::small,
               vs([path, full](std::string& e) { return load_ours(path, *full, e); },
                  [path](std::string& e) { return load_libbpf(path, e); }),
               o.target};
        if (o.core_relos > 0) {
            both(std::move(c));  // libbpf parses vmlinux in each of these loads
        } else {
            cases.push_back(std::move(c));
        }
    }

    // Our own costs, piece by piece.
    auto part = [&](std::string name, Op op, bool vmlinux_sized) {
        Case c{group::part, std::move(name), heap::small, {{"ours", std::move(op)}}};
        if (vmlinux_sized) {
            both(std::move(c));
        } else {
            cases.push_back(std::move(c));
        }
    };
    part(
        "vmlinux: read (detail::read_file)",
        [](std::string& e) {
            auto r = ebpf::detail::read_file(kVmlinux);
            benchmark::DoNotOptimize(r);
            return ok(r, e);
        },
        true);
    part("vmlinux: read(2) into a presized buffer", read_presized, true);
    part("vmlinux: mmap the file (no copy)", map_vmlinux, false);
    part(
        "vmlinux: btf::spec::parse (copy + validate)",
        [bytes](std::string& e) {
            auto s = ebpf::btf::spec::parse(std::span<const std::byte>(*bytes));
            return ok(s, e);
        },
        true);
    part(
        "vmlinux: parse + name index (first find)",
        [bytes](std::string& e) {
            auto s = ebpf::btf::spec::parse(std::span<const std::byte>(*bytes));
            return ok(s, e) && index_ours(*s, false, e);
        },
        true);
    part(
        "vmlinux: candidate_cache build + 1 find",
        [](std::string& e) {
            auto k = ebpf::kernel_btf();  // cached: only the candidate index is timed
            if (!ok(k, e)) [[unlikely]] {
                return false;
            }
            ebpf::core::candidate_cache cache(**k);
            if (cache.find("task_struct", BTF_KIND_STRUCT).empty()) [[unlikely]] {
                e = "no candidate for task_struct";
                return false;
            }
            return true;
        },
        true);
    for (const auto& o : in.objects) {
        const std::string path = o.path;
        const ebpf::collection_options* maps_only = &in.maps_only;
        part(
            o.name + ": open + BTF + maps, no programs",
            [path, maps_only](std::string& e) { return load_ours(path, *maps_only, e); }, false);
    }
    return cases;
}

// ---------------------------------------------------------------------------------------------
// A trial run of every variant: drops the variants that fail (saying why), warms the caches and
// sizes each case's runs.

double time_ms(const Op& op, std::string& err, bool& good) {
    const auto t0 = std::chrono::steady_clock::now();
    good = op(err);
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

const char* group_name(group g) {
    return g == group::btf    ? "vmlinux_btf"
           : g == group::open ? "open"
           : g == group::load ? "load"
                              : "part";
}

std::vector<std::string> trial(std::vector<Case>& cases) {
    std::vector<std::string> notes;
    for (auto& c : cases) {
        use_heap(c.h);
        double slowest = 0;
        for (auto& v : c.variants) {
            if (!v.op) {
                continue;
            }
            std::string log, err;
            libbpf_log = &log;
            bool good = false;
            time_ms(v.op, err, good);
            if (c.h == heap::fresh) {
                ::malloc_trim(0);
            }
            const double t = good ? time_ms(v.op, err, good) : 0;
            libbpf_log = nullptr;
            if (!good) {
                while (!log.empty() && log.back() == '\n') {
                    log.pop_back();
                }
                std::string note = std::string(group_name(c.g)) + " " + c.name + " (" + v.name +
                                   "): " + err + (log.empty() ? "" : "\n    libbpf said: " + log);
                if (std::find(notes.begin(), notes.end(), note) == notes.end()) {
                    notes.push_back(std::move(note));
                }
                v.op = nullptr;
                continue;
            }
            slowest = std::max(slowest, t);
        }
        c.iterations =
            std::clamp<int64_t>(int64_t(kRunBudgetMs / std::max(slowest, 1e-3)), 1, 100000);
    }
    return notes;
}

// ---------------------------------------------------------------------------------------------
// Collecting the runs: a display reporter that also records every run's time per operation.

void run_op(benchmark::State& state, const Op& op, heap h) {
    use_heap(h);
    std::string err;
    if (h != heap::fresh && !op(err)) {  // grows the heap to what the operation needs
        state.SkipWithError(err.c_str());
        return;
    }
    for (auto _ : state) {
        if (!op(err)) [[unlikely]] {
            state.SkipWithError(err.c_str());
            break;
        }
        if (h == heap::fresh) {
            state.PauseTiming();
            ::malloc_trim(0);
            state.ResumeTiming();
        }
    }
}

using Slot = bench::slot;
using Samples = bench::samples;  // times per operation in ms

using bench::median;
using bench::paired_ratio;

std::string ms(const std::vector<double>& v) {
    if (v.empty()) {
        return "-";
    }
    char buf[32];
    const double t = median(v);
    std::snprintf(buf, sizeof buf, t < 1 ? "%.3f" : t < 100 ? "%.2f" : "%.1f", t);
    return buf;
}

std::string ratio(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.empty() || b.empty()) {
        return "-";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fx", paired_ratio(a, b));
    return buf;
}

// Our first CO-RE load in the process, timed once before anything else parsed the kernel BTF.
struct Cold {
    std::string object;
    double cpu_ms = 0, wall_ms = 0;
    bool ran = false;
};

struct Summary {
    const std::vector<Case>& cases;
    const std::vector<std::vector<Samples>>& s;
    const std::vector<Object>& objects;
    std::vector<std::string> verdicts;
    int failed = 0;

    const Samples& ours(size_t c) const { return s[c][0]; }
    const Samples& libbpf(size_t c) const { return s[c][1]; }
    bool ran(size_t c) const {
        for (const auto& v : s[c]) {
            if (!v.cpu.empty()) {
                return true;
            }
        }
        return false;
    }

    std::string verdict(bool pass, const std::string& what) {
        verdicts.push_back(std::string(pass ? "PASS  " : "FAIL  ") + what);
        failed += !pass;
        return pass ? "PASS" : "FAIL";
    }

    static void comparison_header(const char* first) {
        std::printf("%-34s %5s %8s %8s %8s %8s %11s %7s  %s\n", first, "heap", "ours", "libbpf",
                    "(wall)", "(wall)", "libbpf/ours", "(wall)", "target");
    }
    void comparison_row(size_t c, const std::string& label, const std::string& verdict) const {
        std::printf("%-34s %5s %8s %8s %8s %8s %11s %7s  %s\n", label.c_str(),
                    heap_name(cases[c].h), ms(ours(c).cpu).c_str(), ms(libbpf(c).cpu).c_str(),
                    ms(ours(c).real).c_str(), ms(libbpf(c).real).c_str(),
                    ratio(libbpf(c).cpu, ours(c).cpu).c_str(),
                    ratio(libbpf(c).real, ours(c).real).c_str(), verdict.c_str());
    }
    const Object* object(const std::string& name) const {
        for (const auto& o : objects) {
            if (o.name == name) {
                return &o;
            }
        }
        return nullptr;
    }
    std::string described(const std::string& name) const {
        const Object* o = object(name);
        if (!o) {
            return name;
        }
        return name + " (" + std::to_string(o->programs) + "p " + std::to_string(o->maps) + "m " +
               std::to_string(o->core_relos) + "r)";
    }
    // Returns the case of a group with this name and heap, if it ran.
    const Case* find(group g, const std::string& name, heap h, size_t* index) const {
        for (size_t c = 0; c < cases.size(); ++c) {
            if (cases[c].g == g && cases[c].name == name && cases[c].h == h && ran(c)) {
                *index = c;
                return &cases[c];
            }
        }
        return nullptr;
    }

    void print(const Cold& cold) {
        std::printf(
            "\nSummary: medians over %d interleaved rounds, ms per operation: CPU time of the "
            "calling thread\n(user + system: the verifier and page faults count), wall-clock in "
            "brackets. Ratios are medians\nof the per-round ratios. heap: fresh = every "
            "vmlinux-sized buffer is new memory from the kernel\n(a process that loads once); "
            "warm = such buffers are reused from the heap (a process that keeps\nloading); - = "
            "no large buffers. Targets (CPU): ours vmlinux read + parse + index <= %.0f ms;\n"
            "libbpf/ours >= %.0fx for the full load of the object with CO-RE relocations against "
            "the kernel.\n",
            kRounds, kBtfLimitMs, kLoadSpeedup);

        std::printf(
            "\nvmlinux BTF (%s) and find(\"task_struct\", STRUCT): ours maps the file where the\n"
            "kernel allows it and builds its name index; libbpf finds by a linear scan. The CO-RE\n"
            "candidate index is timed alone below:\n\n",
            kVmlinux);
        comparison_header("case");
        for (size_t c = 0; c < cases.size(); ++c) {
            if (cases[c].g != group::btf || !ran(c)) {
                continue;
            }
            std::string v = "-";
            if (cases[c].name == kBtfTargetCase && !ours(c).cpu.empty()) {
                v = verdict(median(ours(c).cpu) <= kBtfLimitMs,
                            "vmlinux read + parse + index, ours <= 3 ms (" +
                                std::string(heap_name(cases[c].h)) + " heap): " + ms(ours(c).cpu) +
                                " ms");
            }
            comparison_row(c, cases[c].name, v);
        }

        std::printf(
            "\nObject open: collection_spec::open against bpf_object__open + close (p programs, "
            "m maps,\nr CO-RE relocations, as we read them):\n\n");
        comparison_header("object");
        for (size_t c = 0; c < cases.size(); ++c) {
            if (cases[c].g == group::open && ran(c)) {
                comparison_row(c, described(cases[c].name), "-");
            }
        }

        std::printf(
            "\nObject load: collection_spec::open + collection::load (kernel BTF cached by the "
            "process)\nagainst bpf_object__open + bpf_object__load + close (libbpf parses vmlinux "
            "in each load that\nneeds it); everything closed each time:\n\n");
        comparison_header("object");
        for (size_t c = 0; c < cases.size(); ++c) {
            if (cases[c].g != group::load || !ran(c)) {
                continue;
            }
            std::string v = "-";
            if (cases[c].target) {
                const bool both = !ours(c).cpu.empty() && !libbpf(c).cpu.empty();
                const double r = both ? paired_ratio(libbpf(c).cpu, ours(c).cpu) : 0;
                char buf[32];
                std::snprintf(buf, sizeof buf, "%.2fx", r);
                v = verdict(r >= kLoadSpeedup, "load " + cases[c].name + ", libbpf/ours >= 4x (" +
                                                   heap_name(cases[c].h) +
                                                   " heap): " + (both ? buf : "not measured"));
            }
            comparison_row(c, described(cases[c].name), v);
        }

        // The first load of a process also pays our one-time kernel BTF parse.
        std::printf("\nFirst load of a process (ours parses vmlinux once, here):\n");
        if (cold.ran) {
            std::printf("  ours, measured once at start-up (%s): %.2f ms CPU, %.2f ms wall\n",
                        cold.object.c_str(), cold.cpu_ms, cold.wall_ms);
        }
        size_t l, b;
        for (const auto& o : objects) {
            if (o.target && find(group::load, o.name, heap::fresh, &l) &&
                find(group::btf, kBtfTargetCase, heap::fresh, &b) && !ours(l).cpu.empty() &&
                !libbpf(l).cpu.empty()) {
                const double first = median(ours(l).cpu) + median(ours(b).cpu);
                std::printf(
                    "  ours, load + vmlinux read + parse + index (fresh), medians added: %.2f ms "
                    "CPU\n  (the candidate index counted twice)\n"
                    "  libbpf, load (fresh), median: %.2f ms CPU; libbpf/ours %.2fx\n",
                    first, median(libbpf(l).cpu), median(libbpf(l).cpu) / first);
            }
        }

        std::printf("\nOurs, piece by piece (ms):\n\n");
        std::printf("%-52s %5s %8s %8s\n", "part", "heap", "CPU", "(wall)");
        for (size_t c = 0; c < cases.size(); ++c) {
            if (cases[c].g == group::part && ran(c)) {
                std::printf("%-52s %5s %8s %8s\n", cases[c].name.c_str(), heap_name(cases[c].h),
                            ms(ours(c).cpu).c_str(), ms(ours(c).real).c_str());
            }
        }
    }
};

double thread_cpu_ms() {
    timespec t;
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    libbpf_set_print(libbpf_print);

    Inputs in;
    in.objects = objects();
    describe(in.objects);
    {
        auto bytes = ebpf::detail::read_file(kVmlinux);
        if (!bytes) {
            fail(bytes.error().full_message());
        }
        in.vmlinux = std::move(*bytes);
    }

    // The first CO-RE load of the process, once: it parses the kernel BTF and probes the
    // kernel's BTF support, which every later load finds cached.
    Cold cold;
    for (const auto& o : in.objects) {
        if (!o.target) {
            continue;
        }
        use_heap(heap::fresh);  // as at the start of a process
        std::string err;
        const double cpu0 = thread_cpu_ms();
        cold.wall_ms =
            time_ms([&](std::string& e) { return load_ours(o.path, in.full, e); }, err, cold.ran);
        cold.cpu_ms = thread_cpu_ms() - cpu0;
        cold.object = o.name;
        if (!cold.ran) {
            fail("load " + o.path + ": " + err);
        }
        break;
    }

    std::vector<Case> cases = make_cases(in);
    std::vector<std::string> notes = trial(cases);
    for (const auto& n : notes) {
        std::fprintf(stderr, "loader_bench: %s\n", n.c_str());
    }

    // Round-robin registration; within a round the variant order alternates, so that neither
    // variant always runs first after a switch of case.
    std::map<std::string, Slot> slots;
    for (int round = 0; round < kRounds; ++round) {
        for (size_t c = 0; c < cases.size(); ++c) {
            const size_t n = cases[c].variants.size();
            for (size_t k = 0; k < n; ++k) {
                const size_t v = (k + size_t(round)) % n;
                const Op* op = &cases[c].variants[v].op;
                if (!*op) {
                    continue;
                }
                std::string name = std::string(group_name(cases[c].g)) + "/" + cases[c].name + "/" +
                                   heap_name(cases[c].h) + "/" + cases[c].variants[v].name +
                                   "/round:" + std::to_string(round);
                const heap h = cases[c].h;
                benchmark::RegisterBenchmark(name.c_str(),
                                             [op, h](benchmark::State& s) { run_op(s, *op, h); })
                    ->Unit(benchmark::kMicrosecond)
                    ->Iterations(cases[c].iterations);
                slots.emplace(std::move(name), Slot{c, v});
            }
        }
    }

    std::vector<std::vector<Samples>> samples(cases.size());
    for (size_t c = 0; c < cases.size(); ++c) {
        samples[c].resize(cases[c].variants.size());
    }
    bench::recording_reporter reporter(std::move(slots), samples, 1e3);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();

    bool any = false;
    for (const auto& c : samples) {
        for (const auto& v : c) {
            any = any || !v.cpu.empty();
        }
    }
    if (!any) {
        return 0;
    }
    Summary sum{cases, samples, in.objects, {}};
    sum.print(cold);
    if (!notes.empty()) {
        std::printf("\nNot timed:\n");
        for (const auto& n : notes) {
            std::printf("  %s\n", n.c_str());
        }
    }
    std::printf("\nTargets:\n");
    for (const auto& v : sum.verdicts) {
        std::printf("  %s\n", v.c_str());
    }
    std::printf("%s\n", sum.failed ? "FAIL: a target is missed" : "PASS: every target is met");
    return 0;
}
