#include "tests/unfused_attention.h"

#include "base/error.h"

namespace rf::unfused {
namespace {

// Runs op(i) for i < n on the host (the CPU executor's memory is host memory).
template <class Op>
void for_each_index(int64_t n, const Op& op) {
  for (int64_t i = 0; i < n; ++i) op(i);
}

// The sorted keys are stored with the last chunk copied in front ("ext" rows), so every window is
// one contiguous block and all dot products are strided batched GEMMs.
int64_t ext_rows(const ChunkLayout& L) {
  return L.lookback * L.chunk + L.n_slots;
}
// Sorted slot held by ext row e.
int64_t slot_of_ext(const ChunkLayout& L, int64_t e) {
  const int64_t pre = L.lookback * L.chunk;
  return e < pre ? L.n_slots - pre + e : e - pre;
}

// The factor that makes a shared-QK key unit length (times trax's eps), from the query row.
RF_HD float unfused_key_norm_scale(const float* kr, int64_t d) {
  float s = 0.0f;
  for (int64_t c = 0; c < d; ++c) s += kr[c] * kr[c];
  return 1.0f / sqrtf(s + static_cast<float>(d) * kKeyNormEps);
}

// scales[t] = unfused_key_norm_scale of position t's key row, computed once per position before a
// GatherChunks whose indices split rows (the GPU). Index = position t.
struct KeyNormScales {
  const float* k;
  int64_t ldk, d;
  float* scales;  // [seq_len]
  RF_HD void operator()(int64_t t) const { scales[t] = unfused_key_norm_scale(k + t * ldk, d); }
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
    const int64_t j = slot_of_ext(layout, e);
    const int64_t t = (perm ? perm[j] : j) % layout.seq_len;
    const float* kr = k + t * ldk;
    float scale = key_scale;
    if (normalize_keys) scale = key_scales ? key_scales[t] : unfused_key_norm_scale(kr, d);
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
RF_HD int64_t unfused_round_weights(const float* lse, const int32_t* undo, int64_t t,
                                    int64_t seq_len, int64_t n_rounds, int64_t* slots,
                                    float* weights) {
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
    unfused_round_weights(lse, undo, t, seq_len, n_rounds, slots, w);
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
    unfused_round_weights(lse, undo, t, seq_len, n_rounds, slots, w);
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

// Sorted buffers of one head, shared by forward and backward (see ops/chunk_attention.h).
struct Sorted {
  float* sq;  // [n_slots, d]
  float* sk;  // [ext_rows, d]
  float* sv;  // [ext_rows, d]
  int32_t* qpos;
  int32_t* kpos;
  float* probs;    // [n_slots, W]
  float* dropped;  // [n_slots, W] or null
  float* lse;      // [n_slots]
  float* so;       // [n_slots, d]
};

// Runs gather, logits, softmax and the value product; leaves everything in `s`.
Sorted forward_sorted(Executor& cpu, Workspace& ws, const HeadAttentionSpec& spec,
                      const HeadInputs& in) {
  const ChunkLayout& L = spec.layout;
  const int64_t d = spec.d, C = L.chunk, W = L.window(), nc = L.n_chunks();
  Sorted s;
  s.sq = ws.floats("attn.sq", L.n_slots * d);
  s.sk = ws.floats("attn.sk", ext_rows(L) * d);
  s.sv = ws.floats("attn.sv", ext_rows(L) * d);
  s.qpos = ws.ints("attn.qpos", L.n_slots);
  s.kpos = ws.ints("attn.kpos", ext_rows(L));
  s.probs = ws.floats("attn.probs", L.n_slots * W);
  s.dropped = spec.dropout.active() ? ws.floats("attn.dropped", L.n_slots * W) : nullptr;
  s.lse = ws.floats("attn.lse", L.n_slots);
  s.so = ws.floats("attn.so", L.n_slots * d);

  const float* k = spec.shared_qk ? in.q : in.k;
  const int64_t ldk = spec.shared_qk ? in.ldq : in.ldk;
  const RowSplit split = RowSplit{d, d};
  float* key_scales = nullptr;
  if (spec.shared_qk && split.pieces() > 1) {  // one scale per position, not per piece of a row
    key_scales = ws.floats("attn.key_scales", L.seq_len);
    for_each_index(L.seq_len, KeyNormScales{k, ldk, d, key_scales});
  }
  for_each_index(split.indices(ext_rows(L)),
                 GatherChunks{in.q, k, in.v, in.ldq, ldk, in.ldv, in.perm, L, d, spec.shared_qk,
                              spec.key_scale, s.sq, s.sk, s.sv, s.qpos, s.kpos, split, key_scales});
  // logits[c] [C, W] = sq[c] [C, d] . window(c)^T [d, W]; window(c) starts at ext row c * C.
  RowMajorGemm logits{false, true, C, W, d, d, d, W, C * d, C * d, C * W, nc, 1.0f, 0.0f};
  matmul(cpu, logits, s.sq, s.sk, s.probs);
  for_each_index(L.n_slots, ChunkSoftmax{s.probs, s.dropped, s.lse, s.qpos, s.kpos, L,
                                         spec.shared_qk, spec.dropout});
  // so[c] [C, d] = P[c] [C, W] . values of window(c) [W, d]
  RowMajorGemm values{false, false, C, d, W, W, d, d, C * W, C * d, C * d, nc, 1.0f, 0.0f};
  matmul(cpu, values, s.dropped ? s.dropped : s.probs, s.sv, s.so);
  return s;
}

}  // namespace

void chunked_attention_forward(Executor& cpu, Workspace& ws, const HeadAttentionSpec& spec,
                               const HeadInputs& in, float* out, int64_t ldo) {
  const Sorted s = forward_sorted(cpu, ws, spec, in);
  for_each_index(spec.layout.seq_len, CombineRounds{s.so, s.lse, in.undo, out, ldo,
                                                    spec.layout.seq_len, spec.n_rounds, spec.d});
}

void chunked_attention_backward(Executor& cpu, Workspace& ws, const HeadAttentionSpec& spec,
                                const HeadInputs& in, const float* dout, int64_t lddo,
                                const HeadGradients& grads, float* out, int64_t ldo) {
  const ChunkLayout& L = spec.layout;
  const int64_t d = spec.d, C = L.chunk, W = L.window(), nc = L.n_chunks(), T = L.seq_len;
  const Sorted s = forward_sorted(cpu, ws, spec, in);
  if (out) for_each_index(T, CombineRounds{s.so, s.lse, in.undo, out, ldo, T, spec.n_rounds, d});

  float* dso = s.so;  // in place: the round outputs are not needed after this
  float* dlse = ws.floats("attn.dlse", L.n_slots);
  for_each_index(
      T, CombineRoundsBackward{s.so, s.lse, in.undo, dout, dso, dlse, lddo, T, spec.n_rounds, d});
  // dP[c] [C, W] = dso[c] [C, d] . values(c)^T
  float* dprobs = ws.floats("attn.dprobs", L.n_slots * W);
  matmul(cpu, {false, true, C, W, d, d, d, W, C * d, C * d, C * W, nc, 1.0f, 0.0f}, dso, s.sv,
         dprobs);
  // dvalues(c) [W, d] = P[c]^T [W, C] . dso[c] [C, d]
  float* dwindow = ws.floats("attn.dwindow", nc * W * d);
  float* dsv = ws.floats("attn.dsv", L.n_slots * d);
  matmul(cpu, {true, false, W, d, C, W, d, d, C * W, C * d, W * d, nc, 1.0f, 0.0f},
         s.dropped ? s.dropped : s.probs, dso, dwindow);
  for_each_index(L.n_slots, FoldWindows{dwindow, dsv, L, d});
  // dP -> dlogits, through the dropout, softmax and the round weights' log-sum-exp.
  for_each_index(
      L.n_slots,
      ChunkSoftmaxBackward{s.probs, dprobs, spec.n_rounds > 1 ? dlse : nullptr, L, spec.dropout});
  // dsq[c] [C, d] = dlogits[c] [C, W] . keys(c) [W, d]
  float* dsq = ws.floats("attn.dsq", L.n_slots * d);
  matmul(cpu, {false, false, C, d, W, W, d, d, C * W, C * d, C * d, nc, 1.0f, 0.0f}, dprobs, s.sk,
         dsq);
  // dkeys(c) [W, d] = dlogits[c]^T [W, C] . sq[c] [C, d]
  float* dsk = ws.floats("attn.dsk", L.n_slots * d);
  matmul(cpu, {true, false, W, d, C, W, d, d, C * W, C * d, W * d, nc, 1.0f, 0.0f}, dprobs, s.sq,
         dwindow);
  for_each_index(L.n_slots, FoldWindows{dwindow, dsk, L, d});

  if (spec.shared_qk) {
    for_each_index(L.n_slots, KeyNormBackwardToQuery{dsq, dsk, s.sq, d});
  } else {
    for_each_index(T, UngatherRounds{dsk, in.undo, grads.dk, grads.ld, T, spec.n_rounds, d,
                                     spec.key_scale, false});
  }
  for_each_index(
      T, UngatherRounds{dsq, in.undo, grads.dq, grads.ld, T, spec.n_rounds, d, 1.0f, false});
  for_each_index(
      T, UngatherRounds{dsv, in.undo, grads.dv, grads.ld, T, spec.n_rounds, d, 1.0f, false});
}

}  // namespace rf::unfused
