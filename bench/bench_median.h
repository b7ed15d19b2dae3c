// The median the benchmarks report (the upper middle for an even count), of values taken by copy.
#pragma once

#include <algorithm>
#include <vector>

namespace rf::bench {

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace rf::bench
