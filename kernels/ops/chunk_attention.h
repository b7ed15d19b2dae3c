// Fused chunked attention, shared by LSH, local and dense attention, for all (example, head)
// segments of a layer at once. A segment's slots are its n_slots = n_rounds * seq_len (query, key,
// value) rows in sorted order (LSH: by bucket then position; local and dense: the original order).
// Slots are cut into chunks of `chunk` rows; chunk c attends to the keys of chunk c-1 (when
// lookback = 1, wrapping to the last chunk) and of itself, so its window holds W = (1 + lookback)
// * chunk keys. Nothing is O(seq_len^2) unless chunk = seq_len (dense attention), and no
// [n_slots, W] probability matrix is ever written: every pass recomputes the scores it needs.
//
// The passes, each one launch over all segments (FlashAttention's scheme, plus hash rounds):
//   forward      per slot: O = softmax(scores) V (dropout on the probabilities), and the row's
//                softmax statistics (max m, log of the sum of exp(score - m)).
//   combine      per position: out = sum over rounds r of w_r O_r, w = softmax_r(lse_r),
//                lse = m + log_sum.
//   combine'     per position: dO_r = w_r dout, dlse_r = w_r (dout.O_r - dout.out), and
//                delta_r = dO_r . O_r, in place of O.
//   query grads  per query slot: P = exp(score - lse) recomputed, dP = dO V^T (masked by the
//                dropout), dS = P (dP - delta + dlse), dQ = dS K.
//   key grads    per key slot, over the queries of both windows that hold it (its own chunk's and
//                the next chunk's): dK = dS^T Q, dV = (dropped P)^T dO. Each key gradient is
//                complete within its own index: no floating-point atomics, no folding buffers.
//   ungather     per position: the slot gradients summed over rounds, through the shared-QK key
//                normalisation, written to the unsorted rows.
// Transformer-XL's memory (memory_len > 0, the original order): the first memory_len positions of
// every sequence are keys and values only. Their query slots are skipped by every pass (no output,
// no statistics, nothing added to a key's gradient), and the query-side rows (queries, outputs
// and their gradients) hold the segment's positions only.
// The functors below are the reference arithmetic of every pass, one row per index; the CPU
// executor also has a tiled implementation of the three attention passes (kernels/cpu/), and
// `reformer selftest` compares every implementation with these.
#pragma once

#include "base/philox.h"
#include "kernels/fast_math.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/ops/dropout_mask.h"
#include "kernels/ops/row_reduce.h"

