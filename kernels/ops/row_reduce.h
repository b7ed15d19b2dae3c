// The order in which every executor adds up a row (layer-norm statistics, vector norms, dot
// products, softmax sums; and the column sums' partials, the gradient norm's blocks): 32
// interleaved partial sums, lane l adding elements l, l + 32, l + 64,
// ... in order, then a pairwise tree, lane l += lane l + 16, then + 8, + 4, + 2, + 1. That is a
// warp's xor butterfly on the GPU (its lane 0) and two 16-float vectors on the CPU, so a
// warp-per-row GPU kernel and the CPU loops add in the same order (the results then agree to the
// rounding of fused multiply-adds, which compilers place differently); and, unlike one running sum,
// the compiler can vectorise it without reassociating anything.
#pragma once

#include "base/hd.h"

namespace rf {

constexpr int kRowLanes = 32;

// The 32-lane tree over partial sums (lane[0] holds the total afterwards).
template <class T>
RF_HD T reduce_lanes(T* lane) {
  for (int width = kRowLanes / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
  return lane[0];
}

// sum over c < n of term(c), in the order above, accumulated in T (float, or double for the
// gradient norm).
template <class T = float, class Term>
RF_HD T row_sum(int64_t n, const Term& term) {
  T lane[kRowLanes];
  for (int l = 0; l < kRowLanes; ++l) lane[l] = T(0);
  int64_t c0 = 0;
  for (; c0 + kRowLanes <= n; c0 += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) lane[l] += term(c0 + l);
  for (int l = 0; c0 + l < n; ++l) lane[l] += term(c0 + l);
  return reduce_lanes(lane);
}

// Two sums over the same row at once (one pass over its elements).
template <class Terms>
RF_HD void row_sum2(int64_t n, const Terms& terms, float* first, float* second) {
  float a[kRowLanes], b[kRowLanes];
  for (int l = 0; l < kRowLanes; ++l) a[l] = b[l] = 0.0f;
  int64_t c0 = 0;
  for (; c0 + kRowLanes <= n; c0 += kRowLanes)
    for (int l = 0; l < kRowLanes; ++l) terms(c0 + l, &a[l], &b[l]);
  for (int l = 0; c0 + l < n; ++l) terms(c0 + l, &a[l], &b[l]);
  *first = reduce_lanes(a);
  *second = reduce_lanes(b);
}

}  // namespace rf
