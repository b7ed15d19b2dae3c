#include "trainer/attention_layer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cached_attention.h"
#include "kernels/linear.h"

namespace rf {

AttentionLayer::AttentionLayer(ParamStore& store, const Config& cfg, int layer,
                               const std::string& prefix)
    : kind_(cfg.attention_of_layer(layer)),
      layer_(layer),
      d_model_(cfg.model.d_model),
      n_heads_(cfg.model.n_heads),
      d_head_(cfg.model.d_head),
      attention_dropout_(cfg.model.attention_dropout) {
  const int64_t hd = n_heads_ * d_head_;
  const ParamInit in_init{InitKind::kGlorotUniform, 1.0f, d_model_, hd};
  const ParamInit out_init{InitKind::kGlorotUniform, 1.0f, hd, d_model_};
  if (kind_ == AttentionKind::kLsh) {
    n_hashes_ = cfg.lsh.n_hashes;
    bucket_size_ = cfg.lsh.bucket_size;
    const std::vector<int64_t> f = cfg.bucket_factors();
    RF_CHECK(!f.empty() && f.size() <= static_cast<size_t>(kMaxBucketFactors));
    factors_.count = static_cast<int>(f.size());
    for (size_t i = 0; i < f.size(); ++i) factors_.size[i] = static_cast<int>(f[i]);
    w_q_ = store.add(prefix + ".w_qk", {d_model_, hd}, in_init, true);
  } else {
    local_chunk_ = kind_ == AttentionKind::kLocal ? cfg.lsh.local_chunk : 0;
    w_q_ = store.add(prefix + ".w_q", {d_model_, hd}, in_init, true);
    w_k_ = store.add(prefix + ".w_k", {d_model_, hd}, in_init, true);
  }
  w_v_ = store.add(prefix + ".w_v", {d_model_, hd}, in_init, true);
  w_o_ = store.add(prefix + ".w_o", {hd, d_model_}, out_init, true);
  if (cfg.layer_has_relative_term(layer)) relative_.emplace(store, cfg, prefix);
}

int64_t AttentionLayer::relative_distances(int64_t seq_len) const {
  return kind_ == AttentionKind::kLocal ? std::min(2 * local_chunk_, seq_len) : seq_len;
}

int64_t AttentionLayer::bucket_count(int64_t batch, int64_t seq_len) const {
  return kind_ == AttentionKind::kLsh ? batch * n_heads_ * n_hashes_ * seq_len : 0;
}

AttentionLayer::KeptLayout AttentionLayer::kept_layout(const StepContext& step,
                                                       int64_t memory_len) const {
  ChunkedAttentionArgs a;
  a.batch = step.batch;
  a.heads = n_heads_;
  a.n_rounds = kind_ == AttentionKind::kLsh ? n_hashes_ : 1;
  a.seq_len = step.seq_len + memory_len;
  a.d = d_head_;
  const int64_t hd = n_heads_ * d_head_, rows = step.rows();
  const int64_t key_rows = rows + step.batch * memory_len;
  KeptLayout L;
  // (LSH's shared queries are its keys: with a memory, the memory's rows too)
  const int64_t q_rows = kind_ == AttentionKind::kLsh ? key_rows : rows;
  L.heads = chunked_attention_kept_floats(a);
  L.q = L.heads + rows * hd;
  L.k = L.q + q_rows * hd;
  L.v = L.k + (kind_ == AttentionKind::kLsh ? 0 : key_rows * hd);
  L.total = L.v + key_rows * hd;
  return L;
}

int64_t AttentionLayer::kept_floats(const StepContext& step, int64_t memory_len) const {
  return kept_layout(step, memory_len).total;
}

AttentionLayer::Projections AttentionLayer::kept_projections(float* kept_slots,
                                                             const KeptLayout& L) const {
  Projections pr{};
  pr.q = kept_slots + L.q;
  pr.k = kind_ == AttentionKind::kLsh ? nullptr : kept_slots + L.k;
  pr.v = kept_slots + L.v;
  return pr;
}

ChunkedAttentionArgs AttentionLayer::attention_args(Kit& kit, const StepContext& step,
                                                    const Projections& pr, const int32_t* buckets,
                                                    int64_t memory_len) const {
  const int64_t T = step.seq_len + memory_len;  // (positions each query may see)
  ChunkedAttentionArgs a;
  a.q = pr.relative.queries ? pr.relative.queries : pr.q;
  a.rel_scores = pr.relative.scores;
  a.rel_len = pr.relative.distances;
  a.k = pr.k;
  a.v = pr.v;
  a.ld = n_heads_ * d_head_;
  a.batch = step.batch;
  a.heads = n_heads_;
  a.seq_len = T;
  a.d = d_head_;
  a.memory_len = memory_len;
  if (kind_ == AttentionKind::kLsh) {
    RF_CHECK(memory_len == 0,
             "LSH takes a memory only in sequence order (lsh_forward_with_memory), not as keys");
    const int64_t n = bucket_count(step.batch, T);
    int32_t* perm = kit.ws.ints("lsh.perm", n);
    int32_t* undo = kit.ws.ints("lsh.undo", n);
    LshSortArgs sort;
    sort.buckets = buckets;
    sort.perm = perm;
    sort.undo = undo;
    sort.segments = step.batch * n_heads_;
    sort.seq_len = T;
    sort.n_rounds = n_hashes_;
    sort.total_buckets = n_hashes_ * factors_.n_buckets();
    lsh_sort(kit.ex, kit.ws, sort);
    a.perm = perm;
    a.undo = undo;
    a.n_rounds = n_hashes_;
    a.chunk = bucket_size_;
    a.lookback = 1;
  } else {
    a.chunk = kind_ == AttentionKind::kLocal ? local_chunk_ : T;
    a.lookback = kind_ == AttentionKind::kLocal ? 1 : 0;
    a.key_scale = 1.0f / std::sqrt(static_cast<float>(d_head_));
  }
  a.max_distance = step.max_distance;
  a.dropout = step.dropout(RngPurpose::kAttentionDropout, static_cast<uint32_t>(layer_),
                           attention_dropout_, 1);
  return a;
}

void AttentionLayer::hash(Kit& kit, const StepContext& step, const float* qk,
                          int32_t* buckets) const {
  LshHashArgs a;
  a.qk = qk;
  a.ld = n_heads_ * d_head_;
  a.batch = step.batch;
  a.heads = n_heads_;
  a.seq_len = step.seq_len;
  a.d = d_head_;
  a.n_rounds = n_hashes_;
  a.factors = factors_;
  a.rotation = step.stream(RngPurpose::kRotation, static_cast<uint32_t>(layer_), 0, 0);
  a.buckets = buckets;
  lsh_hash(kit.ex, kit.ws, a);
}

AttentionLayer::Projections AttentionLayer::project(Kit& kit, ParamStore& p, int64_t query_rows,
                                                    MatrixView x, const Projections* into) const {
  const int64_t hd = n_heads_ * d_head_, rows = x.rows;
  Projections pr;
  if (into) {
    pr = *into;
  } else {
    pr.q = kit.ws.floats("layer.q", query_rows * hd);
    pr.k = kind_ == AttentionKind::kLsh ? nullptr : kit.ws.floats("layer.k", rows * hd);
    pr.v = kit.ws.floats("layer.v", rows * hd);
  }
  RF_CHECK(x.rows >= query_rows && x.cols == d_model_, "attention input [", x.rows, ", ", x.cols,
           "], expected [", query_rows, "+, ", d_model_, "]");
  const GemmOperandReuse reuse(kit.ex);  // (x is read by every projection: rounded once at bf16)
  // (the query rows come first)
  linear_forward(kit.ex, top_rows(x, query_rows), p.weight(w_q_), matrix(pr.q, query_rows, hd));
  if (pr.k) linear_forward(kit.ex, x, p.weight(w_k_), matrix(pr.k, rows, hd));
  linear_forward(kit.ex, x, p.weight(w_v_), matrix(pr.v, rows, hd));
  return pr;
}

namespace {

// An LSH layer with Transformer-XL's memory hashes and sorts each example's memory and segment
// positions together, as one sequence of M + S positions (memory first: they come before the
// segment's), so its inputs and outputs move between the layouts of ChunkedAttentionArgs (the
// segment rows of every example, then the memory rows of every example) and sequence order
// (example b's position t at row b * (M + S) + t). Rows of `width` values.
struct MemoryRows {
  int64_t batch = 0, segment = 0, memory = 0, width = 0;
};

// Which way rows move between the two layouts.
enum class RowOrder { kToSequence, kFromSequence };

// Copies rows of elem_bytes-byte values between memory-layout rows (`layout`) and sequence rows
// (`sequence`), in the direction `order` says: the segment's rows, and with `memory` the memory's
// too (the others are left as they are).
void move_rows(Executor& ex, const MemoryRows& r, RowOrder order, const void* from, void* to,
               size_t elem_bytes, bool memory) {
  const size_t rb = static_cast<size_t>(r.width) * elem_bytes;
  const int64_t T = r.memory + r.segment;
  auto copy = [&](size_t layout_row, size_t sequence_row, int64_t rows) {
    const size_t layout_at = layout_row * rb, sequence_at = sequence_row * rb;
    if (order == RowOrder::kToSequence)
      ex.copy(static_cast<char*>(to) + sequence_at, static_cast<const char*>(from) + layout_at,
              static_cast<size_t>(rows) * rb);
    else
      ex.copy(static_cast<char*>(to) + layout_at, static_cast<const char*>(from) + sequence_at,
              static_cast<size_t>(rows) * rb);
  };
  for (int64_t b = 0; b < r.batch; ++b) {
    if (memory)
      copy(static_cast<size_t>(r.batch * r.segment + b * r.memory), static_cast<size_t>(b * T),
           r.memory);
    copy(static_cast<size_t>(b * r.segment), static_cast<size_t>(b * T + r.memory), r.segment);
  }
}

// A buffer of n values in sequence order for the attention output `like` (fp32 or bf16, as it).
ProductOperand sequence_output(Kit& kit, const ProductOperand& like, int64_t n) {
  if (like.bf16)
    return ProductOperand{nullptr,
                          kit.ws.get<uint16_t>("layer.memory_heads16", static_cast<size_t>(n))};
  if (like.fp32) return ProductOperand{kit.ws.floats("layer.memory_heads", n), nullptr};
  return ProductOperand{};
}

// Sequence-order copies (workspace, `values` floats each) of the shared query-keys qk and the
// values v of the memory layout's rows, memory included.
struct SequenceInputs {
  float* qk;
  float* v;
};
SequenceInputs sequence_inputs(Kit& kit, const MemoryRows& r, const float* qk, const float* v,
                               int64_t values) {
  const SequenceInputs in{kit.ws.floats("layer.memory_qk", values),
                          kit.ws.floats("layer.memory_v", values)};
  move_rows(kit.ex, r, RowOrder::kToSequence, qk, in.qk, sizeof(float), true);
  move_rows(kit.ex, r, RowOrder::kToSequence, v, in.v, sizeof(float), true);
  return in;
}

// The segment's rows of an output in sequence order (`from`) to its query-side rows (`to`, of the
// same type).
void segment_outputs(Executor& ex, const MemoryRows& r, const ProductOperand& from,
                     const ProductOperand& to) {
  if (to.bf16)
    move_rows(ex, r, RowOrder::kFromSequence, from.bf16, to.bf16, sizeof(uint16_t), false);
  else
    move_rows(ex, r, RowOrder::kFromSequence, from.fp32, to.fp32, sizeof(float), false);
}

// The heads' output [rows, hd]: in `kept` where the forward keeps it (fp32), otherwise in the
// workspace, in bf16 where the products take bf16 operands (only the output projection's products
// read it).
ProductOperand attention_output(Kit& kit, int64_t rows, int64_t hd, float* kept) {
  if (kept) return ProductOperand{kept, nullptr};
  return product_operand(kit.ex, kit.ws, "layer.heads", "layer.heads_bf16", rows * hd);
}

}  // namespace

void AttentionLayer::forward(Kit& kit, ParamStore& p, const StepContext& step, MatrixView xn,
                             float* out, Write write, int32_t* buckets, bool reuse_buckets,
                             int64_t memory_len, float* kept_slots) const {
  const int64_t rows = step.rows(), hd = n_heads_ * d_head_;
  RF_CHECK(xn.rows == rows + step.batch * memory_len);
  const KeptLayout L = kept_layout(step, memory_len);
  const Projections kept = kept_slots ? kept_projections(kept_slots, L) : Projections{};
  const bool lsh_memory = kind_ == AttentionKind::kLsh && memory_len > 0;
  Projections pr = project(kit, p, lsh_memory ? xn.rows : rows, xn, kept_slots ? &kept : nullptr);
  if (relative_)
    pr.relative =
        relative_->forward(kit, p, step, pr.q, relative_distances(step.seq_len + memory_len));
  const ProductOperand heads =
      attention_output(kit, rows, hd, kept_slots ? kept_slots + L.heads : nullptr);
  if (lsh_memory) {
    lsh_forward_with_memory(kit, step, pr, buckets, reuse_buckets, memory_len, kept_slots, heads);
  } else {
    if (kind_ == AttentionKind::kLsh && !reuse_buckets) hash(kit, step, pr.q, buckets);
    ChunkedAttentionArgs args = attention_args(kit, step, pr, buckets, memory_len);
    args.kept_slots = kept_slots;
    chunked_attention_forward(kit.ex, kit.ws, args, heads, hd);
  }
  linear_forward(kit.ex, heads.view(rows, hd), p.weight(w_o_), matrix(out, rows, d_model_), write);
}

void AttentionLayer::backward(Kit& kit, ParamStore& p, const StepContext& step, MatrixView xn,
                              const float* dout, float* dxn, const int32_t* buckets, float* out,
                              Write write, int64_t memory_len, float* kept_slots,
                              const uint16_t* dout_bf16) const {
  const int64_t rows = step.rows(), hd = n_heads_ * d_head_, D = d_model_;
  const MatrixView dout_view = dout_bf16 ? bf16_matrix(dout_bf16, rows, D) : matrix(dout, rows, D);
  const int64_t key_rows = xn.rows;  // (with a memory, more than the queries' rows)
  RF_CHECK(key_rows == rows + step.batch * memory_len);
  // xn, dout, heads and the weights are read by two or more products each (rounded once at
  // bf16); the attention pass writes only memory no product has read before it.
  const GemmOperandReuse reuse(kit.ex);
  // The projections: kept by the forward, or computed again.
  const KeptLayout L = kept_layout(step, memory_len);
  const bool lsh_memory = kind_ == AttentionKind::kLsh && memory_len > 0;
  Projections pr = kept_slots ? kept_projections(kept_slots, L)
                              : project(kit, p, lsh_memory ? key_rows : rows, xn);
  if (relative_)
    pr.relative =
        relative_->forward(kit, p, step, pr.q, relative_distances(step.seq_len + memory_len));
  // dheads [rows, hd] = dout [rows, D] . w_o^T
  float* dheads = kit.ws.floats("layer.dheads", rows * hd);
  linear_input_grad(kit.ex, dout_view, p.weight(w_o_), matrix(dheads, rows, hd));
  // The projections' gradients replace them (they are not read after the attention), or, as only
  // the products below read them, go to bf16 rows where the products take bf16 operands (not
  // with relative positions, whose backward adds to the query gradient).
  ChunkedAttentionGrads g;
  g.dq = pr.q;
  g.dk = pr.k;
  g.dv = pr.v;
  g.ld = hd;
  if (kit.ex.gemm_takes_bf16_operands() && !relative_ && !lsh_memory) {
    const auto bf16_rows = [&](std::string_view name, int64_t n) {
      return kit.ws.get<uint16_t>(name, static_cast<size_t>(n * hd));
    };
    g.dq_bf16 = bf16_rows("layer.dq_bf16", rows);
    if (pr.k) g.dk_bf16 = bf16_rows("layer.dk_bf16", key_rows);
    g.dv_bf16 = bf16_rows("layer.dv_bf16", key_rows);
  }
  if (relative_) g.rel_grads = relative_->score_gradient_buffer(kit, step, pr.relative.distances);
  // The attention's output: kept by the forward, or recomputed on the way.
  const ProductOperand heads =
      attention_output(kit, rows, hd, kept_slots ? kept_slots + L.heads : nullptr);
  const ProductOperand recomputed = kept_slots ? ProductOperand{} : heads;
  if (lsh_memory) {
    lsh_backward_with_memory(kit, step, pr, dheads, g, buckets, memory_len, kept_slots, recomputed);
  } else {
    ChunkedAttentionArgs args = attention_args(kit, step, pr, buckets, memory_len);
    args.kept_slots = kept_slots;
    chunked_attention_backward(kit.ex, kit.ws, args, dheads, hd, g, recomputed, hd);
  }
  if (relative_)  // g.dq holds dL/d(q + u): the relative term adds its part and its gradients
    relative_->backward(kit, p, step, g.dq, g.rel_grads, pr.relative.distances);
  if (out)
    linear_forward(kit.ex, heads.view(rows, hd), p.weight(w_o_), matrix(out, rows, D), write);
  linear_weight_grad(kit.ex, heads.view(rows, hd), dout_view, p.weight_grad(w_o_));
  // Inputs: dxn = sum over projections of dX . W^T, dW += xn^T . dX for each projection. The
  // queries' product covers the segment's rows (LSH's shared queries, the memory's too): the
  // memory's start from zero.
  if (key_rows > rows)
    kit.ex.zero(dxn + rows * D, static_cast<size_t>((key_rows - rows) * D) * sizeof(float));
  Write dxn_write = Write::kOverwrite;
  auto input_grad = [&](int w, const float* dproj, const uint16_t* dproj_bf16, int64_t n) {
    const MatrixView dy = dproj_bf16 ? bf16_matrix(dproj_bf16, n, hd) : matrix(dproj, n, hd);
    linear_backward(kit.ex, top_rows(xn, n), p.weight(w), dy, matrix(dxn, n, D), p.weight_grad(w),
                    dxn_write);
    dxn_write = Write::kAccumulate;
  };
  input_grad(w_q_, g.dq, g.dq_bf16, lsh_memory ? key_rows : rows);
  if (g.dk) input_grad(w_k_, g.dk, g.dk_bf16, key_rows);
  input_grad(w_v_, g.dv, g.dv_bf16, key_rows);
}

StepContext AttentionLayer::sequence_step(const StepContext& step, int64_t memory_len) {
  StepContext whole = step;
  whole.seq_len = step.seq_len + memory_len;
  return whole;
}

void AttentionLayer::lsh_forward_with_memory(Kit& kit, const StepContext& step,
                                             const Projections& pr, int32_t* buckets,
                                             bool reuse_buckets, int64_t memory_len,
                                             float* kept_slots, const ProductOperand& heads) const {
  const int64_t hd = n_heads_ * d_head_;
  const StepContext whole = sequence_step(step, memory_len);
  const int64_t n = whole.rows() * hd;
  const MemoryRows r{step.batch, step.seq_len, memory_len, hd};
  const SequenceInputs in = sequence_inputs(kit, r, pr.q, pr.v, n);
  if (!reuse_buckets) hash(kit, whole, in.qk, buckets);
  ChunkedAttentionArgs args =
      attention_args(kit, whole, Projections{in.qk, nullptr, in.v, {}}, buckets);
  args.kept_slots = kept_slots;
  // Every position's output (the memory's queries run too, and are dropped), then the segment's.
  const ProductOperand out = sequence_output(kit, heads, n);
  chunked_attention_forward(kit.ex, kit.ws, args, out, hd);
  segment_outputs(kit.ex, r, out, heads);
}

void AttentionLayer::lsh_backward_with_memory(Kit& kit, const StepContext& step,
                                              const Projections& pr, const float* dheads,
                                              const ChunkedAttentionGrads& g,
                                              const int32_t* buckets, int64_t memory_len,
                                              float* kept_slots,
                                              const ProductOperand& recomputed) const {
  const int64_t hd = n_heads_ * d_head_;
  const StepContext whole = sequence_step(step, memory_len);
  const int64_t n = whole.rows() * hd;
  const MemoryRows r{step.batch, step.seq_len, memory_len, hd};
  const SequenceInputs in = sequence_inputs(kit, r, pr.q, pr.v, n);
  // The memory's queries have no output gradient: their slots add nothing to any gradient.
  float* sequence_dheads = kit.ws.floats("layer.memory_dheads", n);
  kit.ex.zero(sequence_dheads, static_cast<size_t>(n) * sizeof(float));
  move_rows(kit.ex, r, RowOrder::kToSequence, dheads, sequence_dheads, sizeof(float), false);
  ChunkedAttentionArgs args =
      attention_args(kit, whole, Projections{in.qk, nullptr, in.v, {}}, buckets);
  args.kept_slots = kept_slots;
  ChunkedAttentionGrads sequence_grads;  // (over the inputs: the pass reads each row first)
  sequence_grads.dq = in.qk;
  sequence_grads.dv = in.v;
  sequence_grads.ld = hd;
  const ProductOperand out = sequence_output(kit, recomputed, n);
  chunked_attention_backward(kit.ex, kit.ws, args, sequence_dheads, hd, sequence_grads, out, hd);
  move_rows(kit.ex, r, RowOrder::kFromSequence, in.qk, g.dq, sizeof(float), true);
  move_rows(kit.ex, r, RowOrder::kFromSequence, in.v, g.dv, sizeof(float), true);
  if (out.fp32 || out.bf16) segment_outputs(kit.ex, r, out, recomputed);
}

void AttentionLayer::prepare_cache(Kit& kit, ParamStore& p, int64_t capacity,
                                   GenerationCache::Layer& layer) const {
  const size_t size = static_cast<size_t>(capacity * n_heads_ * d_head_);
  if (layer.keys.size() != size) {
    layer.keys = DeviceBuffer<float>(kit.ex, size);
    layer.values = DeviceBuffer<float>(kit.ex, size);
  }
  if (kind_ == AttentionKind::kLsh)
    layer.lsh = LshGenerationWindows(n_heads_, n_hashes_, factors_.n_buckets(), bucket_size_);
  if (!relative_) return;
  layer.rel_len = relative_distances(capacity);
  layer.distances =
      DeviceBuffer<float>(kit.ex, static_cast<size_t>(layer.rel_len) * n_heads_ * d_head_);
  relative_->project_distances(kit, p, layer.rel_len, layer.distances.data());
}

void AttentionLayer::forward_cached(Kit& kit, ParamStore& p, MatrixView xn,
                                    const GenerationCache& cache, GenerationCache::Layer& layer,
                                    float* out) const {
  const int64_t rows = xn.rows, hd = n_heads_ * d_head_, first = cache.len;
  RF_CHECK(xn.cols == d_model_);
  RF_CHECK(cache.start + first + rows <= cache.capacity, "positions ", first, "..",
           first + rows - 1, " beyond the generation cache");
  if (kind_ == AttentionKind::kLsh) {
    forward_cached_lsh(kit, p, xn, cache, layer, out);
    return;
  }
  // The context's rows of this layer's cache: position t is row t of these. The new rows' keys
  // and values go straight there.
  Projections pr;
  pr.q = kit.ws.floats("layer.q", rows * hd);
  pr.k = layer.keys.data() + cache.start * hd;
  pr.v = layer.values.data() + cache.start * hd;
  {
    const GemmOperandReuse reuse(kit.ex);  // (xn is read by every projection)
    linear_forward(kit.ex, xn, p.weight(w_q_), matrix(pr.q, rows, hd));
    linear_forward(kit.ex, xn, p.weight(w_k_), matrix(pr.k + first * hd, rows, hd));
    linear_forward(kit.ex, xn, p.weight(w_v_), matrix(pr.v + first * hd, rows, hd));
  }
  if (relative_)
    pr.relative = relative_->forward_with_distances(kit, p, rows, pr.q, layer.distances.data(),
                                                    layer.rel_len);
  // The attention as the uncached forward pass sets it up for these rows alone.
  StepContext step;
  step.step = kEvalStep;
  step.training = false;
  step.seq_len = rows;
  step.max_distance = cache.max_distance;
  const ChunkedAttentionArgs args = attention_args(kit, step, pr, nullptr);
  float* heads = kit.ws.floats("layer.heads", rows * hd);
  if (first == 0 && rows % args.chunk == 0) {
    // A context's first pass (the prompt) is an ordinary forward over its rows: the fused
    // attention's tiles, which run a long prompt several times faster than a row per query.
    chunked_attention_forward(kit.ex, kit.ws, args, heads, hd);
  } else {
    CachedAttentionParams a;
    a.q = args.q;
    a.k = args.k;
    a.v = args.v;
    a.ld = hd;
    a.heads = n_heads_;
    a.d = d_head_;
    a.first = first;
    a.queries = rows;
    a.chunk = kind_ == AttentionKind::kLocal ? local_chunk_ : 0;
    a.key_scale = args.key_scale;
    a.rel_scores = args.rel_scores;
    a.rel_len = args.rel_len;
    a.max_distance = args.max_distance;
    a.out = heads;
    a.ldo = hd;
    cached_attention_forward(kit.ex, a);
  }
  linear_forward(kit.ex, matrix(heads, rows, hd), p.weight(w_o_), matrix(out, rows, d_model_),
                 Write::kAccumulate);
}

void AttentionLayer::forward_cached_lsh(Kit& kit, ParamStore& p, MatrixView xn,
                                        const GenerationCache& cache, GenerationCache::Layer& layer,
                                        float* out) const {
  const int64_t rows = xn.rows, hd = n_heads_ * d_head_, first = cache.len;
  RF_CHECK(cache.start == 0 && layer.lsh.positions() == first, "LSH windows of ",
           layer.lsh.positions(), " positions for a context of ", first);
  // The new positions' shared queries are their keys: straight into the cache, with the values.
  float* qk = layer.keys.data() + first * hd;
  {
    const GemmOperandReuse reuse(kit.ex);  // (xn is read by both projections)
    linear_forward(kit.ex, xn, p.weight(w_q_), matrix(qk, rows, hd));
    linear_forward(kit.ex, xn, p.weight(w_v_), matrix(layer.values.data() + first * hd, rows, hd));
  }
  // Their buckets with the uncached evaluation pass's rotations (one sequence: example 0).
  StepContext step;
  step.seed = cache.seed;
  step.step = kEvalStep;
  step.training = false;
  step.batch = 1;
  step.seq_len = rows;
  const int64_t per_row = n_heads_ * n_hashes_;
  int32_t* hashed = kit.ws.ints("layer.cached_buckets", per_row * rows);
  hash(kit, step, qk, hashed);
  std::vector<int32_t> buckets(static_cast<size_t>(per_row * rows));  // [heads, rounds, rows]
  kit.ex.download(buckets.data(), hashed, buckets.size() * sizeof(int32_t));
  // Each position's windows over the positions up to it, then its attention over them, in blocks
  // of rows that keep the listed windows to 16 MiB.
  const int64_t W = layer.lsh.window_len();
  const int64_t block = std::clamp<int64_t>((int64_t{1} << 22) / (n_heads_ * W), 1, rows);
  int32_t* listed = kit.ws.ints("layer.cached_windows", block * n_heads_ * W);
  float* heads = kit.ws.floats("layer.heads", rows * hd);
  for (int64_t row0 = 0; row0 < rows; row0 += block) {
    const int64_t n = std::min(block, rows - row0);
    const int32_t* windows = layer.lsh.append(buckets.data() + row0, rows, n);
    kit.ex.upload(listed, windows, static_cast<size_t>(n * n_heads_ * W) * sizeof(int32_t));
    CachedAttentionParams a;
    a.q = qk + row0 * hd;
    a.k = layer.keys.data();
    a.v = layer.values.data();
    a.ld = hd;
    a.heads = n_heads_;
    a.d = d_head_;
    a.first = first + row0;
    a.queries = n;
    a.window = listed;
    a.window_len = W;
    a.shared_qk = true;
    a.out = heads + row0 * hd;
    a.ldo = hd;
    cached_attention_forward(kit.ex, a);
  }
  linear_forward(kit.ex, matrix(heads, rows, hd), p.weight(w_o_), matrix(out, rows, d_model_),
                 Write::kAccumulate);
}

}  // namespace rf