namespace rf {

constexpr int kMaxHashRounds = 32;
constexpr int kMaxHeadDim = 256;      // head width the fused kernels hold per row
constexpr float kCausalMask = 1e9f;   // subtracted where the key is later than the query
constexpr float kSelfMask = 1e5f;     // subtracted where a shared-QK query meets its own position
constexpr float kKeyNormEps = 1e-6f;  // trax: k * rsqrt(mean(k^2) + eps) / sqrt(d)
constexpr float kNoMaxYet = -3.0e38f;

struct ChunkLayout {
  int64_t seq_len = 0;
  int64_t n_slots = 0;   // n_rounds * seq_len
  int64_t chunk = 0;     // rows per chunk; divides n_slots
  int64_t lookback = 0;  // 0 or 1 chunks before
  RF_HD int64_t n_chunks() const { return n_slots / chunk; }
  RF_HD int64_t window() const { return (1 + lookback) * chunk; }
  // The slot at index w of chunk c's window: the previous chunk's slots, then chunk c's own.
  RF_HD int64_t window_slot(int64_t c, int64_t w) const {
    const int64_t pre = lookback * chunk;
    if (w >= pre) return c * chunk + (w - pre);
    return ((c + n_chunks() - 1) % n_chunks()) * chunk + w;
  }
};

// The factor that makes a shared-QK key unit length (times trax's eps), from the query row.
RF_HD float key_norm_scale_from_squares(float squares, int64_t d) {
  return 1.0f / sqrtf(squares + static_cast<float>(d) * kKeyNormEps);
}
RF_HD float key_norm_scale(const float* kr, int64_t d) {
  return key_norm_scale_from_squares(row_sum(d, [kr](int64_t c) { return kr[c] * kr[c]; }), d);
}

// What is subtracted from the score of a query at position qp and a key at kp.
RF_HD float mask_penalty(int32_t qp, int32_t kp, bool self_mask) {
  return kp > qp ? kCausalMask : (kp == qp && self_mask ? kSelfMask : 0.0f);
}

// Everything the fused passes read and write, for segments s = b * heads + h.
struct ChunkAttentionParams {
  // Inputs, row-major; head h's d columns start at h * d. k is null for shared QK (the keys are
  // the queries, normalised per position). Without memory all are [batch * seq_len, ld], position
  // t of example b at row b * seq_len + t. With memory_len M the query-side arrays (q, the output,
  // dout, dq) are [batch * (seq_len - M), ld], position t >= M of example b at row
  // b * (seq_len - M) + t - M, and the key-side arrays (k, v, dk, dv) have those rows followed by
  // the memory's, [batch * M, ld]: position t < M of example b at row
  // batch * (seq_len - M) + b * M + t (row_offset, key_row_offset).
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld = 0;
  const int32_t* perm = nullptr;  // [segments, n_slots]: slot -> r * seq_len + t; null: identity
  const float* key_scales = nullptr;  // [segments, seq_len]: shared QK's per-position key scale
  int64_t heads = 1, d = 0;
  int64_t batch = 1;       // examples over the whole layer (segments = batch * heads there)
  int64_t memory_len = 0;  // positions before each sequence's queries that are keys only
  // The segments of this launch are first_segment + s for s < segments; s indexes perm,
  // key_scales and the per-slot arrays, first_segment + s the input rows and the dropout.
  int64_t first_segment = 0, segments = 0;
  ChunkLayout layout;
  bool self_mask = false;  // shared QK: a query meeting its own position gets -kSelfMask
  // Round every operand of the window's products to bf16 (nearest even), as bf16 tile products
  // do (the CPU's AMX tiles): the selftest's naive bf16 reference. Reference functors only.
  bool bf16_products = false;
  float key_scale = 1.0f;  // separate keys are multiplied by this (1 / sqrt(d))
  // Attention dropout on the probabilities: element (slot j, window index w) of segment (b, h)
  // uses stream.head = h, example_base + b and element j * W + w (DropoutMask.seq_len = n_slots,
  // cols = W), whatever pass or executor draws it.
  DropoutMask dropout;
  // Per slot, [segments * n_slots, ...]:
  float* o = nullptr;            // [.., d] forward: O; after combine': dO
  float* row_max = nullptr;      // [..] m
  float* row_log_sum = nullptr;  // [..] log sum_w exp(score_w - m)
  float* delta = nullptr;        // [..] dO . O (backward)
  float* dlse = nullptr;         // [..] dL / d lse (backward)
  float* dq = nullptr;           // [.., d] gradient of the slot's query (backward)
  float* dk = nullptr;           // [.., d] gradient of the slot's scaled key (backward)
  float* dv = nullptr;           // [.., d] gradient of the slot's value (backward)
  // Relative positions (Transformer-XL, original slot order only): rel_scores[((h * batch + b)
  // * query_len() + tq - memory_len) * rel_len + tq - tk], for segment first_segment + s =
  // b * heads + h (head-major: each head's scores are one [batch * query_len(), rel_len] matrix,
  // one product per head, a row per query), is added to the score of query position tq and key
  // position tk <= tq (distances >= rel_len add nothing: callers cover the window). The
  // query-gradient pass adds each pair's dS at the same index of rel_grads, which the launcher
  // zero-fills (pairs outside every window keep 0). Only the pass over one query's row touches its
  // elements (a key twice in a window, when the look-back wraps onto the chunk itself, adds twice
  // in window order): no atomics, the same sum on every executor.
  const float* rel_scores = nullptr;
  float* rel_grads = nullptr;
  int64_t rel_len = 0;
  // Keys more than max_distance positions before their query are masked (-1: none):
  // Transformer-XL's same_length, every query attending to the same number of keys.
  int64_t max_distance = -1;

  // Positions per sequence that have a query (all but the memory's).
  RF_HD int64_t query_len() const { return layout.seq_len - memory_len; }

