// The chunked attention machinery shared by LSH, local and dense attention, for one (example,
// head). Slots are the n_slots = n_rounds * seq_len (query, key, value) rows in sorted order (LSH:
// by bucket then position; local and dense: the original order). Slots are cut into chunks of
// `chunk` rows; chunk c attends to the keys of chunk c-1 (when lookback = 1, wrapping to the last
// chunk) and of itself, so its window holds W = (1 + lookback) * chunk keys. The sorted keys are
// stored with the last chunk copied in front ("ext" rows), so every window is one contiguous block
// and all dot products are strided batched GEMMs. Nothing here is O(seq_len^2) unless chunk =
// seq_len (dense attention).
#pragma once

#include "kernels/fast_math.h"
#include "kernels/ops/dropout_mask.h"
#include "kernels/ops/row_split.h"

namespace rf {

constexpr int kMaxHashRounds = 32;
constexpr float kCausalMask = 1e9f;   // subtracted where the key is later than the query
constexpr float kSelfMask = 1e5f;     // subtracted where a shared-QK query meets its own position
constexpr float kKeyNormEps = 1e-6f;  // trax: k * rsqrt(mean(k^2) + eps) / sqrt(d)

struct ChunkLayout {
  int64_t seq_len = 0;
  int64_t n_slots = 0;   // n_rounds * seq_len
  int64_t chunk = 0;     // rows per chunk; divides n_slots
  int64_t lookback = 0;  // 0 or 1 chunks before
  RF_HD int64_t n_chunks() const { return n_slots / chunk; }
  RF_HD int64_t window() const { return (1 + lookback) * chunk; }
  RF_HD int64_t ext_rows() const { return lookback * chunk + n_slots; }
  // Sorted slot held by ext row e.
  RF_HD int64_t slot_of_ext(int64_t e) const {
    const int64_t pre = lookback * chunk;
    return e < pre ? n_slots - pre + e : e - pre;
  }
};

// The factor that makes a shared-QK key unit length (times trax's eps), from the query row.
RF_HD float key_norm_scale(const float* kr, int64_t d) {
  float s = 0.0f;
  for (int64_t c = 0; c < d; ++c) s += kr[c] * kr[c];
  return 1.0f / sqrtf(s + static_cast<float>(d) * kKeyNormEps);
}

// scales[t] = key_norm_scale of position t's key row, computed once per position before a
// GatherChunks whose indices split rows (the GPU). Index = position t.
struct KeyNormScales {
  const float* k;
  int64_t ldk, d;
  float* scales;  // [seq_len]
  RF_HD void operator()(int64_t t) const { scales[t] = key_norm_scale(k + t * ldk, d); }
};

// Gathers queries, keys and values into sorted order. Index = (ext row e, piece of the d columns
// per split). With normalize_keys, each index computes its key's scale itself unless key_scales
// (from KeyNormScales) is given; the positions are written by the first piece of a row.
struct GatherChunks {
  const float* q;  // [seq_len, ldq]
  const float* k;  // [seq_len, ldk]; equals q for shared-QK
  const float* v;  // [seq_len, ldv]
  int64_t ldq, ldk, ldv;
  const int32_t* perm;  // [n_slots]: slot -> r * seq_len + t; null = identity
  ChunkLayout layout;
  int64_t d;
  bool normalize_keys;      // LSH: keys are the queries scaled to unit length
  float key_scale;          // otherwise keys are multiplied by this (1 / sqrt(d))
  float* sq;                // [n_slots, d]
  float* sk;                // [ext_rows, d]
  float* sv;                // [ext_rows, d]
  int32_t* qpos;            // [n_slots]
  int32_t* kpos;            // [ext_rows]
  RowSplit split;           // over the d columns
  const float* key_scales;  // [seq_len] or null
  RF_HD void operator()(int64_t i) const {
    const int64_t e = i / split.pieces(), piece = i % split.pieces();
    const int64_t c0 = split.begin(piece), c1 = split.end(piece);
    const int64_t j = layout.slot_of_ext(e);
    const int64_t t = (perm ? perm[j] : j) % layout.seq_len;
    const float* kr = k + t * ldk;
    float scale = key_scale;
    if (normalize_keys) scale = key_scales ? key_scales[t] : key_norm_scale(kr, d);
    float* kd = sk + e * d;
    float* vd = sv + e * d;
    const float* vr = v + t * ldv;
    for (int64_t c = c0; c < c1; ++c) {
      kd[c] = kr[c] * scale;
      vd[c] = vr[c];
    }
    if (piece == 0) kpos[e] = static_cast<int32_t>(t);
    if (e < layout.lookback * layout.chunk) return;
    const float* qr = q + t * ldq;
    float* qd = sq + j * d;
    for (int64_t c = c0; c < c1; ++c) qd[c] = qr[c];
    if (piece == 0) qpos[j] = static_cast<int32_t>(t);
  }
};

// Masks one row of logits, writes its log-sum-exp and turns it into probabilities (and, with
// attention dropout, the dropped probabilities the values are weighted by). Index = slot j.
struct ChunkSoftmax {
  float* dots;          // [n_slots, W]: in q.k, out probabilities
  float* dropped;       // [n_slots, W] out when dropout is active, else null
  float* lse;           // [n_slots]
  const int32_t* qpos;  // [n_slots]
  const int32_t* kpos;  // [ext_rows]
  ChunkLayout layout;
  bool self_mask;
  DropoutMask dropout;  // element j * W + w of the (example, head) stream
  RF_HD void operator()(int64_t j) const {
    const int64_t w_count = layout.window();
    const int32_t* kp = kpos + (j / layout.chunk) * layout.chunk;
    float* row = dots + j * w_count;
    const int32_t qp = qpos[j];
    const float self_penalty = self_mask ? kSelfMask : 0.0f;
    float mx = -3.0e38f;
    for (int64_t w = 0; w < w_count; ++w) {  // branch-free so the loop vectorises
      const float penalty = kp[w] > qp ? kCausalMask : (kp[w] == qp ? self_penalty : 0.0f);
      const float x = row[w] - penalty;
      row[w] = x;
      mx = fmax_hd(mx, x);
    }
    float sum = 0.0f;
    for (int64_t w = 0; w < w_count; ++w) sum += (row[w] = exp_approx(row[w] - mx));
    // Normalise by the sum rather than exp(x - lse): next to a -1e5 self mask the float lse is
    // only accurate to ~1e-2, which would leave rows summing to 0.99.
    const float inv = 1.0f / sum;
    for (int64_t w = 0; w < w_count; ++w) row[w] *= inv;
    lse[j] = mx + logf(sum);
    if (dropped)
      for (int64_t w = 0; w < w_count; ++w) dropped[j * w_count + w] = row[w] * dropout.scale(j, w);
  }
};

// Weight of each round: softmax over rounds of the per-round log-sum-exp. Returns the count.
RF_HD int64_t round_weights(const float* lse, const int32_t* undo, int64_t t, int64_t seq_len,
                            int64_t n_rounds, int64_t* slots, float* weights) {
  float mx = -3.0e38f;
  for (int64_t r = 0; r < n_rounds; ++r) {
    const int64_t i = r * seq_len + t;
    slots[r] = undo ? undo[i] : i;
    mx = fmax_hd(mx, lse[slots[r]]);
  }
  float sum = 0.0f;
  for (int64_t r = 0; r < n_rounds; ++r) sum += (weights[r] = exp_approx(lse[slots[r]] - mx));
  for (int64_t r = 0; r < n_rounds; ++r) weights[r] /= sum;
  return n_rounds;
}

// out[t] = sum_r w_r(t) so[slot(r, t)]: unsort and combine the rounds. Index = position t.
struct CombineRounds {
  const float* so;      // [n_slots, d]
  const float* lse;     // [n_slots]
  const int32_t* undo;  // [n_rounds * seq_len] or null (identity)
  float* out;           // [seq_len, ldo]
  int64_t ldo, seq_len, n_rounds, d;
  RF_HD void operator()(int64_t t) const {
    int64_t slots[kMaxHashRounds];
    float w[kMaxHashRounds];
    round_weights(lse, undo, t, seq_len, n_rounds, slots, w);
    float* o = out + t * ldo;
    for (int64_t c = 0; c < d; ++c) {
      float s = 0.0f;
      for (int64_t r = 0; r < n_rounds; ++r) s += w[r] * so[slots[r] * d + c];
      o[c] = s;
    }
  }
};

// Gradients of CombineRounds with respect to each round's output and log-sum-exp. Index = t.
// dso may alias so: each position reads all its rounds' rows before writing them.
struct CombineRoundsBackward {
  const float* so;
  const float* lse;
  const int32_t* undo;
  const float* dout;  // [seq_len, lddo]
  float* dso;         // [n_slots, d]
  float* dlse;        // [n_slots]
  int64_t lddo, seq_len, n_rounds, d;
  RF_HD void operator()(int64_t t) const {
    int64_t slots[kMaxHashRounds];
    float w[kMaxHashRounds];
    round_weights(lse, undo, t, seq_len, n_rounds, slots, w);
    const float* g = dout + t * lddo;
    float g_dot_out = 0.0f;
    float g_dot_round[kMaxHashRounds];
    for (int64_t r = 0; r < n_rounds; ++r) {
      const float* o = so + slots[r] * d;
      float s = 0.0f;
      for (int64_t c = 0; c < d; ++c) s += g[c] * o[c];
      g_dot_round[r] = s;
      g_dot_out += w[r] * s;
    }
    for (int64_t r = 0; r < n_rounds; ++r) {
      float* ds = dso + slots[r] * d;
      for (int64_t c = 0; c < d; ++c) ds[c] = w[r] * g[c];
      dlse[slots[r]] = w[r] * (g_dot_round[r] - g_dot_out);
    }
  }
};

// grad (in: dL/d dropped-probabilities, out: dL/d logits) for one row. Index = slot j.
struct ChunkSoftmaxBackward {
  const float* probs;  // [n_slots, W]
  float* grad;         // [n_slots, W]
  const float* dlse;   // [n_slots] or null
  ChunkLayout layout;
  DropoutMask dropout;
  RF_HD void operator()(int64_t j) const {
    const int64_t w_count = layout.window();
    const float* p = probs + j * w_count;
    float* g = grad + j * w_count;
    float dot = 0.0f;
    for (int64_t w = 0; w < w_count; ++w) {
      g[w] *= dropout.scale(j, w);
      dot += p[w] * g[w];
    }
    const float extra = dlse ? dlse[j] : 0.0f;
    for (int64_t w = 0; w < w_count; ++w) g[w] = p[w] * (g[w] - dot + extra);
  }
};

// Sums each slot's gradient from the two windows it appears in (its own chunk's, and with
// lookback the next chunk's). Index = slot j.
struct FoldWindows {
  const float* dwindow;  // [n_chunks, W, d]
  float* dsorted;        // [n_slots, d]
  ChunkLayout layout;
  int64_t d;
  RF_HD void operator()(int64_t j) const {
    const int64_t c = j / layout.chunk, o = j % layout.chunk, w_count = layout.window();
    const float* own = dwindow + (c * w_count + layout.lookback * layout.chunk + o) * d;
    float* out = dsorted + j * d;
    if (layout.lookback) {
      const float* next = dwindow + (((c + 1) % layout.n_chunks()) * w_count + o) * d;
      for (int64_t x = 0; x < d; ++x) out[x] = own[x] + next[x];
    } else {
      for (int64_t x = 0; x < d; ++x) out[x] = own[x];
    }
  }
};

// Shared-QK: adds the gradient that flows through the key normalisation to the query gradient.
// Index = slot j.
struct KeyNormBackwardToQuery {
  float* dsq;        // [n_slots, d]
  const float* dsk;  // [n_slots, d] gradient w.r.t. the normalised keys
  const float* sq;   // [n_slots, d]
  int64_t d;
  RF_HD void operator()(int64_t j) const {
    const float* x = sq + j * d;
    const float* g = dsk + j * d;
    float s = 0.0f, gx = 0.0f;
    for (int64_t c = 0; c < d; ++c) s += x[c] * x[c], gx += g[c] * x[c];
    const float inv = 1.0f / sqrtf(s + static_cast<float>(d) * kKeyNormEps);
    const float inv3 = inv * inv * inv;
    float* out = dsq + j * d;
    for (int64_t c = 0; c < d; ++c) out[c] += g[c] * inv - x[c] * gx * inv3;
  }
};

// dx[t] (+)= sum over rounds of dsorted[slot(r, t)]: the gather's gradient, written as a gather
// through the inverse permutation (no atomics). Index = position t.
struct UngatherRounds {
  const float* dsorted;  // [n_slots, d]
  const int32_t* undo;   // [n_rounds * seq_len] or null
  float* dx;             // [seq_len, ldx]
  int64_t ldx, seq_len, n_rounds, d;
  float scale;
  bool accumulate;
  RF_HD void operator()(int64_t t) const {
    float* out = dx + t * ldx;
    for (int64_t c = 0; c < d; ++c) {
      float s = 0.0f;
      for (int64_t r = 0; r < n_rounds; ++r) {
        const int64_t i = r * seq_len + t;
        s += dsorted[(undo ? undo[i] : i) * d + c];
      }
      out[c] = accumulate ? out[c] + scale * s : scale * s;
    }
  }
};

}  // namespace rf
