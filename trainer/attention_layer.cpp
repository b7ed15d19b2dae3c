#include "trainer/attention_layer.h"

#include <cmath>

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
}

int64_t AttentionLayer::bucket_count(int64_t batch, int64_t seq_len) const {
  return kind_ == AttentionKind::kLsh ? batch * n_heads_ * n_hashes_ * seq_len : 0;
}

HeadAttentionSpec AttentionLayer::head_spec(const StepContext& step, int64_t b, int64_t h) const {
  HeadAttentionSpec s;
  const int64_t T = step.seq_len;
  s.d = d_head_;
  if (kind_ == AttentionKind::kLsh) {
    s.layout = {T, n_hashes_ * T, bucket_size_, 1};
    s.n_rounds = n_hashes_;
    s.shared_qk = true;
  } else {
    const int64_t chunk = kind_ == AttentionKind::kLocal ? local_chunk_ : T;
    s.layout = {T, T, chunk, kind_ == AttentionKind::kLocal ? 1 : 0};
    s.key_scale = 1.0f / std::sqrt(static_cast<float>(d_head_));
  }
  StepContext head_step = step;
  head_step.example_base = step.example_base + static_cast<uint32_t>(b);
  head_step.seq_len = s.layout.n_slots;
  s.dropout = head_step.dropout(RngPurpose::kAttentionDropout, static_cast<uint32_t>(layer_),
                                attention_dropout_, s.layout.window());
  s.dropout.stream.head = static_cast<uint32_t>(h);
  return s;
}

AttentionLayer::Projections AttentionLayer::project(Kit& kit, ParamStore& p, int64_t rows,
                                                    const float* xn) const {
  const int64_t hd = n_heads_ * d_head_;
  Projections pr;
  pr.q = kit.ws.floats("layer.q", rows * hd);
  pr.k = kind_ == AttentionKind::kLsh ? nullptr : kit.ws.floats("layer.k", rows * hd);
  pr.v = kit.ws.floats("layer.v", rows * hd);
  const RowMajorGemm proj{false, false, rows, hd, d_model_, d_model_, hd, hd};
  matmul(kit.ex, proj, xn, p.param(w_q_), pr.q);
  if (pr.k) matmul(kit.ex, proj, xn, p.param(w_k_), pr.k);
  matmul(kit.ex, proj, xn, p.param(w_v_), pr.v);
  return pr;
}

void AttentionLayer::sort_buckets(Kit& kit, int64_t batch, int64_t seq_len, const int32_t* buckets,
                                  int32_t** perm, int32_t** undo) const {
  const int64_t n = bucket_count(batch, seq_len);
  *perm = kit.ws.ints("lsh.perm", n);
  *undo = kit.ws.ints("lsh.undo", n);
  const LshHashSpec spec{seq_len, d_head_, n_hashes_, factors_};
  lsh_sort(kit.ex, kit.ws, spec, batch * n_heads_, buckets, *perm, *undo);
}

HeadInputs AttentionLayer::head_inputs(const float* q, const float* k, const float* v,
                                       const int32_t* perm, const int32_t* undo, int64_t seq_len,
                                       int64_t b, int64_t h) const {
  const int64_t hd = n_heads_ * d_head_;
  const int64_t offset = b * seq_len * hd + h * d_head_;
  HeadInputs in;
  in.q = q + offset;
  in.k = k ? k + offset : nullptr;
  in.v = v + offset;
  in.ldq = in.ldk = in.ldv = hd;
  if (perm) {
    const int64_t segment = (b * n_heads_ + h) * n_hashes_ * seq_len;
    in.perm = perm + segment;
    in.undo = undo + segment;
  }
  return in;
}