  // Whether scores have more than the causal and self masks (the tiles' plain path skips them).
  RF_HD bool has_score_terms() const {
    return rel_scores != nullptr || rel_grads != nullptr || max_distance >= 0;
  }
  // Where segment s's relative scores start (its head's matrix, its example's rows); the tiles
  // compute it once per segment rather than per score.
  RF_HD int64_t relative_base(int64_t s) const {
    return (head_of(s) * batch + example_of(s)) * query_len() * rel_len;
  }
  // Index of the pair (tq, tk) in rel_scores / rel_grads from its segment's base; -1 when it has
  // none.
  RF_HD int64_t relative_index_at(int64_t base, int64_t tq, int64_t tk) const {
    if (tq < memory_len || tq >= layout.seq_len || tk > tq || tq - tk >= rel_len) return -1;
    return base + (tq - memory_len) * rel_len + (tq - tk);
  }
  // What is added to the scaled q.k score of positions (tq, tk): the relative term, minus the
  // causal, self and distance masks.
  RF_HD float score_offset_at(int64_t base, int32_t tq, int32_t tk) const {
    float offset = -mask_penalty(tq, tk, self_mask);
    if (max_distance >= 0 && static_cast<int64_t>(tq) - tk > max_distance) offset -= kCausalMask;
    if (rel_scores) {
      const int64_t r = relative_index_at(base, tq, tk);
      if (r >= 0) offset += rel_scores[r];
    }
    return offset;
  }
  RF_HD float score_offset(int64_t s, int32_t tq, int32_t tk) const {
    return score_offset_at(rel_scores ? relative_base(s) : 0, tq, tk);
  }
  // The query-gradient pass's record of dS for the relative scores.
  RF_HD void add_relative_grad_at(int64_t base, int32_t tq, int32_t tk, float ds) const {
    if (!rel_grads) return;
    const int64_t r = relative_index_at(base, tq, tk);
    if (r >= 0) rel_grads[r] += ds;
  }
  RF_HD void add_relative_grad(int64_t s, int32_t tq, int32_t tk, float ds) const {
    if (rel_grads) add_relative_grad_at(relative_base(s), tq, tk, ds);
  }

