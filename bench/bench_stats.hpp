// Statistics shared by the benchmarks: medians, and ratios of runs paired round by round.
#pragma once

#include <algorithm>
#include <cstddef>
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

}  // namespace bench
