// Transformer-XL's relative position encodings (Dai et al. 2019, eq. 4 and the official code):
// the row of distance d is [sin(d' f_0) .. sin(d' f_{D/2-1}), cos(d' f_0) .. cos(d' f_{D/2-1})]
// with f_i = 10000^(-2i / D) and d' = min(d, clamp_len) (clamp_len 0: no clamp).
#pragma once

#include <math.h>

#include "base/hd.h"

namespace rf {

// table[d, c] for d < rows, c < width. Index = d * width + c.
struct RelativeSinusoids {
  float* table;
  int64_t width;      // d_model (even)
  int64_t clamp_len;  // 0: none
  RF_HD void operator()(int64_t i) const {
    const int64_t d = i / width, c = i % width, half = width / 2;
    const int64_t distance = clamp_len > 0 && d > clamp_len ? clamp_len : d;
    const int64_t k = c < half ? c : c - half;
    const double frequency =
        pow(10000.0, -2.0 * static_cast<double>(k) / static_cast<double>(width));
    const double angle = static_cast<double>(distance) * frequency;
    table[i] = static_cast<float>(c < half ? sin(angle) : cos(angle));
  }
};

}  // namespace rf