  // (In 32 bits: slots and positions are int32 (chunked_attention.cpp checks), and a 64-bit
  // modulo is a call to a slow routine on the GPU.)
  // The example and head of segment s (= b * heads + h), in 32 bits as position.
  RF_HD int64_t example_of(int64_t s) const {
    return static_cast<int32_t>(first_segment + s) / static_cast<int32_t>(heads);
  }
  RF_HD int64_t head_of(int64_t s) const {
    return static_cast<int32_t>(first_segment + s) % static_cast<int32_t>(heads);
  }
  RF_HD int64_t position(int64_t s, int64_t j) const {
    const int32_t e = perm ? perm[s * layout.n_slots + j] : static_cast<int32_t>(j);
    return e % static_cast<int32_t>(layout.seq_len);
  }
  // Row of (segment s, query position t >= memory_len) in a query-side array (queries, outputs
  // and their gradients) with row stride `stride`.
  RF_HD int64_t row_offset(int64_t s, int64_t t, int64_t stride) const {
    return (example_of(s) * query_len() + t - memory_len) * stride + head_of(s) * d;
  }
  // Row of (segment s, position t) in a key-side array (keys, values and their gradients).
  RF_HD int64_t key_row_offset(int64_t s, int64_t t, int64_t stride) const {
    if (t >= memory_len) return row_offset(s, t, stride);
    return (batch * query_len() + example_of(s) * memory_len + t) * stride + head_of(s) * d;
  }
  RF_HD const float* query_row(int64_t s, int64_t t) const { return q + row_offset(s, t, ld); }
  RF_HD const float* key_row(int64_t s, int64_t t) const {
    return (k ? k : q) + key_row_offset(s, t, ld);
  }
  RF_HD const float* value_row(int64_t s, int64_t t) const { return v + key_row_offset(s, t, ld); }
  // The factor the key row of (s, t) is multiplied by.
  RF_HD float key_factor(int64_t s, int64_t t) const {
    return key_scales ? key_scales[s * layout.seq_len + t] : key_scale;
  }
  // The dropout mask of segment s.
  RF_HD DropoutMask segment_dropout(int64_t s) const {
    DropoutMask m = dropout;
    m.example_base += static_cast<uint32_t>(example_of(s));
    m.stream.head = static_cast<uint32_t>(head_of(s));
    return m;
  }
};

// key_scales[s * seq_len + t] = key_norm_scale of the key row of (s, t). Index = s * seq_len + t.
struct KeyNormScales {
  ChunkAttentionParams p;
  float* key_scales;
  RF_HD void operator()(int64_t i) const {
    const int64_t s = i / p.layout.seq_len, t = i % p.layout.seq_len;
    key_scales[i] = key_norm_scale(p.key_row(s, t), p.d);
  }
};

// x rounded to bf16 when `on` (ChunkAttentionParams::bf16_products).
RF_HD float product_operand(float x, bool on) {
  return on ? bf16_rounded(x) : x;
}

// The masked, scaled score of query slot j's row qr (at position qp) against key slot e. (bf16
// products multiply the scaled key, as the tiles stage it.)
RF_HD float chunk_score(const ChunkAttentionParams& p, int64_t s, const float* qr, int32_t qp,
                        int64_t e) {
  const int64_t tk = p.position(s, e);
  const float* kr = p.key_row(s, tk);
  const float factor = p.key_factor(s, tk);
  float score = 0.0f;
  if (p.bf16_products) {
    for (int64_t c = 0; c < p.d; ++c)
      score += product_operand(qr[c], true) * product_operand(kr[c] * factor, true);
  } else {
    for (int64_t c = 0; c < p.d; ++c) score += qr[c] * kr[c];
    score *= factor;
  }
  return score + p.score_offset(s, qp, static_cast<int32_t>(tk));
}

// Forward of one query slot: two passes over its window (the maximum, then the normalised
// weights), O and the row statistics. Index = s * n_slots + j.
struct ChunkAttentionForwardRow {
  ChunkAttentionParams p;
  RF_HD void operator()(int64_t i) const {
    const ChunkLayout& L = p.layout;
    const int64_t s = i / L.n_slots, j = i % L.n_slots, c = j / L.chunk, W = L.window();
    const int64_t t = p.position(s, j);
    if (t < p.memory_len) return;  // (a memory position: no query)
    const float* qr = p.query_row(s, t);
    const int32_t qp = static_cast<int32_t>(t);
    float m = kNoMaxYet;
    for (int64_t w = 0; w < W; ++w) m = fmax_hd(m, chunk_score(p, s, qr, qp, L.window_slot(c, w)));
    float acc[kMaxHeadDim];
    for (int64_t x = 0; x < p.d; ++x) acc[x] = 0.0f;
    float sum = 0.0f;
    const DropoutMask drop = p.segment_dropout(s);
    for (int64_t w = 0; w < W; ++w) {
      const int64_t e = L.window_slot(c, w);
      const float weight = exp_approx(chunk_score(p, s, qr, qp, e) - m);
      sum += weight;
      const float kept = product_operand(weight * drop.scale(j, w), p.bf16_products);
      const float* vr = p.value_row(s, p.position(s, e));
      for (int64_t x = 0; x < p.d; ++x) acc[x] += kept * product_operand(vr[x], p.bf16_products);
    }
    // Normalise by the sum (not exp(score - lse)): next to a -1e5 self mask the float lse is only
    // accurate to ~1e-2, which would leave rows summing to 0.99. The backward uses m and
    // log(sum) separately for the same reason.
    const float inv = 1.0f / sum;
    float* o = p.o + i * p.d;
    for (int64_t x = 0; x < p.d; ++x) o[x] = acc[x] * inv;
    p.row_max[i] = m;
    p.row_log_sum[i] = logf(sum);
  }
};

// Index in p's per-slot arrays of round r of position t of segment s (undo null: unsorted).
RF_HD int64_t round_slot(const ChunkAttentionParams& p, const int32_t* undo, int64_t s, int64_t r,
                         int64_t t) {
  const int64_t n = p.layout.n_slots, local = r * p.layout.seq_len + t;
  return s * n + (undo ? undo[s * n + local] : local);
}

// Weight of each round at position t of segment s: softmax over rounds of the per-round
// log-sum-exp. Fills slots[r] (round_slot of each round) and weights[r].
RF_HD void round_weights(const ChunkAttentionParams& p, const int32_t* undo, int64_t s, int64_t t,
                         int64_t n_rounds, int64_t* slots, float* weights) {
  float lse[kMaxHashRounds];
  float mx = kNoMaxYet;
  for (int64_t r = 0; r < n_rounds; ++r) {
    slots[r] = round_slot(p, undo, s, r, t);
    lse[r] = p.row_max[slots[r]] + p.row_log_sum[slots[r]];
    mx = fmax_hd(mx, lse[r]);
  }
  float sum = 0.0f;
  for (int64_t r = 0; r < n_rounds; ++r) sum += (weights[r] = exp_approx(lse[r] - mx));
  for (int64_t r = 0; r < n_rounds; ++r) weights[r] /= sum;
}

// out[(b, t), h] = sum_r w_r O[slot(r, t)]: unsort and combine the rounds. Index = s * Q + t - M
// (Q = query_len(), M = memory_len: the query positions).
struct CombineRounds {
  ChunkAttentionParams p;
  const int32_t* undo;  // [segments, n_slots] or null (identity)
  int64_t n_rounds;
  float* out;  // [batch * query_len, ldo]; not written when out_bf16 is set
  int64_t ldo;
  // The same rows rounded to bf16 (ldo apart), in place of `out`, for an output that only
  // products read where they take bf16 operands (Executor::gemm_takes_bf16_operands).
  uint16_t* out_bf16 = nullptr;
  RF_HD void operator()(int64_t i) const {
    const int64_t s = i / p.query_len(), t = p.memory_len + i % p.query_len();
    int64_t slots[kMaxHashRounds];
    float w[kMaxHashRounds];
    round_weights(p, undo, s, t, n_rounds, slots, w);
    if (out_bf16) {
      float o[kMaxHeadDim];
      combine(slots, w, o);
      uint16_t* ob = out_bf16 + p.row_offset(s, t, ldo);
      for (int64_t x = 0; x < p.d; ++x) ob[x] = bf16_bits(o[x]);
      return;
    }
    combine(slots, w, out + p.row_offset(s, t, ldo));
  }
  // o[x] = sum_r w[r] O[slots[r]][x].
  RF_HD void combine(const int64_t* slots, const float* w, float* o) const {
    const float* first = p.o + slots[0] * p.d;
    for (int64_t x = 0; x < p.d; ++x) o[x] = w[0] * first[x];
    for (int64_t r = 1; r < n_rounds; ++r) {  // rounds in order, each row a contiguous loop
      const float* round = p.o + slots[r] * p.d;
      for (int64_t x = 0; x < p.d; ++x) o[x] += w[r] * round[x];
    }
  }
};

// The combine's backward: for each round, dO (written over O), dlse and delta = dO . O.
// Index = s * Q + t - M as for CombineRounds; each index owns its rounds' slots, so the in-place
// write is safe.
struct CombineRoundsBackward {
  ChunkAttentionParams p;
  const int32_t* undo;
  int64_t n_rounds;
  const float* dout;  // [batch * query_len, lddo]
  int64_t lddo;
  RF_HD void operator()(int64_t i) const {
    const int64_t s = i / p.query_len(), t = p.memory_len + i % p.query_len();
    int64_t slots[kMaxHashRounds];
    float w[kMaxHashRounds];
    round_weights(p, undo, s, t, n_rounds, slots, w);
    const float* g = dout + p.row_offset(s, t, lddo);
    float g_dot_round[kMaxHashRounds];
    float g_dot_out = 0.0f;
    for (int64_t r = 0; r < n_rounds; ++r) {
      const float* o = p.o + slots[r] * p.d;
      g_dot_round[r] = row_sum(p.d, [g, o](int64_t x) { return g[x] * o[x]; });
      g_dot_out += w[r] * g_dot_round[r];
    }
    for (int64_t r = 0; r < n_rounds; ++r) {
      float* o = p.o + slots[r] * p.d;
      for (int64_t x = 0; x < p.d; ++x) o[x] = w[r] * g[x];
      p.delta[slots[r]] = w[r] * g_dot_round[r];
      p.dlse[slots[r]] = w[r] * (g_dot_round[r] - g_dot_out);
    }
  }
};

// dS of (query slot i at position qp, key slot e at window index w): the recomputed probability,
// the value gradient through the dropout, the softmax and the round weight. Also returns the
// dropped probability (what the value gradient is weighted by).
RF_HD float chunk_score_grad(const ChunkAttentionParams& p, int64_t s, int64_t i, const float* qr,
                             int32_t qp, int64_t e, const float* dor, const DropoutMask& drop,
                             int64_t j, int64_t w, float* dropped_p) {
  const float prob = exp_approx((chunk_score(p, s, qr, qp, e) - p.row_max[i]) - p.row_log_sum[i]);
  const float* vr = p.value_row(s, p.position(s, e));
  float dp = 0.0f;
  for (int64_t x = 0; x < p.d; ++x)
    dp += product_operand(dor[x], p.bf16_products) * product_operand(vr[x], p.bf16_products);
  const float keep = drop.scale(j, w);
  *dropped_p = prob * keep;
  return prob * (dp * keep - p.delta[i] + p.dlse[i]);
}

// dQ of one query slot over its window: sum_w dS_w * key_w (the scaled key). Index = s * n + j.
struct ChunkAttentionQueryGradRow {
  ChunkAttentionParams p;
  RF_HD void operator()(int64_t i) const {
    const ChunkLayout& L = p.layout;
    const int64_t s = i / L.n_slots, j = i % L.n_slots, c = j / L.chunk, W = L.window();
    const int64_t t = p.position(s, j);
    if (t < p.memory_len) return;  // (a memory position: no query)
    const float* qr = p.query_row(s, t);
    const float* dor = p.o + i * p.d;
    const DropoutMask drop = p.segment_dropout(s);
    float acc[kMaxHeadDim];
    for (int64_t x = 0; x < p.d; ++x) acc[x] = 0.0f;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t e = L.window_slot(c, w);
      float dropped_p;
      const float ds =
          chunk_score_grad(p, s, i, qr, static_cast<int32_t>(t), e, dor, drop, j, w, &dropped_p);
      const int64_t tk = p.position(s, e);
      p.add_relative_grad(s, static_cast<int32_t>(t), static_cast<int32_t>(tk), ds);
      const float* kr = p.key_row(s, tk);
      if (p.bf16_products) {
        const float f = p.key_factor(s, tk), ds16 = product_operand(ds, true);
        for (int64_t x = 0; x < p.d; ++x) acc[x] += ds16 * product_operand(kr[x] * f, true);
      } else {
        const float factor = ds * p.key_factor(s, tk);
        for (int64_t x = 0; x < p.d; ++x) acc[x] += factor * kr[x];
      }
    }
    float* dq = p.dq + i * p.d;
    for (int64_t x = 0; x < p.d; ++x) dq[x] = acc[x];
  }
};

