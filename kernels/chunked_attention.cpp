#include "kernels/chunked_attention.h"

#include <algorithm>
#include <cstdint>

#include "base/error.h"
#include "kernels/elementwise.h"
#include "kernels/profile.h"

namespace rf {
namespace {

ChunkLayout layout_of(const ChunkedAttentionArgs& a) {
  ChunkLayout L;
  L.seq_len = a.seq_len;
  L.n_slots = a.n_rounds * a.seq_len;
  L.chunk = a.chunk;
  L.lookback = a.lookback;
  return L;
}

void check_args(const ChunkedAttentionArgs& a) {
  RF_CHECK(a.d >= 1 && a.d <= kMaxHeadDim, "head width ", a.d, " outside [1, ", kMaxHeadDim, "]");
  RF_CHECK(a.n_rounds >= 1 && a.n_rounds <= kMaxHashRounds);
  RF_CHECK(a.chunk >= 1 && (a.n_rounds * a.seq_len) % a.chunk == 0);
  // Slots, positions and segments are int32 in the kernels (ChunkAttentionParams::position).
  RF_CHECK(a.n_rounds * a.seq_len <= INT32_MAX && a.batch * a.heads <= INT32_MAX, "attention over ",
           a.batch * a.heads, " sequences of ", a.n_rounds * a.seq_len,
           " slots: at most 2^31 - 1 each");
  RF_CHECK(a.lookback == 0 || a.lookback == 1);
  RF_CHECK((a.perm == nullptr) == (a.undo == nullptr));
  RF_CHECK(a.perm != nullptr || a.n_rounds == 1, "several rounds need a permutation");
  RF_CHECK(a.rel_scores == nullptr || (a.perm == nullptr && a.rel_len >= 1),
           "relative positions need the original order and a distance count");
  RF_CHECK(a.memory_len >= 0 && a.memory_len < a.seq_len, "memory of ", a.memory_len,
           " positions in sequences of ", a.seq_len);
  RF_CHECK(a.memory_len == 0 || (a.perm == nullptr && a.k != nullptr),
           "a memory needs the original order and separate keys");
}

// The segments of each launch: as many as fit the scratch budget, at least one.
int64_t segments_per_group(const ChunkedAttentionArgs& a) {
  const int64_t bytes = chunked_attention_scratch_per_segment(a) * int64_t{sizeof(float)};
  return std::max<int64_t>(1, std::min(a.batch * a.heads, a.scratch_budget_bytes / bytes));
}

// The parameters of segments [first, first + count) that come from the arguments alone: the
// inputs and settings, no per-slot scratch.
ChunkAttentionParams segment_params(const ChunkedAttentionArgs& a, int64_t first, int64_t count) {
  ChunkAttentionParams p;
  p.layout = layout_of(a);
  const int64_t n = p.layout.n_slots;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.ld = a.ld;
  p.perm = a.perm ? a.perm + first * n : nullptr;
  p.heads = a.heads;
  p.d = a.d;
  p.batch = a.batch;
  p.memory_len = a.memory_len;
  p.first_segment = first;
  p.segments = count;
  p.self_mask = a.k == nullptr;
  p.key_scale = a.key_scale;
  p.dropout = a.dropout;
  p.bf16_products = a.bf16_products;
  p.rel_scores = a.rel_scores;
  p.rel_len = a.rel_len;
  p.max_distance = a.max_distance;
  p.dropout.seq_len = n;
  p.dropout.cols = p.layout.window();
  p.dropout.row_offset = 0;
  return p;
}

// Shared QK: each position's key scale, for every segment in one launch before the groups (null
// for separate keys). One launch over all heads lets the CPU read the query rows whole and in
// order (kernels/cpu/flat_loops.h): in the reference model's 64K-token bf16 step the scales took
// 101.6 ms in 48 launches of one head each, 48.8 ms in 12 of all four (step_bench --profile-ops;
// 4.5 -> 2.5 ms at 4K, where one launch had all four heads already).
const float* shared_key_scales(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& a) {
  if (a.k != nullptr) return nullptr;
  const int64_t segments = a.batch * a.heads;
  float* scales = ws.floats("attn.key_scales", segments * a.seq_len);
  ex.run(segments * a.seq_len, KeyNormScales{segment_params(a, 0, segments), scales});
  return scales;
}

// The parameters of segments [first, first + count), with their per-slot scratch.
ChunkAttentionParams group_params(Workspace& ws, const ChunkedAttentionArgs& a, int64_t first,
                                  int64_t count, const float* key_scales, bool backward) {
  ChunkAttentionParams p = segment_params(a, first, count);
  const int64_t n = p.layout.n_slots, slots = count * n;
  if (a.kept_slots) {  // [all slots, d] outputs, then [all slots] maxima, then log-sums
    const int64_t all = a.batch * a.heads * n, from = first * n;
    p.o = a.kept_slots + from * a.d;
    p.row_max = a.kept_slots + all * a.d + from;
    p.row_log_sum = a.kept_slots + all * (a.d + 1) + from;
  } else {
    p.o = ws.floats("attn.o", slots * a.d);
    p.row_max = ws.floats("attn.row_max", slots);
    p.row_log_sum = ws.floats("attn.row_log_sum", slots);
  }
  if (key_scales) p.key_scales = key_scales + first * a.seq_len;
  if (backward) {
    p.delta = ws.floats("attn.delta", slots);
    p.dlse = ws.floats("attn.dlse", slots);
    p.dq = ws.floats("attn.dq", slots * a.d);
    p.dk = ws.floats("attn.dk", slots * a.d);
    p.dv = ws.floats("attn.dv", slots * a.d);
  }
  return p;
}

// The inverse permutations of the group's segments (null: the original order).
const int32_t* group_undo(const ChunkAttentionParams& p, const ChunkedAttentionArgs& a) {
  return a.undo ? a.undo + p.first_segment * p.layout.n_slots : nullptr;
}

// Forward of one group: O and the statistics per slot (unless `kept` has them), then the rounds
// combined into `out`.
void forward_group(Executor& ex, const ChunkAttentionParams& p, const ChunkedAttentionArgs& a,
                   const ProductOperand& out, int64_t ldo, bool kept = false) {
  if (!kept) ex.chunk_attention(ChunkAttentionPass::kForward, p);
  if (!out.fp32 && !out.bf16) return;
  CombineRounds combine{};
  combine.p = p;
  combine.undo = group_undo(p, a);
  combine.n_rounds = a.n_rounds;
  combine.out = out.fp32;
  combine.out_bf16 = out.bf16;
  combine.ldo = ldo;
  ex.run(p.segments * p.query_len(), combine);
}

void check_output(const Executor& ex, const ProductOperand& out) {
  RF_CHECK(!(out.fp32 && out.bf16), "the attention output is fp32 or bf16, not both");
  RF_CHECK(!out.bf16 || ex.gemm_takes_bf16_operands(),
           "a bf16 attention output on an executor whose products do not take bf16 operands");
}

}  // namespace

int64_t chunked_attention_kept_floats(const ChunkedAttentionArgs& a) {
  return a.batch * a.heads * a.n_rounds * a.seq_len * (a.d + 2);
}

int64_t chunked_attention_scratch_per_segment(const ChunkedAttentionArgs& a) {
  const int64_t n = a.n_rounds * a.seq_len;
  return n * (4 * a.d + 4) + a.seq_len;  // o, dq, dk, dv; 4 statistics; its key scales
}

void chunked_attention_forward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& a,
                               float* out, int64_t ldo) {
  chunked_attention_forward(ex, ws, a, ProductOperand{out, nullptr}, ldo);
}

