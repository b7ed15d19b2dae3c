// The score terms of the CPU's tiled chunk attention (kernels/cpu/chunk_attention_tiles.cpp) in
// loops along a row of a tile: ChunkAttentionParams::score_offset_at (masks and relative scores)
// and add_relative_grad_at, which define them. Called once per score they stayed scalar code (a
// gather and a scatter behind conditions, the gather along a diagonal of the relative scores
// that missed the cache) and took a fifth of a Transformer-XL step. Only that file includes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/cpu/attention_tile_gather.h"
#include "kernels/cpu/avx512_intrinsics.h"
#include "kernels/ops/chunk_attention.h"

namespace rf::cpu {

// A query tile's rows against a key tile. Row i has a relative score against key position tk at
// rel_at[i] - tk when rel_low[i] < tk <= rel_high[i]: relative_index_at's conditions (rel_high
// -1: none), in the form the AVX-512 loops compare and gather with. Elsewhere, and for the rows
// past the last whole vector, the loops call the definitions.
class ScoreTerms {
 public:
  // For n query rows at positions qpos of segment base `base` (relative_base) against the key
  // positions kpos[0 .. nk - 1]; asks for the cache lines of the relative scores (and their
  // gradients) the pairs will read: each row's are a run of its own (a diagonal across the
  // tile), which the prefetchers do not foresee.
  ScoreTerms(const ChunkAttentionParams& p, int64_t base, const int32_t* qpos, int64_t n,
             const int32_t* kpos, int64_t nk)
      : base_(base) {
    const int32_t first_key = *std::min_element(kpos, kpos + nk);
    const int32_t last_key = *std::max_element(kpos, kpos + nk);
    // (Keys in position order only: the LSH order's keys span the sequence, their runs too.)
    const bool prefetch = last_key - first_key < 2 * tile_gather::kTile;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t tq = qpos[i];
      const bool has = tq >= p.memory_len && tq < p.layout.seq_len;
      rel_at_[i] = base + (tq - p.memory_len) * p.rel_len + tq;
      rel_high_[i] = has ? static_cast<int32_t>(tq) : -1;
      rel_low_[i] = has ? static_cast<int32_t>(tq - p.rel_len) : 0;
      const int64_t from = std::max<int64_t>(first_key, rel_low_[i] + 1);
      const int64_t to = std::min<int64_t>(last_key, rel_high_[i]);
      for (int64_t tk = to; prefetch && tk >= from; tk -= 16) {  // (16 floats a line)
        if (p.rel_scores) __builtin_prefetch(p.rel_scores + rel_at_[i] - tk);
        if (p.rel_grads) __builtin_prefetch(p.rel_grads + rel_at_[i] - tk, 1);
      }
    }
  }

