// Attention of a few new positions over a key/value cache: the step of cached generation, where
// each new token's queries meet the keys and values kept from every earlier position instead of
// re-running the window. The arithmetic is the fused chunked attention's (chunk_attention.h) for
// the same queries: dense or local windows, the causal mask, Transformer-XL's relative term and
// same_length's distance limit. A masked key there gets -1e9 and an exp of exactly 0; here it is
// not visited, which is the same sum.
//
// LSH layers (generate --lsh-cache) list each query's keys instead (trainer/lsh_generation_
// windows.h): every hash round's window, in order, as one softmax over their concatenation, which
// is the uncached pass's combination of the rounds by their log-sum-exp (a key in two windows
// counts twice there too). Keys are the shared queries normalised per position, and a query
// meeting its own position gets -kSelfMask, as in the fused attention.
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
  // LSH: key positions [queries, heads, window_len] per (query row, head), -1 for none; null:
  // the contiguous range from first_key(). shared_qk: k holds the shared queries (normalised per
  // key here) and a query's own position is masked with -kSelfMask.
  const int32_t* window = nullptr;
  int64_t window_len = 0;
  bool shared_qk = false;

  // The first key position query position tq sees.
  RF_HD int64_t first_key(int64_t tq) const {
    int64_t lo = chunk > 0 ? (tq / chunk - 1) * chunk : 0;
    if (max_distance >= 0 && tq - max_distance > lo) lo = tq - max_distance;
    return lo > 0 ? lo : 0;
  }
};

// One (head, query row): one pass over its window with a running maximum (online softmax, as
// the fused tiles run), each score computed once, the dot products in row_sum's fixed lanes (which
// the compiler vectorises; the two passes of plain sums before ran each score twice, one serial
// multiply-add at a time, and took 43% of a 2K-context decode). Index = h * queries + row.
struct CachedAttentionRow {
  CachedAttentionParams p;
  RF_HD float score(const float* qr, int64_t h, int64_t row, int64_t tk) const {
    const float* kr = p.k + tk * p.ld + h * p.d;
    float s;
    if (p.shared_qk) {
      float squares;
      row_sum2(
          p.d,
          [qr, kr](int64_t c, float* dot, float* sq) {
            *dot += qr[c] * kr[c];
            *sq += kr[c] * kr[c];
          },
          &s, &squares);
      s *= key_norm_scale_from_squares(squares, p.d);
    } else {
      s = row_sum(p.d, [qr, kr](int64_t c) { return qr[c] * kr[c]; }) * p.key_scale;
    }
    const int64_t dist = p.first + row - tk;
    if (p.shared_qk && dist == 0) s -= kSelfMask;
    if (p.rel_scores && dist < p.rel_len)
      s += p.rel_scores[(h * p.queries + row) * p.rel_len + dist];
    return s;
  }
  // The attention over keys key_at(0 .. count - 1) (a negative position: none).
  template <class KeyAt>
  RF_HD void attend(int64_t h, int64_t row, int64_t count, KeyAt key_at) const {
    const float* qr = p.q + row * p.ld + h * p.d;
    float acc[kMaxHeadDim];
    for (int64_t x = 0; x < p.d; ++x) acc[x] = 0.0f;
    float m = kNoMaxYet, sum = 0.0f;
    for (int64_t w = 0; w < count; ++w) {
      const int64_t tk = key_at(w);
      if (tk < 0) continue;
      const float s = score(qr, h, row, tk);
      if (s > m) {  // a new maximum: what is summed so far shrinks by e^(old - new)
        const float shrink = exp_approx(m - s);
        sum *= shrink;
        for (int64_t x = 0; x < p.d; ++x) acc[x] *= shrink;
        m = s;
      }
      const float weight = exp_approx(s - m);
      sum += weight;
      const float* vr = p.v + tk * p.ld + h * p.d;
      for (int64_t x = 0; x < p.d; ++x) acc[x] += weight * vr[x];
    }
    const float inv = 1.0f / sum;
    float* o = p.out + row * p.ldo + h * p.d;
    for (int64_t x = 0; x < p.d; ++x) o[x] = acc[x] * inv;
  }
  RF_HD void operator()(int64_t i) const {
    const int64_t h = i / p.queries, row = i % p.queries;
    if (p.window) {
      const int32_t* keys = p.window + (row * p.heads + h) * p.window_len;
      attend(h, row, p.window_len, [keys](int64_t w) { return static_cast<int64_t>(keys[w]); });
    } else {
      const int64_t tq = p.first + row, lo = p.first_key(tq);
      attend(h, row, tq - lo + 1, [lo](int64_t w) { return lo + w; });
    }
  }
};

}  // namespace rf