void chunked_attention_forward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& a,
                               const ProductOperand& out, int64_t ldo) {
  const ScopedLauncherTimer timer(ex, "attention");
  check_args(a);
  check_output(ex, out);
  const int64_t total = a.batch * a.heads, group = segments_per_group(a);
  const float* key_scales = shared_key_scales(ex, ws, a);
  for (int64_t first = 0; first < total; first += group) {
    const int64_t count = std::min(group, total - first);
    forward_group(ex, group_params(ws, a, first, count, key_scales, false), a, out, ldo);
  }
}

void chunked_attention_backward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& a,
                                const float* dout, int64_t lddo, const ChunkedAttentionGrads& g,
                                float* out, int64_t ldo) {
  chunked_attention_backward(ex, ws, a, dout, lddo, g, ProductOperand{out, nullptr}, ldo);
}

void chunked_attention_backward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& a,
                                const float* dout, int64_t lddo, const ChunkedAttentionGrads& g,
                                const ProductOperand& out, int64_t ldo) {
  const ScopedLauncherTimer timer(ex, "attention");
  check_args(a);
  check_output(ex, out);
  RF_CHECK((!g.dq_bf16 && !g.dk_bf16 && !g.dv_bf16) || ex.gemm_takes_bf16_operands(),
           "bf16 attention gradients on an executor whose products do not take bf16 operands");
  RF_CHECK((a.rel_scores == nullptr) == (g.rel_grads == nullptr),
           "relative scores and their gradient go together");
  // The query-gradient pass adds dS of each (query, distance) it meets: the rest stays 0.
  if (g.rel_grads)
    fill(ex, g.rel_grads, a.batch * a.heads * (a.seq_len - a.memory_len) * a.rel_len, 0.0f);
  const int64_t total = a.batch * a.heads, group = segments_per_group(a);
  const float* key_scales = shared_key_scales(ex, ws, a);
  for (int64_t first = 0; first < total; first += group) {
    const int64_t count = std::min(group, total - first);
    ChunkAttentionParams p = group_params(ws, a, first, count, key_scales, true);
    p.rel_grads = g.rel_grads;
    const int32_t* undo = group_undo(p, a);
    forward_group(ex, p, a, out, ldo, a.kept_slots != nullptr);
    CombineRoundsBackward combine{};
    combine.p = p;
    combine.undo = undo;
    combine.n_rounds = a.n_rounds;
    combine.dout = dout;
    combine.lddo = lddo;
    ex.run(count * p.query_len(), combine);
    ex.chunk_attention(ChunkAttentionPass::kGradients, p);
    UngatherAttentionGrads ungather{};
    ungather.p = p;
    ungather.undo = undo;
    ungather.n_rounds = a.n_rounds;
    ungather.dq = g.dq;
    ungather.dk = g.dk;
    ungather.dv = g.dv;
    ungather.ldg = g.ld;
    ungather.bf16.dq = g.dq_bf16;
    ungather.bf16.dk = g.dk_bf16;
    ungather.bf16.dv = g.dv_bf16;
    ex.run(count * a.seq_len, ungather);
  }
}

}  // namespace rf