// dK (of the scaled key) and dV of one key slot e, over every query whose window holds it: the
// queries of its own chunk (window index lookback * chunk + e % chunk) and, with lookback, those of
// the next chunk (window index e % chunk). Index = s * n + e.
struct ChunkAttentionKeyGradRow {
  ChunkAttentionParams p;
  RF_HD void operator()(int64_t i) const {
    const ChunkLayout& L = p.layout;
    const int64_t s = i / L.n_slots, e = i % L.n_slots, C = L.chunk, own = e / C;
    const DropoutMask drop = p.segment_dropout(s);
    float dk[kMaxHeadDim], dv[kMaxHeadDim];
    for (int64_t x = 0; x < p.d; ++x) dk[x] = dv[x] = 0.0f;
    for (int64_t view = L.lookback; view >= 0; --view) {  // own window, then the next chunk's
      const int64_t c = view == L.lookback ? own : (own + 1) % L.n_chunks();
      const int64_t w = (view == L.lookback ? L.lookback * C : 0) + e % C;
      for (int64_t jj = 0; jj < C; ++jj) {
        const int64_t j = c * C + jj, qi = s * L.n_slots + j;
        const int64_t t = p.position(s, j);
        if (t < p.memory_len) continue;  // (a memory position: no query)
        const float* qr = p.query_row(s, t);
        const float* dor = p.o + qi * p.d;
        float dropped_p;
        const float ds =
            chunk_score_grad(p, s, qi, qr, static_cast<int32_t>(t), e, dor, drop, j, w, &dropped_p);
        const bool r = p.bf16_products;
        const float ds_r = product_operand(ds, r), dropped_r = product_operand(dropped_p, r);
        for (int64_t x = 0; x < p.d; ++x) {
          dk[x] += ds_r * product_operand(qr[x], r);
          dv[x] += dropped_r * product_operand(dor[x], r);
        }
      }
    }
    for (int64_t x = 0; x < p.d; ++x) {
      p.dk[i * p.d + x] = dk[x];
      p.dv[i * p.d + x] = dv[x];
    }
  }
};

