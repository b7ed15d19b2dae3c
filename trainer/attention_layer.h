// One attention sublayer of the Reformer: projections, LSH / local / dense attention over all
// (example, head) pairs at once, and the output projection. LSH attention shares queries and keys
// (one projection w_qk); local and dense attention have separate w_q and w_k.
#pragma once

#include <optional>

#include "kernels/chunked_attention.h"
#include "kernels/lsh_buckets.h"
#include "trainer/config.h"
#include "trainer/generation_cache.h"
#include "trainer/params.h"
#include "trainer/relative_positions.h"
#include "trainer/step_context.h"

namespace rf {

class AttentionLayer {
 public:
  AttentionLayer(ParamStore& store, const Config& cfg, int layer, const std::string& prefix);

  AttentionKind kind() const { return kind_; }
  // Hash rounds from now on (evaluation may use more than training; no parameter depends on it).
  void set_n_hashes(int64_t n_hashes) {
    if (kind_ == AttentionKind::kLsh) n_hashes_ = n_hashes;
  }
  // int32 bucket ids this layer stores per micro-batch for its backward pass (0 unless LSH).
  int64_t bucket_count(int64_t batch, int64_t seq_len) const;

  // out [rows, d_model] (+|-)= Attention(xn [rows, d_model]), as `write` says, rows =
  // step.rows(). xn is read by products only (fp32, or bf16 where the executor takes bf16
  // operands). LSH hashes into `buckets` [batch, heads, n_hashes, seq_len], or with reuse_buckets
  // takes them as given (held fixed).
  //
  // With memory_len M > 0 (Transformer-XL's memory) each example's attention also sees M
  // positions before its segment, as keys and values only: xn then holds the segment's rows
  // (step.rows() of them, first) followed by the memory's ([batch * M, d_model], example by
  // example), and the queries, out and dout have the segment's rows only. LSH hashes and sorts
  // the memory's positions with the segment's (buckets then [batch, heads, n_hashes, seq_len +
  // M]); the memory's queries run too and their outputs are dropped.
  //
  // With kept_slots (kept_floats() floats) the attention's per-slot outputs and statistics and
  // its output stay there for a backward of the same micro-batch (model.recompute: none).
  void forward(Kit& kit, ParamStore& p, const StepContext& step, MatrixView xn, float* out,
               Write write, int32_t* buckets, bool reuse_buckets, int64_t memory_len = 0,
               float* kept_slots = nullptr) const;
  // dxn = dL/dxn (xn's rows: with a memory, its rows too) and parameter gradients +=, for the
  // output gradient dout. LSH uses the bucket ids the forward pass stored: re-hashing the
  // reconstructed input could flip buckets. When `out` is not null the recomputed forward output
  // is written to it as `write` says (the reversible rebuild takes it away from the residual
  // stream). With kept_slots from this micro-batch's forward, the projections, the attention
  // pass and the rounds' combination are not run again (the backward writes the projections'
  // gradients over them). dout_bf16, when not null, holds dout rounded to bf16 for the products
  // (an executor whose products take bf16 operands).
  void backward(Kit& kit, ParamStore& p, const StepContext& step, MatrixView xn, const float* dout,
                float* dxn, const int32_t* buckets, float* out, Write write, int64_t memory_len = 0,
                float* kept_slots = nullptr, const uint16_t* dout_bf16 = nullptr) const;
  // Floats of the kept_slots of a micro-batch: the attention's per-slot state, its output and the
  // projections (KeptLayout).
  int64_t kept_floats(const StepContext& step, int64_t memory_len = 0) const;

