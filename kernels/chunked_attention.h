// Launchers of fused chunked attention for all (example, head) segments of a layer: LSH attention
// (sorted by bucket, shared QK, several hash rounds), local attention (original order, one chunk of
// look-back) and dense attention (one chunk holding the sequence) are the same passes with
// different arguments (kernels/ops/chunk_attention.h describes them). Per slot only the output and
// two softmax statistics are stored; the probabilities are recomputed, never written.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/linear.h"

namespace rf {

struct ChunkedAttentionArgs {
  // [batch * seq_len, ld] row-major; head h's d columns start at h * d. k null: shared QK (LSH),
  // the keys are the queries scaled to unit length and a query meeting itself is masked. With
  // memory_len, q has the segment rows only and k, v the segment rows then the memory rows (below).
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld = 0;
  // [batch * heads, n_rounds * seq_len]: sorted slot -> r * seq_len + t, and its inverse; null for
  // the original order (local and dense attention, one round).
  const int32_t* perm = nullptr;
  const int32_t* undo = nullptr;
  int64_t batch = 1, heads = 1, seq_len = 0, d = 0;
  int64_t n_rounds = 1;    // hash rounds (1 unless LSH)
  int64_t chunk = 0;       // slots per chunk; divides n_rounds * seq_len
  int64_t lookback = 0;    // chunks before a chunk that its queries also see: 0 or 1
  float key_scale = 1.0f;  // separate keys are multiplied by this (1 / sqrt(d))
  // Relative positions (Transformer-XL; the original order only): [heads, batch * seq_len,
  // rel_len] (head-major), element (b * seq_len + t, dist) of head h added to the score of query
  // position t and key position t - dist (scaled as the scores are; distances >= rel_len add
  // nothing).
  const float* rel_scores = nullptr;
  int64_t rel_len = 0;
  int64_t max_distance = -1;  // keys further back than this are masked (-1: none)
  // Transformer-XL's memory (separate keys, the original order): the first memory_len of each
  // sequence's seq_len positions are keys and values only, so queries come from the segment
  // (seq_len - memory_len positions) only. Query-side rows (q, out, dout, dq, rel_scores) are
  // [batch * (seq_len - memory_len), ..]; key-side rows (k, v, dk, dv) are those segment rows
  // followed by the memory rows of every example, [batch * memory_len, ..] (layout:
  // kernels/ops/chunk_attention.h, ChunkAttentionParams).
  int64_t memory_len = 0;
  // Attention dropout on the probabilities. The stream's head and the example are set per
  // segment: element (slot j, window index w) of (b, h) draws head h, example example_base + b,
  // element j * window + w; seq_len and cols are set by the launcher.
  DropoutMask dropout;
  // The reference functors round every operand of the window's products to bf16 (the selftest's
  // naive bf16 reference; tiled kernels are not used then).
  bool bf16_products = false;
  // Per-slot scratch stays below this many bytes: segments run in groups that fit (at least one
  // per group). A 64K-token sequence with 2 hash rounds needs 136 MB per head, 4K tokens 8.5 MB.
  int64_t scratch_budget_bytes = int64_t{256} << 20;
  // The forward's per-slot outputs and statistics of every segment, kept between the passes
  // (chunked_attention_kept_floats() floats; null: scratch per group). The forward writes them
  // here, and a backward given them reads them instead of running the forward pass again. That
  // backward writes over them (each slot's output becomes its output gradient): they serve one
  // backward, of the forward that wrote them. (With a memory the memory's slots, keys only, are
  // held but never written.)
  float* kept_slots = nullptr;
};

// out [batch * (seq_len - memory_len), ldo] (head h at column h * d) = attention output.
void chunked_attention_forward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& args,
                               float* out, int64_t ldo);

// The same, into an output that only products read (kernels/linear.h): its fp32 rows, or on an
// executor whose products take bf16 operands its bf16 rows (the bits the products would round
// the fp32 rows to); ldo apart. Neither set: no output.
void chunked_attention_forward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& args,
                               const ProductOperand& out, int64_t ldo);

// The gradients may be written over the inputs (dq = q, dk = k, dv = v): every pass that reads an
// input row runs before the one that writes its gradient.
struct ChunkedAttentionGrads {
  float* dq = nullptr;  // query-side rows, ld apart: query gradient (shared QK: query and key)
  float* dk = nullptr;  // key-side rows, ld apart; unused for shared QK
  float* dv = nullptr;  // key-side rows, ld apart
  int64_t ld = 0;
  // Where set (only on an executor whose products take bf16 operands, gemm_takes_bf16_operands),
  // that gradient goes rounded to bf16 into these rows (ld apart) instead of its fp32 rows, which
  // are then not written: for gradients that only products read.
  uint16_t* dq_bf16 = nullptr;
  uint16_t* dk_bf16 = nullptr;
  uint16_t* dv_bf16 = nullptr;
  // With rel_scores: their gradient, in their layout (written; 0 for pairs no window holds).
  float* rel_grads = nullptr;
};

// Writes the gradients of q, k and v for the output gradient dout (query-side rows, lddo apart;
// they are overwritten, not accumulated). Recomputes the forward pass on the way (unless
// args.kept_slots holds the forward's), and writes its output to `out` when not null (the
// reversible backward needs it).
void chunked_attention_backward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& args,
                                const float* dout, int64_t lddo, const ChunkedAttentionGrads& grads,
                                float* out, int64_t ldo);
void chunked_attention_backward(Executor& ex, Workspace& ws, const ChunkedAttentionArgs& args,
                                const float* dout, int64_t lddo, const ChunkedAttentionGrads& grads,
                                const ProductOperand& out, int64_t ldo);

// Floats of ChunkedAttentionArgs::kept_slots: each slot's output and two statistics.
int64_t chunked_attention_kept_floats(const ChunkedAttentionArgs& args);

// Floats of per-slot scratch the launchers keep for one segment (for memory estimates).
int64_t chunked_attention_scratch_per_segment(const ChunkedAttentionArgs& args);

}  // namespace rf
