// Tests of fused chunked attention (LSH, local and dense attention over all examples and heads)
// against direct definitions: equality with dense shared-QK attention when one chunk holds the
// sequence, identical hash rounds equal one round, causality, finite-difference gradients; and
// the tiles' transpose and vectorised argmax. (Against the unfused path it replaced:
// tests/fused_attention_test.cpp.)
#include "kernels/chunked_attention.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "kernels/cpu/chunk_attention_tiles.h"
#include "kernels/cpu/lsh_argmax.h"
#include "kernels/cpu/transpose_block.h"
#include "kernels/lsh_buckets.h"
#include "tests/attention_problem.h"

namespace rf {
namespace {

using namespace attention_problem;  // NOLINT(build/namespaces): the tests' shared problem
using test::cpu;                    // (not the namespace rf::cpu of the tiles)

// Dense causal shared-QK attention with the self mask, in double, straight from the definition.
std::vector<float> dense_shared_qk(const std::vector<float>& q, const std::vector<float>& v,
                                   int64_t T, int64_t d) {
  std::vector<float> out(T * d);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> logits(T);
    double mx = -1e300;
    for (int64_t s = 0; s < T; ++s) {
      double norm = 0, dot = 0;
      for (int64_t c = 0; c < d; ++c) norm += double{q[s * d + c]} * q[s * d + c];
      for (int64_t c = 0; c < d; ++c) dot += double{q[t * d + c]} * q[s * d + c];
      logits[s] = dot / std::sqrt(norm + static_cast<double>(d) * 1e-6) - (s > t ? 1e9 : 0) -
                  (s == t ? 1e5 : 0);
      mx = std::max(mx, logits[s]);
    }
    double z = 0;
    for (double& l : logits) z += (l = std::exp(l - mx));
    for (int64_t c = 0; c < d; ++c) {
      double o = 0;
      for (int64_t s = 0; s < T; ++s) o += logits[s] / z * v[s * d + c];
      out[t * d + c] = static_cast<float>(o);
    }
  }
  return out;
}

// The attention tiles' 16 x 16 transpose (in registers with AVX-512) moves every value to its
// place: rows from scattered addresses, a column offset, an output stride wider than 16.
TEST(TileTranspose, SixteenBySixteenBlockLandsTransposed) {
  std::vector<std::vector<float>> storage(16);
  const float* rows[16];
  for (int r = 0; r < 16; ++r) {
    storage[r] = test::random_vector(40, 100 + r);
    rows[15 - r] = storage[r].data();  // addresses in no particular order
  }
  const int64_t x0 = 7, ld = 37;
  std::vector<float> out(16 * ld, -1.0f);
  cpu::transpose_16x16(rows, x0, out.data(), ld);
  for (int64_t c = 0; c < 16; ++c)
    for (int64_t r = 0; r < ld; ++r) {
      const float want = r < 16 ? rows[r][x0 + c] : -1.0f;
      ASSERT_EQ(out[c * ld + r], want) << "column " << c << ", row " << r;
    }
}

// The CPU's vectorised LSH argmax picks what the functor's scan picks: on random rows, on ties
// (the first index; p over -p when |max p| = |min p|), on zeros of either sign, on rows holding
// a NaN, and for halves that are not a multiple of the vector width.
TEST(LshArgmax, VectorisedArgmaxPicksWhatTheScanPicks) {
  std::mt19937 gen(23);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int half : {16, 32, 48, 64, 8, 20}) {
    for (int trial = 0; trial < 400; ++trial) {
      std::vector<float> p(static_cast<size_t>(half));
      for (float& x : p) x = uniform(gen);
      const int kind = trial % 8;
      const int a = static_cast<int>(gen() % half), b = static_cast<int>(gen() % half);
      if (kind == 1) p[a] = p[b] = 2.0f;         // tied maximum
      if (kind == 2) p[a] = p[b] = -2.0f;        // tied maximum of -p
      if (kind == 3) p[a] = 2.0f, p[b] = -2.0f;  // |max| = |min|: p wins
      if (kind == 4) std::fill(p.begin(), p.end(), 0.0f), p[a] = -0.0f;
      if (kind == 5) p[a] = std::nanf("");
      if (kind == 6) std::fill(p.begin(), p.end(), -0.0f);
      ASSERT_EQ(cpu::lsh_argmax(p.data(), half), lsh_factor_argmax(p.data(), half))
          << "half " << half << ", trial " << trial;
    }
  }
  // The whole row's bucket, factorised (64 x 32 buckets), against the functor.
  const int64_t n = 50;
  LshHash op{};
  std::vector<float> projected(static_cast<size_t>(n * 2 * 48));
  for (float& x : projected) x = uniform(gen);
  std::vector<int32_t> want(static_cast<size_t>(int64_t{2} * n)), got(want.size());
  op.projected = projected.data();
  op.ldp = 96;  // (two rows of 48)
  op.seq_len = n;
  op.first = 0;
  op.rows = n;
  op.factors.count = 2;
  op.factors.size[0] = 64;
  op.factors.size[1] = 32;
  op.buckets = want.data();
  for (int64_t i = 0; i < 2 * n; ++i) op(i);
  op.buckets = got.data();
  for (int64_t i = 0; i < 2 * n; ++i) cpu::lsh_hash_row(op, i);
  EXPECT_EQ(got, want);
}