void AttentionLayer::forward(Kit& kit, ParamStore& p, const StepContext& step, const float* xn,
                             float* out, int32_t* buckets, bool reuse_buckets) const {
  const int64_t rows = step.rows(), hd = n_heads_ * d_head_, T = step.seq_len;
  const bool lsh = kind_ == AttentionKind::kLsh;
  const auto [q, k, v] = project(kit, p, rows, xn);

  int32_t* perm = nullptr;
  int32_t* undo = nullptr;
  if (lsh) {
    if (!reuse_buckets) {
      const LshHashSpec spec{T, d_head_, n_hashes_, factors_};
      for (int64_t b = 0; b < step.batch; ++b)
        for (int64_t h = 0; h < n_heads_; ++h)
          lsh_hash_head(kit.ex, kit.ws, spec, q + b * T * hd + h * d_head_, hd,
                        step.stream(RngPurpose::kRotation, static_cast<uint32_t>(layer_), b, h),
                        buckets + (b * n_heads_ + h) * n_hashes_ * T);
    }
    sort_buckets(kit, step.batch, T, buckets, &perm, &undo);
  }
  float* heads = kit.ws.floats("layer.heads", rows * hd);
  for (int64_t b = 0; b < step.batch; ++b)
    for (int64_t h = 0; h < n_heads_; ++h)
      chunked_attention_forward(kit.ex, kit.ws, head_spec(step, b, h),
                                head_inputs(q, k, v, perm, undo, T, b, h),
                                heads + b * T * hd + h * d_head_, hd);
  matmul(kit.ex, {false, false, rows, d_model_, hd, hd, d_model_, d_model_}, heads, p.param(w_o_),
         out);
}

void AttentionLayer::backward(Kit& kit, ParamStore& p, const StepContext& step, const float* xn,
                              const float* dout, float* dxn, const int32_t* buckets,
                              float* out) const {
  const int64_t rows = step.rows(), hd = n_heads_ * d_head_, T = step.seq_len, D = d_model_;
  const bool lsh = kind_ == AttentionKind::kLsh;
  const auto [q, k, v] = project(kit, p, rows, xn);
  int32_t* perm = nullptr;
  int32_t* undo = nullptr;
  if (lsh) sort_buckets(kit, step.batch, T, buckets, &perm, &undo);

  // dheads [rows, hd] = dout [rows, D] . w_o^T
  float* dheads = kit.ws.floats("layer.dheads", rows * hd);
  matmul(kit.ex, {false, true, rows, hd, D, D, D, hd}, dout, p.param(w_o_), dheads);
  float* heads = kit.ws.floats("layer.heads", rows * hd);
  float* dq = kit.ws.floats("layer.dq", rows * hd);
  float* dk = lsh ? nullptr : kit.ws.floats("layer.dk", rows * hd);
  float* dv = kit.ws.floats("layer.dv", rows * hd);
  for (int64_t b = 0; b < step.batch; ++b)
    for (int64_t h = 0; h < n_heads_; ++h) {
      const int64_t offset = b * T * hd + h * d_head_;
      const HeadGradients g{dq + offset, dk ? dk + offset : nullptr, dv + offset, hd};
      chunked_attention_backward(kit.ex, kit.ws, head_spec(step, b, h),
                                 head_inputs(q, k, v, perm, undo, T, b, h), dheads + offset, hd, g,
                                 heads + offset, hd);
    }
  if (out) matmul(kit.ex, {false, false, rows, D, hd, hd, D, D}, heads, p.param(w_o_), out);
  // dw_o += heads^T . dout
  matmul(kit.ex, {true, false, hd, D, rows, hd, D, D, 0, 0, 0, 1, 1.0f, 1.0f}, heads, dout,
         p.grad(w_o_));
  // Inputs: dxn += dX . W^T, dW += xn^T . dX for each projection.
  auto input_grad = [&](int w, const float* dproj) {
    matmul(kit.ex, {false, true, rows, D, hd, hd, hd, D, 0, 0, 0, 1, 1.0f, 1.0f}, dproj, p.param(w),
           dxn);
    matmul(kit.ex, {true, false, D, hd, rows, D, hd, hd, 0, 0, 0, 1, 1.0f, 1.0f}, xn, dproj,
           p.grad(w));
  };
  input_grad(w_q_, dq);
  if (!lsh) input_grad(w_k_, dk);
  input_grad(w_v_, dv);
}

}  // namespace rf