// The slot gradients of position t summed over rounds and written to the unsorted rows: dq, dv,
// and dk (separate keys: times key_scale) or, for shared QK, the key gradient through the
// normalisation k = q * key_norm_scale(q), added to dq. dq, dk and dv may be q, k and v
// themselves: each index reads its own rows before it writes them, and no other index reads them.
// Memory positions (t < memory_len) have key and value gradients only. With `bf16` set, each
// gradient goes rounded to bf16 into bf16's rows (ldg apart) in place of its fp32 rows (for
// gradients only products read, where they take bf16 operands). Index = s * T + t.
struct UngatherAttentionGrads {
  ChunkAttentionParams p;
  const int32_t* undo;  // [segments, n_slots] or null
  int64_t n_rounds;
  float* dq;  // query-side rows, ldg apart
  float* dk;  // key-side rows, ldg apart; unused for shared QK
  float* dv;  // key-side rows
  int64_t ldg;
  struct Bf16Rows {
    uint16_t *dq = nullptr, *dk = nullptr, *dv = nullptr;
  };
  Bf16Rows bf16;
  // Row `row` of the gradient whose fp32 rows are `rows` and bf16 rows `rows_bf16` = g * scale.
  RF_HD void store(float* rows, uint16_t* rows_bf16, int64_t row, const float* g,
                   float scale) const {
    if (rows_bf16) {
      for (int64_t x = 0; x < p.d; ++x) rows_bf16[row + x] = bf16_bits(scale * g[x]);
    } else {
      for (int64_t x = 0; x < p.d; ++x) rows[row + x] = scale * g[x];
    }
  }
  // out = the sum of position t's rows of the slot-major `rows` over the rounds, in order
  // (n_rounds >= 1), each row a contiguous loop.
  RF_HD void sum_rounds(const float* rows, int64_t s, int64_t t, float* out) const {
    const float* first = rows + round_slot(p, undo, s, 0, t) * p.d;
    for (int64_t x = 0; x < p.d; ++x) out[x] = first[x];
    for (int64_t r = 1; r < n_rounds; ++r) {
      const float* row = rows + round_slot(p, undo, s, r, t) * p.d;
      for (int64_t x = 0; x < p.d; ++x) out[x] += row[x];
    }
  }
  RF_HD void operator()(int64_t i) const {
    const int64_t s = i / p.layout.seq_len, t = i % p.layout.seq_len;
    const int64_t key_row = p.key_row_offset(s, t, ldg);
    float gq[kMaxHeadDim], gk[kMaxHeadDim], gv[kMaxHeadDim];
    sum_rounds(p.dk, s, t, gk);
    sum_rounds(p.dv, s, t, gv);
    if (t < p.memory_len) {  // a memory position: no query (separate keys only)
      store(dk, bf16.dk, key_row, gk, p.key_scale);
      store(dv, bf16.dv, key_row, gv, 1.0f);
      return;
    }
    sum_rounds(p.dq, s, t, gq);
    const int64_t row = p.row_offset(s, t, ldg);
    if (p.key_scales) {
      // key = q * inv, inv = (|q|^2 + d eps)^(-1/2): dq += g inv - q (g . q) inv^3.
      const float* qr = p.query_row(s, t);
      const float g_dot_q = row_sum(p.d, [&gk, qr](int64_t x) { return gk[x] * qr[x]; });
      const float inv = p.key_scales[i];
      const float inv3 = inv * inv * inv;
      for (int64_t x = 0; x < p.d; ++x) gq[x] += gk[x] * inv - qr[x] * g_dot_q * inv3;
    } else {
      store(dk, bf16.dk, key_row, gk, p.key_scale);
    }
    store(dq, bf16.dq, row, gq, 1.0f);
    store(dv, bf16.dv, key_row, gv, 1.0f);
  }
};

}  // namespace rf