  // Cached generation and evaluation. prepare_cache() sizes this layer's `layer` of a cache of
  // `capacity` rows; forward_cached() writes the keys and values of xn.rows new positions (xn,
  // their normalised inputs) at the context's positions cache.len .. into it, and adds their
  // attention over the context's positions 0 .. to out [rows, d_model]. Dense and local attention
  // give what the uncached pass gives; LSH has no exact cache (every new key moves the chunk
  // boundaries of the sorted order) and fixes each position's windows when it arrives instead
  // (trainer/lsh_generation_windows.h), so callers opt into it.
  void prepare_cache(Kit& kit, ParamStore& p, int64_t capacity,
                     GenerationCache::Layer& layer) const;
  void forward_cached(Kit& kit, ParamStore& p, MatrixView xn, const GenerationCache& cache,
                      GenerationCache::Layer& layer, float* out) const;

 private:
  // q (the shared qk for LSH) [query_rows, heads * d_head] of xn's first query_rows rows, and k
  // (null for LSH) and v [xn.rows, heads * d_head] of all its rows, in the workspace.
  struct Projections {
    float* q;
    float* k;
    float* v;
    RelativePositionTerm::Prepared relative;  // with relative positions: the attention's queries
  };
  // (Into the buffers `into` names, when given.)
  Projections project(Kit& kit, ParamStore& p, int64_t query_rows, MatrixView xn,
                      const Projections* into = nullptr) const;
  // Where kept_slots holds what the forward keeps: the attention's per-slot state (from 0), then
  // its output (heads), the queries, the keys (not for LSH) and the values, in floats.
  struct KeptLayout {
    int64_t heads = 0, q = 0, k = 0, v = 0, total = 0;
  };
  KeptLayout kept_layout(const StepContext& step, int64_t memory_len) const;
  // The projections' places in kept_slots.
  Projections kept_projections(float* kept_slots, const KeptLayout& layout) const;
  // LSH: buckets [step.batch, heads, n_hashes, step.seq_len] of the shared queries qk
  // [step.rows(), heads * d_head], with the step's rotations.
  void hash(Kit& kit, const StepContext& step, const float* qk, int32_t* buckets) const;
  // forward_cached() of an LSH layer.
  void forward_cached_lsh(Kit& kit, ParamStore& p, MatrixView xn, const GenerationCache& cache,
                          GenerationCache::Layer& layer, float* out) const;
  // The arguments of the attention over all heads; LSH sorts its slots by the buckets first.
  ChunkedAttentionArgs attention_args(Kit& kit, const StepContext& step, const Projections& pr,
                                      const int32_t* buckets, int64_t memory_len = 0) const;
  // LSH with a memory (forward, backward above): the attention over each example's memory and
  // segment as one sequence of M + S positions (sequence order), from the projections pr of xn's
  // rows (the shared queries of all of them); the segment's outputs go to `heads`. The backward
  // writes the gradients of pr's rows to g.dq and g.dv (fp32) and, when `recomputed` is set, the
  // recomputed output there.
  void lsh_forward_with_memory(Kit& kit, const StepContext& step, const Projections& pr,
                               int32_t* buckets, bool reuse_buckets, int64_t memory_len,
                               float* kept_slots, const ProductOperand& heads) const;
  void lsh_backward_with_memory(Kit& kit, const StepContext& step, const Projections& pr,
                                const float* dheads, const ChunkedAttentionGrads& g,
                                const int32_t* buckets, int64_t memory_len, float* kept_slots,
                                const ProductOperand& recomputed) const;
  // The step of that one sequence: seq_len + memory_len positions per example.
  static StepContext sequence_step(const StepContext& step, int64_t memory_len);
  // Distances the attention's windows span (relative positions): the sequence for dense
  // attention, two chunks for local attention.
  int64_t relative_distances(int64_t seq_len) const;

  AttentionKind kind_;
  int layer_;
  int64_t d_model_, n_heads_, d_head_;
  int64_t n_hashes_ = 1, bucket_size_ = 0, local_chunk_ = 0;
  BucketFactors factors_;
  double attention_dropout_ = 0.0;
  int w_q_ = -1, w_k_ = -1, w_v_ = -1, w_o_ = -1;  // w_q_ is w_qk for LSH; w_k_ unused then
  std::optional<RelativePositionTerm> relative_;   // model.position = relative
};

}  // namespace rf
