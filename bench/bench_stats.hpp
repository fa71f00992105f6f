// Shared by the benchmarks: recording each run of interleaved rounds, medians, and ratios of
// runs paired round by round.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bench {

// Returns the median of v (0 when empty).
inline double median(std::vector<double> v) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Returns the median over rounds of a[r] / b[r]: each round's two runs ran close together in
// time, so the pairing cancels the slow drift of a shared machine's speed.
inline double paired_ratio(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> r;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        if (b[i] > 0) {
            r.push_back(a[i] / b[i]);
        }
    }
    return median(std::move(r));
}

// Where a registered run's times go: which case, which variant of it.
struct slot {
    size_t case_index;
    size_t variant_index;
};

// The time per operation of every run of one variant, in run order (round by round).
struct samples {
    std::vector<double> cpu, real;
};

// The default display reporter that also records each run's CPU and wall time per operation,
// divided by `divisor` (e.g. 1e3 for runs registered in microseconds to record milliseconds).
class recording_reporter : public benchmark::BenchmarkReporter {
  public:
    recording_reporter(std::map<std::string, slot> slots, std::vector<std::vector<samples>>& out,
                       double divisor = 1)
        : display_(benchmark::CreateDefaultDisplayReporter()),
          slots_(std::move(slots)),
          out_(out),
          divisor_(divisor) {}

    bool ReportContext(const Context& context) override { return display_->ReportContext(context); }
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.run_type != Run::RT_Iteration || r.error_occurred) {
                continue;
            }
            auto it = slots_.find(r.run_name.function_name);
            if (it == slots_.end()) {
                continue;
            }
            samples& s = out_[it->second.case_index][it->second.variant_index];
            s.cpu.push_back(r.GetAdjustedCPUTime() / divisor_);
            s.real.push_back(r.GetAdjustedRealTime() / divisor_);
        }
        display_->ReportRuns(runs);
    }
    void Finalize() override { display_->Finalize(); }

  private:
    std::unique_ptr<benchmark::BenchmarkReporter> display_;
    std::map<std::string, slot> slots_;
    std::vector<std::vector<samples>>& out_;
    double divisor_;
};

}  // namespace bench
