// Attention of a few new positions over a key/value cache: the step of cached generation, where
// each new token's queries meet the keys and values kept from every earlier position instead of
// re-running the window. The arithmetic is the fused chunked attention's (chunk_attention.h) for
// the same queries: dense or local windows, the causal mask, Transformer-XL's relative term and
// same_length's distance limit. A masked key there gets -1e9 and an exp of exactly 0; here it is
// not visited, which is the same sum.
#pragma once

#include "kernels/fast_math.h"
#include "kernels/ops/chunk_attention.h"

namespace rf {

struct CachedAttentionParams {
  // Queries of the new positions first .. first + queries - 1: [queries, ld]; head h's d columns
  // start at h * d (with relative positions, q + u).
  const float* q = nullptr;
  // The cache: [capacity, ld] keys and values of positions 0 .., the new ones included.
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld = 0;
  int64_t heads = 1, d = 0;
  int64_t first = 0;    // position of query row 0
  int64_t queries = 0;  // new positions
  // Local attention: a query sees its own chunk of `chunk` positions (counted from position 0)
  // and the chunk before; 0: dense, every earlier position.
  int64_t chunk = 0;
  float key_scale = 1.0f;  // keys are multiplied by this (1 / sqrt(d))
  // Relative positions: [heads, queries, rel_len] (head-major), element (h, row, dist) added to
  // the score of query row `row` and the key dist positions before it (dist >= rel_len: nothing).
  const float* rel_scores = nullptr;
  int64_t rel_len = 0;
  int64_t max_distance = -1;  // keys further back are masked (-1: none)
  float* out = nullptr;       // [queries, ldo]; head h at column h * d
  int64_t ldo = 0;

  // The first key position query position tq sees.
  RF_HD int64_t first_key(int64_t tq) const {
    int64_t lo = chunk > 0 ? (tq / chunk - 1) * chunk : 0;
    if (max_distance >= 0 && tq - max_distance > lo) lo = tq - max_distance;
    return lo > 0 ? lo : 0;
  }
};

// One (head, query row): the scores of its window, their maximum, then the normalised weighted
// sum of the values (two passes, as ChunkAttentionForwardRow). Index = h * queries + row.
struct CachedAttentionRow {
  CachedAttentionParams p;
  RF_HD float score(const float* qr, int64_t h, int64_t row, int64_t tk) const {
    const float* kr = p.k + tk * p.ld + h * p.d;
    float s = 0.0f;
    for (int64_t c = 0; c < p.d; ++c) s += qr[c] * kr[c];
    s *= p.key_scale;
    const int64_t dist = p.first + row - tk;
    if (p.rel_scores && dist < p.rel_len)
      s += p.rel_scores[(h * p.queries + row) * p.rel_len + dist];
    return s;
  }
  RF_HD void operator()(int64_t i) const {
    const int64_t h = i / p.queries, row = i % p.queries, tq = p.first + row;
    const float* qr = p.q + row * p.ld + h * p.d;
    const int64_t lo = p.first_key(tq);
    float m = kNoMaxYet;
    for (int64_t tk = lo; tk <= tq; ++tk) m = fmax_hd(m, score(qr, h, row, tk));
    float acc[kMaxHeadDim];
    for (int64_t x = 0; x < p.d; ++x) acc[x] = 0.0f;
    float sum = 0.0f;
    for (int64_t tk = lo; tk <= tq; ++tk) {
      const float weight = exp_approx(score(qr, h, row, tk) - m);
      sum += weight;
      const float* vr = p.v + tk * p.ld + h * p.d;
      for (int64_t x = 0; x < p.d; ++x) acc[x] += weight * vr[x];
    }
    const float inv = 1.0f / sum;
    float* o = p.out + row * p.ldo + h * p.d;
    for (int64_t x = 0; x < p.d; ++x) o[x] = acc[x] * inv;
  }
};

}  // namespace rf
