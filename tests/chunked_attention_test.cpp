// Tests of the chunked attention driver (LSH, local and dense attention for one example and
// head) against direct definitions: equality with dense shared-QK attention when one chunk holds
// the sequence, identical hash rounds equal one round, causality, and finite-difference gradients.
#include "kernels/chunked_attention.h"

#include <gtest/gtest.h>

#include <numeric>

#include "kernels/lsh_buckets.h"
#include "tests/test_util.h"

namespace rf {
namespace {

using test::cpu;

struct HeadData {
  int64_t T, d;
  std::vector<float> q, k, v;
};

HeadData random_head(int64_t T, int64_t d, uint32_t seed) {
  return {T, d, test::random_vector(T * d, seed), test::random_vector(T * d, seed + 1),
          test::random_vector(T * d, seed + 2)};
}

// perm/undo of random buckets in [0, n_buckets) repeated over `rounds` (identical rounds when
// `same_rounds`).
std::pair<std::vector<int32_t>, std::vector<int32_t>> random_sort(int64_t T, int64_t rounds,
                                                                  int n_buckets, bool same_rounds,
                                                                  uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> buckets(rounds * T);
  for (int64_t r = 0; r < rounds; ++r)
    for (int64_t t = 0; t < T; ++t) {
      const int32_t bucket =
          same_rounds && r > 0 ? buckets[t] : static_cast<int32_t>(gen() % n_buckets);
      buckets[r * T + t] = bucket + static_cast<int32_t>(r) * n_buckets;
    }
  auto db = test::to_device(buckets);
  DeviceBuffer<int32_t> perm(cpu(), rounds * T), undo(cpu(), rounds * T);
  Workspace ws(cpu());
  BucketFactors f;
  f.size[0] = n_buckets;
  lsh_sort(cpu(), ws, {T, 1, rounds, f}, 1, db.data(), perm.data(), undo.data());
  return {perm.download(), undo.download()};
}

HeadAttentionSpec lsh_spec(int64_t T, int64_t d, int64_t rounds, int64_t chunk, int64_t lookback) {
  HeadAttentionSpec s;
  s.layout = {T, rounds * T, chunk, lookback};
  s.n_rounds = rounds;
  s.d = d;
  s.shared_qk = true;
  return s;
}

HeadAttentionSpec plain_spec(int64_t T, int64_t d, int64_t chunk, int64_t lookback) {
  HeadAttentionSpec s;
  s.layout = {T, T, chunk, lookback};
  s.d = d;
  s.key_scale = 1.0f / std::sqrt(static_cast<float>(d));
  return s;
}

// One head's inputs in executor memory, and the HeadInputs that point at them.
struct DeviceHead {
  DeviceHead(const HeadData& h, const std::vector<int32_t>& perm, const std::vector<int32_t>& undo)
      : q(test::to_device(h.q)), k(test::to_device(h.k)), v(test::to_device(h.v)) {
    in = {q.data(), k.data(), v.data(), h.d, h.d, h.d};
    if (perm.empty()) return;
    dperm = test::to_device(perm);
    dundo = test::to_device(undo);
    in.perm = dperm.data();
    in.undo = dundo.data();
  }
  DeviceBuffer<float> q, k, v;
  DeviceBuffer<int32_t> dperm, dundo;
  HeadInputs in;
};

std::vector<float> run_forward(const HeadAttentionSpec& spec, const HeadData& h,
                               const std::vector<int32_t>& perm = {},
                               const std::vector<int32_t>& undo = {}) {
  DeviceHead head(h, perm, undo);
  const HeadInputs& in = head.in;
  DeviceBuffer<float> out(cpu(), h.T * h.d);
  Workspace ws(cpu());
  chunked_attention_forward(cpu(), ws, spec, in, out.data(), h.d);
  return out.download();
}

// Dense causal shared-QK attention with the self mask, in double, straight from the definition.
std::vector<float> dense_shared_qk(const HeadData& h) {
  std::vector<float> out(h.T * h.d);
  for (int64_t t = 0; t < h.T; ++t) {
    std::vector<double> logits(h.T);
    double mx = -1e300;
    for (int64_t s = 0; s < h.T; ++s) {
      double norm = 0, dot = 0;
      for (int64_t c = 0; c < h.d; ++c) norm += double{h.q[s * h.d + c]} * h.q[s * h.d + c];
      for (int64_t c = 0; c < h.d; ++c) dot += double{h.q[t * h.d + c]} * h.q[s * h.d + c];
      logits[s] = dot / std::sqrt(norm + h.d * 1e-6) - (s > t ? 1e9 : 0) - (s == t ? 1e5 : 0);
      mx = std::max(mx, logits[s]);
    }
    double z = 0;
    for (double& l : logits) z += (l = std::exp(l - mx));
    for (int64_t c = 0; c < h.d; ++c) {
      double o = 0;
      for (int64_t s = 0; s < h.T; ++s) o += logits[s] / z * h.v[s * h.d + c];
      out[t * h.d + c] = static_cast<float>(o);
    }
  }
  return out;
}

TEST(ChunkedAttention, LshEqualsDenseSharedQkWhenOneChunkHoldsTheSequence) {
  const HeadData h = random_head(24, 8, 11);
  const auto [perm, undo] = random_sort(h.T, 1, 4, false, 3);
  const auto expected = dense_shared_qk(h);
  // No look-back: exactly dense attention, whatever the bucket order.
  EXPECT_LT(test::max_abs_diff(run_forward(lsh_spec(h.T, h.d, 1, h.T, 0), h, perm, undo), expected),
            1e-5f);
  // With look-back the only chunk sees itself twice: every key is duplicated, outputs unchanged.
  EXPECT_LT(test::max_abs_diff(run_forward(lsh_spec(h.T, h.d, 1, h.T, 1), h, perm, undo), expected),
            1e-5f);
}

TEST(ChunkedAttention, IdenticalHashRoundsEqualOneRound) {
  const HeadData h = random_head(32, 8, 21);
  const auto [perm1, undo1] = random_sort(h.T, 1, 4, false, 5);
  const auto [perm3, undo3] = random_sort(h.T, 3, 4, true, 5);
  const auto one = run_forward(lsh_spec(h.T, h.d, 1, 8, 1), h, perm1, undo1);
  const auto three = run_forward(lsh_spec(h.T, h.d, 3, 8, 1), h, perm3, undo3);
  EXPECT_LT(test::max_abs_diff(one, three), 1e-5f);
  // And different rounds do change the result (the test can fail).
  const auto [permx, undox] = random_sort(h.T, 3, 4, false, 6);
  EXPECT_GT(test::max_abs_diff(one, run_forward(lsh_spec(h.T, h.d, 3, 8, 1), h, permx, undox)),
            1e-3f);
}

// Outputs at positions <= t must be bit-identical when rows after t change.
void expect_causal(const HeadAttentionSpec& spec, const std::vector<int32_t>& perm,
                   const std::vector<int32_t>& undo) {
  const HeadData h = random_head(32, 8, 31);
  const auto base = run_forward(spec, h, perm, undo);
  for (int64_t t : {0, 7, 8, 20}) {
    HeadData changed = h;
    for (int64_t i = (t + 1) * h.d; i < h.T * h.d; ++i) {
      changed.q[i] += 1.0f;
      changed.k[i] -= 0.5f;
      changed.v[i] *= 3.0f;
    }
    const auto out = run_forward(spec, changed, perm, undo);
    for (int64_t i = 0; i < (t + 1) * h.d; ++i)
      ASSERT_EQ(out[i], base[i]) << "position " << i / h.d << " changed when rows after " << t
                                 << " changed";
    EXPECT_NE(out.back(), base.back());
  }
}

TEST(ChunkedAttention, LocalAttentionIsStrictlyCausal) {
  expect_causal(plain_spec(32, 8, 8, 1), {}, {});
}

TEST(ChunkedAttention, DenseAttentionIsStrictlyCausal) {
  expect_causal(plain_spec(32, 8, 32, 0), {}, {});
}

TEST(ChunkedAttention, LshIsCausalWithBucketsHeldFixed) {
  const auto [perm, undo] = random_sort(32, 2, 4, false, 7);
  expect_causal(lsh_spec(32, 8, 2, 8, 1), perm, undo);
}

// Finite-difference check of the gradients of sum(out * weights) w.r.t. q, k and v.
void expect_gradients_match(HeadAttentionSpec spec, const std::vector<int32_t>& perm,
                            const std::vector<int32_t>& undo, const std::string& what) {
  HeadData h = random_head(spec.layout.seq_len, spec.d, 41);
  const auto weights = test::random_vector(h.T * h.d, 45);
  DeviceHead head(h, perm, undo);
  const HeadInputs& in = head.in;
  Workspace ws(cpu());
  DeviceBuffer<float> out(cpu(), h.T * h.d), dout = test::to_device(weights);
  DeviceBuffer<float> dq(cpu(), h.T * h.d), dk(cpu(), h.T * h.d), dv(cpu(), h.T * h.d);
  chunked_attention_backward(cpu(), ws, spec, in, dout.data(), h.d,
                             {dq.data(), dk.data(), dv.data(), h.d}, nullptr, 0);
  auto loss = [&] {
    chunked_attention_forward(cpu(), ws, spec, in, out.data(), h.d);
    return test::dot(out.download(), weights);
  };
  struct Input {
    const char* name;
    std::vector<float>* host;
    DeviceBuffer<float>* dev;
    DeviceBuffer<float>* grad;
  };
  std::vector<Input> inputs = {{"q", &h.q, &head.q, &dq}, {"v", &h.v, &head.v, &dv}};
  if (!spec.shared_qk) inputs.push_back({"k", &h.k, &head.k, &dk});
  for (const Input& input : inputs) {
    const auto direction = test::random_vector(input.host->size(), 77);
    const double analytic = test::dot(input.grad->download(), direction);
    auto perturb = [&](float s) {
      std::vector<float> x = *input.host;
      for (size_t i = 0; i < x.size(); ++i) x[i] += s * direction[i];
      input.dev->upload(x);
    };
    test::expect_directional_derivative(perturb, loss, analytic, 1e-2, 2e-3,
                                        what + " d/d" + input.name);
  }
}

TEST(ChunkedAttentionGradients, LshWithSeveralRounds) {
  const auto [perm, undo] = random_sort(32, 2, 4, false, 8);
  expect_gradients_match(lsh_spec(32, 8, 2, 8, 1), perm, undo, "lsh");
}

TEST(ChunkedAttentionGradients, LshWithAttentionDropout) {
  const auto [perm, undo] = random_sort(32, 3, 4, false, 9);
  HeadAttentionSpec spec = lsh_spec(32, 8, 3, 8, 1);
  spec.dropout.keep = 0.8f;
  spec.dropout.stream = make_rng_stream(1, RngPurpose::kAttentionDropout, 0, 0, 0, 0);
  spec.dropout.seq_len = spec.layout.n_slots;
  spec.dropout.cols = spec.layout.window();
  expect_gradients_match(spec, perm, undo, "lsh+dropout");
}

TEST(ChunkedAttentionGradients, LocalAttention) {
  expect_gradients_match(plain_spec(32, 8, 8, 1), {}, {}, "local");
}

TEST(ChunkedAttentionGradients, DenseAttention) {
  expect_gradients_match(plain_spec(24, 8, 24, 0), {}, {}, "dense");
}

}  // namespace
}  // namespace rf
