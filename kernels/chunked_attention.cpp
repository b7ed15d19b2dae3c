#include "kernels/chunked_attention.h"

namespace rf {
namespace {

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
Sorted forward_sorted(Executor& ex, Workspace& ws, const HeadAttentionSpec& spec,
                      const HeadInputs& in) {
  const ChunkLayout& L = spec.layout;
  const int64_t d = spec.d, C = L.chunk, W = L.window(), nc = L.n_chunks();
  Sorted s;
  s.sq = ws.floats("attn.sq", L.n_slots * d);
  s.sk = ws.floats("attn.sk", L.ext_rows() * d);
  s.sv = ws.floats("attn.sv", L.ext_rows() * d);
  s.qpos = ws.ints("attn.qpos", L.n_slots);
  s.kpos = ws.ints("attn.kpos", L.ext_rows());
  s.probs = ws.floats("attn.probs", L.n_slots * W);
  s.dropped = spec.dropout.active() ? ws.floats("attn.dropped", L.n_slots * W) : nullptr;
  s.lse = ws.floats("attn.lse", L.n_slots);
  s.so = ws.floats("attn.so", L.n_slots * d);

  const float* k = spec.shared_qk ? in.q : in.k;
  const int64_t ldk = spec.shared_qk ? in.ldq : in.ldk;
  const RowSplit split = row_split(ex, d);
  float* key_scales = nullptr;
  if (spec.shared_qk && split.pieces() > 1) {  // one scale per position, not per piece of a row
    key_scales = ws.floats("attn.key_scales", L.seq_len);
    ex.run(L.seq_len, KeyNormScales{k, ldk, d, key_scales});
  }
  ex.run(split.indices(L.ext_rows()),
         GatherChunks{in.q, k, in.v, in.ldq, ldk, in.ldv, in.perm, L, d, spec.shared_qk,
                      spec.key_scale, s.sq, s.sk, s.sv, s.qpos, s.kpos, split, key_scales});
  // logits[c] [C, W] = sq[c] [C, d] . window(c)^T [d, W]; window(c) starts at ext row c * C.
  RowMajorGemm logits{false, true, C, W, d, d, d, W, C * d, C * d, C * W, nc, 1.0f, 0.0f};
  matmul(ex, logits, s.sq, s.sk, s.probs);
  ex.run(L.n_slots,
         ChunkSoftmax{s.probs, s.dropped, s.lse, s.qpos, s.kpos, L, spec.shared_qk, spec.dropout});
  // so[c] [C, d] = P[c] [C, W] . values of window(c) [W, d]
  RowMajorGemm values{false, false, C, d, W, W, d, d, C * W, C * d, C * d, nc, 1.0f, 0.0f};
  matmul(ex, values, s.dropped ? s.dropped : s.probs, s.sv, s.so);
  return s;
}

}  // namespace

void chunked_attention_forward(Executor& ex, Workspace& ws, const HeadAttentionSpec& spec,
                               const HeadInputs& in, float* out, int64_t ldo) {
  const Sorted s = forward_sorted(ex, ws, spec, in);
  ex.run(spec.layout.seq_len,
         CombineRounds{s.so, s.lse, in.undo, out, ldo, spec.layout.seq_len, spec.n_rounds, spec.d});
}

void chunked_attention_backward(Executor& ex, Workspace& ws, const HeadAttentionSpec& spec,
                                const HeadInputs& in, const float* dout, int64_t lddo,
                                const HeadGradients& grads, float* out, int64_t ldo) {
  const ChunkLayout& L = spec.layout;
  const int64_t d = spec.d, C = L.chunk, W = L.window(), nc = L.n_chunks(), T = L.seq_len;
  const Sorted s = forward_sorted(ex, ws, spec, in);
  if (out) ex.run(T, CombineRounds{s.so, s.lse, in.undo, out, ldo, T, spec.n_rounds, d});

  float* dso = s.so;  // in place: the round outputs are not needed after this
  float* dlse = ws.floats("attn.dlse", L.n_slots);
  ex.run(T,
         CombineRoundsBackward{s.so, s.lse, in.undo, dout, dso, dlse, lddo, T, spec.n_rounds, d});
  // dP[c] [C, W] = dso[c] [C, d] . values(c)^T
  float* dprobs = ws.floats("attn.dprobs", L.n_slots * W);
  matmul(ex, {false, true, C, W, d, d, d, W, C * d, C * d, C * W, nc, 1.0f, 0.0f}, dso, s.sv,
         dprobs);
  // dvalues(c) [W, d] = P[c]^T [W, C] . dso[c] [C, d]
  float* dwindow = ws.floats("attn.dwindow", nc * W * d);
  float* dsv = ws.floats("attn.dsv", L.n_slots * d);
  matmul(ex, {true, false, W, d, C, W, d, d, C * W, C * d, W * d, nc, 1.0f, 0.0f},
         s.dropped ? s.dropped : s.probs, dso, dwindow);
  ex.run(L.n_slots, FoldWindows{dwindow, dsv, L, d});
  // dP -> dlogits, through the dropout, softmax and the round weights' log-sum-exp.
  ex.run(L.n_slots, ChunkSoftmaxBackward{s.probs, dprobs, spec.n_rounds > 1 ? dlse : nullptr, L,
                                         spec.dropout});
  // dsq[c] [C, d] = dlogits[c] [C, W] . keys(c) [W, d]
  float* dsq = ws.floats("attn.dsq", L.n_slots * d);
  matmul(ex, {false, false, C, d, W, W, d, d, C * W, C * d, C * d, nc, 1.0f, 0.0f}, dprobs, s.sk,
         dsq);
  // dkeys(c) [W, d] = dlogits[c]^T [W, C] . sq[c] [C, d]
  float* dsk = ws.floats("attn.dsk", L.n_slots * d);
  matmul(ex, {true, false, W, d, C, W, d, d, C * W, C * d, W * d, nc, 1.0f, 0.0f}, dprobs, s.sq,
         dwindow);
  ex.run(L.n_slots, FoldWindows{dwindow, dsk, L, d});

  if (spec.shared_qk) {
    ex.run(L.n_slots, KeyNormBackwardToQuery{dsq, dsk, s.sq, d});
  } else {
    ex.run(T, UngatherRounds{dsk, in.undo, grads.dk, grads.ld, T, spec.n_rounds, d, spec.key_scale,
                             false});
  }
  ex.run(T, UngatherRounds{dsq, in.undo, grads.dq, grads.ld, T, spec.n_rounds, d, 1.0f, false});
  ex.run(T, UngatherRounds{dsv, in.undo, grads.dv, grads.ld, T, spec.n_rounds, d, 1.0f, false});
}

}  // namespace rf