  // row[i] += score_offset_at(base, qpos[i], tk) for i < n, with its arithmetic: the offset
  // starts as -penalty (-0 without one), then less the distance mask, plus the relative score.
  void add_offsets(const ChunkAttentionParams& p, const int32_t* qpos, int32_t tk, float* row,
                   int64_t n) const {
    int64_t i = 0;
#if defined(__AVX512F__)
    // (GCC leaves such a loop scalar: it does not gather behind a condition.)
    RF_AVX512_INTRINSICS_BEGIN
    const float* rel = p.rel_scores;
    const __m512i key = _mm512_set1_epi32(tk);
    const __m512i farthest = _mm512_set1_epi32(static_cast<int32_t>(
        std::min<int64_t>(p.max_distance, std::numeric_limits<int32_t>::max())));
    for (; i + 16 <= n; i += 16) {
      const __m512i tq = _mm512_loadu_si512(qpos + i);
      const __mmask16 later = _mm512_cmpgt_epi32_mask(key, tq);
      const __mmask16 self = p.self_mask ? _mm512_cmpeq_epi32_mask(key, tq) : __mmask16{0};
      __m512 penalty = _mm512_maskz_mov_ps(self, _mm512_set1_ps(kSelfMask));
      penalty = _mm512_mask_mov_ps(penalty, later, _mm512_set1_ps(kCausalMask));
      __m512 offset = _mm512_sub_ps(_mm512_set1_ps(-0.0f), penalty);  // -penalty, sign and all
      if (p.max_distance >= 0) {  // tq - tk > max_distance (no overflow: both are positions)
        const __mmask16 far = _mm512_cmpgt_epi32_mask(_mm512_sub_epi32(tq, key), farthest);
        offset = _mm512_mask_sub_ps(offset, far, offset, _mm512_set1_ps(kCausalMask));
      }
      if (rel) {
        const __mmask16 has = _mm512_cmple_epi32_mask(key, _mm512_loadu_si512(rel_high_ + i)) &
                              _mm512_cmpgt_epi32_mask(key, _mm512_loadu_si512(rel_low_ + i));
        const __m512i key64 = _mm512_set1_epi64(tk);
        const __m512i lo = _mm512_sub_epi64(_mm512_loadu_si512(rel_at_ + i), key64);
        const __m512i hi = _mm512_sub_epi64(_mm512_loadu_si512(rel_at_ + i + 8), key64);
        const __m256 rel_lo =
            _mm512_mask_i64gather_ps(_mm256_setzero_ps(), static_cast<__mmask8>(has), lo, rel, 4);
        const __m256 rel_hi = _mm512_mask_i64gather_ps(_mm256_setzero_ps(),
                                                       static_cast<__mmask8>(has >> 8), hi, rel, 4);
        const __m512 terms = _mm512_insertf32x8(_mm512_castps256_ps512(rel_lo), rel_hi, 1);
        offset = _mm512_mask_add_ps(offset, has, offset, terms);
      }
      _mm512_storeu_ps(row + i, _mm512_add_ps(_mm512_loadu_ps(row + i), offset));
    }
    RF_AVX512_INTRINSICS_END
#endif
    for (; i < n; ++i) row[i] += p.score_offset_at(base_, qpos[i], tk);
  }

  // add_relative_grad_at(base, qpos[i], tk, ds[i]) for i < n. The rows' indices differ (one per
  // query), so the lanes' adds are independent.
  void add_relative_grads(const ChunkAttentionParams& p, const int32_t* qpos, int32_t tk,
                          const float* ds, int64_t n) const {
    int64_t i = 0;
#if defined(__AVX512F__)
    RF_AVX512_INTRINSICS_BEGIN
    const __m512i key = _mm512_set1_epi32(tk);
    const __m512i key64 = _mm512_set1_epi64(tk);
    for (; i + 8 <= n; i += 8) {  // (8 lanes: 64-bit indices)
      const __mmask8 has = static_cast<__mmask8>(
          _mm512_cmple_epi32_mask(key, _mm512_castsi256_si512(_mm256_loadu_si256(
                                           reinterpret_cast<const __m256i*>(rel_high_ + i)))) &
          _mm512_cmpgt_epi32_mask(key, _mm512_castsi256_si512(_mm256_loadu_si256(
                                           reinterpret_cast<const __m256i*>(rel_low_ + i)))));
      const __m512i at = _mm512_sub_epi64(_mm512_loadu_si512(rel_at_ + i), key64);
      const __m256 old = _mm512_mask_i64gather_ps(_mm256_setzero_ps(), has, at, p.rel_grads, 4);
      const __m256 sum = _mm256_add_ps(old, _mm256_loadu_ps(ds + i));
      _mm512_mask_i64scatter_ps(p.rel_grads, has, at, sum, 4);
    }
    RF_AVX512_INTRINSICS_END
#endif
    for (; i < n; ++i) p.add_relative_grad_at(base_, qpos[i], tk, ds[i]);
  }

 private:
  int64_t base_;
  int64_t rel_at_[tile_gather::kTile];
  int32_t rel_low_[tile_gather::kTile], rel_high_[tile_gather::kTile];
};

}  // namespace rf::cpu