TEST(ChunkedAttention, LshEqualsDenseSharedQkWhenOneChunkHoldsTheSequence) {
  for (int64_t lookback : {0, 1}) {
    Case c;
    c.T = 24;
    c.chunk = 24;
    c.lookback = lookback;  // with look-back the only chunk sees itself twice: outputs unchanged
    const Problem p(c);
    EXPECT_LT(test::max_abs_diff(fused_forward(p),
                                 dense_shared_qk(p.q.download(), p.v.download(), c.T, c.d)),
              1e-5f)
        << "lookback " << lookback;
  }
}

TEST(ChunkedAttention, EveryExampleAndHeadIsItsOwnSegment) {
  Case c;
  c.batch = 2;
  c.heads = 3;
  c.T = 16;
  c.chunk = 16;
  c.lookback = 0;
  c.d = 4;
  const Problem p(c);
  const auto out = fused_forward(p);
  const auto q = p.q.download(), v = p.v.download();
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h) {
      std::vector<float> qh(c.T * c.d), vh(c.T * c.d), oh(c.T * c.d);
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t x = 0; x < c.d; ++x) {
          const int64_t i = (b * c.T + t) * c.ld() + h * c.d + x;
          qh[t * c.d + x] = q[i];
          vh[t * c.d + x] = v[i];
          oh[t * c.d + x] = out[i];
        }
      EXPECT_LT(test::max_abs_diff(oh, dense_shared_qk(qh, vh, c.T, c.d)), 1e-5f) << b << h;
    }
}

TEST(ChunkedAttention, IdenticalHashRoundsEqualOneRound) {
  Case one;
  one.seed = 21;
  Case three = one;
  three.rounds = 3;
  three.same_rounds = true;
  const auto out1 = fused_forward(Problem(one));
  EXPECT_LT(test::max_abs_diff(out1, fused_forward(Problem(three))), 1e-5f);
  // And different rounds do change the result (the test can fail).
  three.same_rounds = false;
  EXPECT_GT(test::max_abs_diff(out1, fused_forward(Problem(three))), 1e-3f);
}

// Outputs at positions <= t must be bit-identical when rows after t change.
void expect_causal(const Case& c) {
  const Problem base(c);
  const auto expected = fused_forward(base);
  for (int64_t t : {0, 7, 8, 20}) {
    Problem changed(c);
    auto q = base.q.download(), k = base.k.download(), v = base.v.download();
    for (int64_t i = (t + 1) * c.ld(); i < c.T * c.ld(); ++i) {
      q[i] += 1.0f;
      k[i] -= 0.5f;
      v[i] *= 3.0f;
    }
    changed.q.upload(q);
    changed.k.upload(k);
    changed.v.upload(v);
    const auto out = fused_forward(changed);
    for (int64_t i = 0; i < (t + 1) * c.ld(); ++i)
      ASSERT_EQ(out[i], expected[i]) << c.name() << ": position " << i / c.ld()
                                     << " changed when rows after " << t << " changed";
    EXPECT_NE(out.back(), expected.back());
  }
}

TEST(ChunkedAttention, LocalAttentionIsStrictlyCausal) {
  Case c;
  c.lsh = false;
  expect_causal(c);
}

TEST(ChunkedAttention, DenseAttentionIsStrictlyCausal) {
  Case c;
  c.lsh = false;
  c.chunk = c.T;
  c.lookback = 0;
  expect_causal(c);
}

TEST(ChunkedAttention, LshIsCausalWithBucketsHeldFixed) {
  Case c;
  c.rounds = 2;
  c.seed = 7;
  expect_causal(c);
}

// Finite-difference check of the gradients of sum(out * weights) w.r.t. q, k and v.
void expect_gradients_match(const Case& c) {
  Problem p(c);
  const auto weights = test::random_vector(c.rows() * c.ld(), 45);
  const auto grads = fused_backward(p, weights);
  auto loss = [&] { return test::dot(fused_forward(p), weights); };
  struct Input {
    const char* name;
    DeviceBuffer<float>* dev;
    const std::vector<float>* grad;
  };
  std::vector<Input> inputs = {{"q", &p.q, &grads[1]}, {"v", &p.v, &grads[2]}};
  if (!c.lsh) inputs.push_back({"k", &p.k, &grads[3]});
  for (const Input& input : inputs) {
    const std::vector<float> x0 = input.dev->download();
    const auto direction = test::random_vector(x0.size(), 77);
    const double analytic = test::dot(*input.grad, direction);
    auto perturb = [&](float s) {
      std::vector<float> x = x0;
      for (size_t i = 0; i < x.size(); ++i) x[i] += s * direction[i];
      input.dev->upload(x);
    };
    test::expect_directional_derivative(perturb, loss, analytic, 1e-2, 2e-3,
                                        c.name() + " d/d" + input.name);
  }
}

TEST(ChunkedAttentionGradients, LshWithSeveralRounds) {
  Case c;
  c.rounds = 2;
  c.seed = 8;
  expect_gradients_match(c);
}

TEST(ChunkedAttentionGradients, LshWithAttentionDropout) {
  Case c;
  c.rounds = 3;
  c.keep = 0.8f;
  c.seed = 9;
  expect_gradients_match(c);
}

TEST(ChunkedAttentionGradients, LocalAttention) {
  Case c;
  c.lsh = false;
  expect_gradients_match(c);
}

TEST(ChunkedAttentionGradients, DenseAttention) {
  Case c;
  c.lsh = false;
  c.T = 24;
  c.chunk = 24;
  c.lookback = 0;
  expect_gradients_match(c);
}

TEST(ChunkedAttentionGradients, SeveralExamplesAndHeads) {
  Case c;
  c.batch = 2;
  c.heads = 2;
  c.rounds = 2;
  c.seed = 10;
  expect_gradients_match(c);
}

}  // namespace
}  // namespace rf
