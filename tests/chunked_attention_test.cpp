// Tests of fused chunked attention (LSH, local and dense attention over all examples and heads)
// against direct definitions and against the unfused path it replaced: equality with dense
// shared-QK attention when one chunk holds the sequence, identical hash rounds equal one round,
// causality, finite-difference gradients, and the unfused path's outputs and gradients within fp32
// rounding over a sweep of shapes, for every kernel variant of the CPU executor.
#include "kernels/chunked_attention.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "kernels/cpu/chunk_attention_tiles.h"
#include "kernels/cpu/lsh_argmax.h"
#include "kernels/cpu/transpose_block.h"
#include "kernels/lsh_buckets.h"
#include "tests/test_util.h"
#include "tests/unfused_attention.h"

namespace rf {
namespace {

using test::cpu;

// One attention problem: inputs [batch * T, heads * d], sorted by random buckets when `lsh`.
struct Case {
  int64_t batch = 1, heads = 1, T = 32, d = 8, rounds = 1, chunk = 8, lookback = 1;
  bool lsh = true;    // shared QK, sorted by buckets; else separate keys in the original order
  float keep = 1.0f;  // attention dropout keep probability
  int buckets = 4;    // LSH buckets per round
  bool same_rounds = false;  // every round hashes like round 0
  uint32_t seed = 11;

  int64_t ld() const { return heads * d; }
  int64_t rows() const { return batch * T; }
  int64_t n_slots() const { return rounds * T; }
  std::string name() const {
    return std::string(lsh                           ? "lsh"
                       : chunk == T && lookback == 0 ? "dense"
                                                     : "local") +
           " B" + std::to_string(batch) + " H" + std::to_string(heads) + " T" + std::to_string(T) +
           " d" + std::to_string(d) + " r" + std::to_string(rounds) + " c" + std::to_string(chunk) +
           " lb" + std::to_string(lookback) + (keep < 1 ? " dropout" : "");
  }
};

DropoutMask attention_dropout(const Case& c) {
  DropoutMask m;
  m.keep = c.keep;
  m.stream = make_rng_stream(c.seed, RngPurpose::kAttentionDropout, 2, 3, 0, 0);
  m.example_base = 5;
  return m;
}

// Random inputs and (for LSH) a random sort, in executor memory.
struct Problem {
  explicit Problem(const Case& c)
      : c(c),
        q(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed))),
        k(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed + 1))),
        v(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed + 2))) {
    if (!c.lsh) return;
    const int64_t segments = c.batch * c.heads;
    std::mt19937 gen(c.seed + 3);
    std::vector<int32_t> b(segments * c.n_slots());
    for (int64_t s = 0; s < segments; ++s)
      for (int64_t r = 0; r < c.rounds; ++r)
        for (int64_t t = 0; t < c.T; ++t) {
          const int64_t i = (s * c.rounds + r) * c.T + t;
          const int32_t bucket =
              c.same_rounds && r > 0 ? b[i - r * c.T] : static_cast<int32_t>(gen() % c.buckets);
          b[i] = bucket + static_cast<int32_t>(r * c.buckets);
        }
    buckets = test::to_device(b);
    perm = DeviceBuffer<int32_t>(cpu(), b.size());
    undo = DeviceBuffer<int32_t>(cpu(), b.size());
    Workspace ws(cpu());
    lsh_sort(cpu(), ws,
             test::sort_args(buckets.data(), perm.data(), undo.data(), segments, c.T, c.rounds,
                             c.buckets));
  }

  ChunkedAttentionArgs args() const {
    ChunkedAttentionArgs a;
    a.q = q.data();
    a.k = c.lsh ? nullptr : k.data();
    a.v = v.data();
    a.ld = c.ld();
    a.perm = c.lsh ? perm.data() : nullptr;
    a.undo = c.lsh ? undo.data() : nullptr;
    a.batch = c.batch;
    a.heads = c.heads;
    a.seq_len = c.T;
    a.d = c.d;
    a.n_rounds = c.rounds;
    a.chunk = c.chunk;
    a.lookback = c.lookback;
    a.key_scale = c.lsh ? 1.0f : 1.0f / std::sqrt(static_cast<float>(c.d));
    a.dropout = attention_dropout(c);
    return a;
  }

  Case c;
  DeviceBuffer<float> q, k, v;
  DeviceBuffer<int32_t> buckets, perm, undo;
};

std::vector<float> fused_forward(const Problem& p, Executor& ex = cpu()) {
  DeviceBuffer<float> out(ex, p.c.rows() * p.c.ld());
  Workspace ws(ex);
  chunked_attention_forward(ex, ws, p.args(), out.data(), p.c.ld());
  return out.download();
}

// Output, then the gradients of q, k (separate keys only) and v, for output gradient `dout`.
std::vector<std::vector<float>> fused_backward(const Problem& p, const std::vector<float>& dout,
                                               Executor& ex = cpu()) {
  const int64_t n = p.c.rows() * p.c.ld();
  DeviceBuffer<float> out(ex, n), dq(ex, n), dk(ex, n), dv(ex, n);
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(ex);
  chunked_attention_backward(ex, ws, p.args(), g.data(), p.c.ld(),
                             {dq.data(), p.c.lsh ? nullptr : dk.data(), dv.data(), p.c.ld()},
                             out.data(), p.c.ld());
  std::vector<std::vector<float>> r = {out.download(), dq.download(), dv.download()};
  if (!p.c.lsh) r.push_back(dk.download());
  return r;
}

// The unfused path, one (example, head) at a time, in the same layout.
unfused::HeadAttentionSpec unfused_spec(const Case& c, int64_t b, int64_t h) {
  unfused::HeadAttentionSpec s;
  s.layout = {c.T, c.n_slots(), c.chunk, c.lookback};
  s.n_rounds = c.rounds;
  s.d = c.d;
  s.shared_qk = c.lsh;
  s.key_scale = c.lsh ? 1.0f : 1.0f / std::sqrt(static_cast<float>(c.d));
  s.dropout = attention_dropout(c);
  s.dropout.example_base += static_cast<uint32_t>(b);
  s.dropout.stream.head = static_cast<uint32_t>(h);
  s.dropout.seq_len = c.n_slots();
  s.dropout.cols = s.layout.window();
  return s;
}

unfused::HeadInputs unfused_inputs(const Problem& p, int64_t b, int64_t h) {
  const Case& c = p.c;
  const int64_t offset = b * c.T * c.ld() + h * c.d;
  unfused::HeadInputs in;
  in.q = p.q.data() + offset;
  in.k = p.k.data() + offset;
  in.v = p.v.data() + offset;
  in.ldq = in.ldk = in.ldv = c.ld();
  if (c.lsh) {
    in.perm = p.perm.data() + (b * c.heads + h) * c.n_slots();
    in.undo = p.undo.data() + (b * c.heads + h) * c.n_slots();
  }
  return in;
}

std::vector<std::vector<float>> unfused_backward(const Problem& p, const std::vector<float>& dout) {
  const Case& c = p.c;
  const int64_t n = c.rows() * c.ld();
  DeviceBuffer<float> out(cpu(), n), dq(cpu(), n), dk(cpu(), n), dv(cpu(), n);
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(cpu());
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t offset = b * c.T * c.ld() + h * c.d;
      unfused::chunked_attention_backward(
          cpu(), ws, unfused_spec(c, b, h), unfused_inputs(p, b, h), g.data() + offset, c.ld(),
          {dq.data() + offset, dk.data() + offset, dv.data() + offset, c.ld()}, out.data() + offset,
          c.ld());
    }
  std::vector<std::vector<float>> r = {out.download(), dq.download(), dv.download()};
  if (!c.lsh) r.push_back(dk.download());
  return r;
}

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
      logits[s] = dot / std::sqrt(norm + d * 1e-6) - (s > t ? 1e9 : 0) - (s == t ? 1e5 : 0);
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
  std::vector<int32_t> want(static_cast<size_t>(2 * n)), got(want.size());
  op.projected = projected.data();
  op.ldp = 2 * 48;
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

// The sweep every implementation is compared over: LSH with one and several rounds, one chunk
// with look-back, dropout, local and dense attention, several examples and heads, and sizes that
// are not multiples of any tile (head widths 5, 20 and 70; chunks of 3, 24, 65, 96 and 150, over
// several 64-slot tiles).
std::vector<Case> sweep() {
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(c); };
  Case c;
  add(c);  // LSH, one round
  c.rounds = 2;
  c.batch = 2;
  c.heads = 3;
  add(c);
  c.keep = 0.75f;
  add(c);
  c = Case();
  c.T = 24;
  c.chunk = 24;  // one chunk that sees itself twice
  c.rounds = 2;
  add(c);
  c = Case();
  c.d = 5;
  c.chunk = 3;
  c.T = 21;
  c.rounds = 3;
  c.buckets = 6;
  add(c);
  c = Case();
  c.T = 96;
  c.chunk = 24;
  c.d = 16;
  c.rounds = 2;
  c.buckets = 8;
  add(c);
  c = Case();
  c.lsh = false;  // local
  c.batch = 2;
  c.heads = 2;
  add(c);
  c.keep = 0.6f;
  add(c);
  c = Case();
  c.lsh = false;  // dense
  c.T = 40;
  c.chunk = 40;
  c.lookback = 0;
  c.d = 12;
  add(c);
  c.T = 150;  // chunks over several 64-slot tiles, partial last tiles, a head of 70
  c.chunk = 150;
  c.d = 70;
  add(c);
  c = Case();
  c.lsh = false;
  c.T = 192;
  c.chunk = 96;
  c.d = 20;
  add(c);
  c = Case();
  c.T = 130;
  c.chunk = 65;
  c.rounds = 2;
  c.buckets = 2;
  add(c);
  return cases;
}

// Largest difference relative to the largest magnitude of the reference.
double relative_max_error(const std::vector<float>& got, const std::vector<float>& want) {
  double scale = 1e-30, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(double{want[i]}));
    diff = std::max(diff, std::fabs(double{got[i]} - want[i]));
  }
  return diff / scale;
}

void expect_close(const std::vector<std::vector<float>>& got,
                  const std::vector<std::vector<float>>& want, double tolerance,
                  const std::string& what) {
  const char* names[] = {"output", "dq", "dv", "dk"};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LT(relative_max_error(got[i], want[i]), tolerance) << what << ": " << names[i];
}

// The fused passes equal the unfused path they replaced within fp32 rounding (they add the same
// terms in another order), for every kernel variant of the CPU executor.
TEST(FusedAttention, EqualsTheUnfusedPathWithinFp32Rounding) {
  for (KernelVariant variant :
       {KernelVariant::kTuned, KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
    const std::unique_ptr<Executor> ex = make_cpu_executor(0);
    ex->set_kernel_variant(variant);
    for (const Case& c : sweep()) {
      const Problem p(c);
      const auto dout = test::random_vector(c.rows() * c.ld(), 99);
      expect_close(fused_backward(p, dout, *ex), unfused_backward(p, dout), 2e-5,
                   c.name() + " variant " + std::to_string(static_cast<int>(variant)));
      EXPECT_EQ(fused_forward(p, *ex), fused_backward(p, dout, *ex)[0])
          << c.name() << ": the backward's recomputed output differs from the forward's";
    }
  }
}

// Relative RMS difference.
double relative_rms(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, ref = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    ref += double{want[i]} * want[i];
  }
  return std::sqrt(diff / ref);
}

// At runtime.precision = bf16 on a CPU with AMX the tiles multiply bf16 operands
// (kernels/cpu/amx_tiles.h): outputs and gradients within bf16 rounding of fp32's (bf16 keeps 8
// significant bits: about 0.3% per rounding), and not equal to them, so the bf16 products ran.
// Shapes cover tiles that are not whole 16-slot tiles (chunks of 8 and 40, a chunk of 65 split
// 64 + 1), a head width that is not a multiple of 16, dropout and several rounds. (Heads
// narrower than 16 keep fp32 products.)
TEST(FusedAttention, Bf16TilesOnAmxStayWithinBf16RoundingOfFp32) {
  if (!cpu::bf16_tile_products_available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  const std::unique_ptr<Executor> bf16 = make_cpu_executor(0, GemmPrecision::kBf16);
  std::vector<Case> cases;
  for (int64_t d : {16, 33, 64})
    for (int64_t chunk : {8, 40, 64, 65}) {
      Case c;
      c.T = 3 * chunk;
      c.d = d;
      c.chunk = chunk;
      c.rounds = 2;
      c.buckets = 3;
      c.heads = 2;
      c.keep = chunk == 40 ? 0.8f : 1.0f;
      cases.push_back(c);
    }
  Case local;
  local.lsh = false;
  local.T = 96;
  local.d = 24;
  local.chunk = 32;
  cases.push_back(local);
  for (const Case& c : cases) {
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 98);
    const auto got = fused_backward(p, dout, *bf16), want = fused_backward(p, dout);
    const char* names[] = {"output", "dq", "dv", "dk"};
    for (size_t i = 0; i < got.size(); ++i) {
      const double e = relative_rms(got[i], want[i]);
      EXPECT_LT(e, 1e-2) << c.name() << ": " << names[i];
      EXPECT_GT(e, 1e-5) << c.name() << ": " << names[i] << " equals fp32's";
    }
  }
}

// Gradients written over their inputs (as the attention layer does), with the segments run in
// groups of one: the same as into separate buffers in one launch.
TEST(FusedAttention, GradientsMayReplaceTheInputsAcrossSegmentGroups) {
  for (bool lsh : {true, false}) {
    Case c;
    c.lsh = lsh;
    c.batch = 2;
    c.heads = 2;
    c.rounds = lsh ? 2 : 1;
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 98);
    const auto expected = fused_backward(p, dout);
    Problem in_place(c);
    ChunkedAttentionArgs a = in_place.args();
    a.scratch_budget_bytes = 1;  // one segment per launch
    DeviceBuffer<float> g = test::to_device(dout), out(cpu(), c.rows() * c.ld());
    Workspace ws(cpu());
    chunked_attention_backward(
        cpu(), ws, a, g.data(), c.ld(),
        {in_place.q.data(), lsh ? nullptr : in_place.k.data(), in_place.v.data(), c.ld()},
        out.data(), c.ld());
    std::vector<std::vector<float>> got = {out.download(), in_place.q.download(),
                                           in_place.v.download()};
    if (!lsh) got.push_back(in_place.k.download());
    EXPECT_EQ(got, expected) << c.name();
  }
}

// x [blocks * T, cols] with its rows regrouped as the attention takes a memory of M positions:
// every block's positions M .. T - 1 (the segment's), then, with `memory_rows`, every block's
// positions 0 .. M - 1.
std::vector<float> memory_layout(const std::vector<float>& x, int64_t blocks, int64_t T, int64_t M,
                                 int64_t cols, bool memory_rows) {
  std::vector<float> r;
  for (int64_t b = 0; b < blocks; ++b)
    r.insert(r.end(), x.begin() + (b * T + M) * cols, x.begin() + (b + 1) * T * cols);
  if (memory_rows)
    for (int64_t b = 0; b < blocks; ++b)
      r.insert(r.end(), x.begin() + b * T * cols, x.begin() + (b * T + M) * cols);
  return r;
}

// The backward's output, dq, dv, dk and the relative scores' gradient.
std::vector<std::vector<float>> backward_with_relative(const ChunkedAttentionArgs& a,
                                                       const std::vector<float>& dout,
                                                       Executor& ex) {
  const int64_t queries = a.batch * (a.seq_len - a.memory_len), keys = a.batch * a.seq_len;
  DeviceBuffer<float> out(ex, queries * a.ld), dq(ex, queries * a.ld), dk(ex, keys * a.ld),
      dv(ex, keys * a.ld), drel(ex, std::max<int64_t>(1, a.heads * queries * a.rel_len));
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(ex);
  ChunkedAttentionGrads grads{dq.data(), dk.data(), dv.data(), a.ld};
  if (a.rel_scores) grads.rel_grads = drel.data();
  chunked_attention_backward(ex, ws, a, g.data(), a.ld, grads, out.data(), a.ld);
  return {out.download(), dq.download(), dv.download(), dk.download(), drel.download()};
}

// Transformer-XL's memory: with memory_len M the first M positions of each sequence are keys
// and values only, the queries' rows hold the segment's positions and the keys' rows the
// segment's then the memory's. Outputs and gradients equal the whole sequence's attention at the
// segment's positions when the memory's queries get no output gradient: local attention (a
// memory that ends inside a chunk and one of a whole chunk) and dense attention (inside a
// 64-slot tile, and two whole tiles), with dropout, relative scores and a distance limit, in one
// launch and a segment per launch, for every kernel variant of the CPU executor.
TEST(FusedAttention, AMemoryGivesKeysAndValuesOnlyAsTheWholeSequenceWithoutItsQueries) {
  struct MemoryCase {
    Case c;
    int64_t memory;
    bool relative;
  };
  std::vector<MemoryCase> cases;
  Case local;
  local.lsh = false;
  local.batch = 2;
  local.heads = 2;
  local.T = 192;
  local.chunk = 64;
  local.d = 20;
  cases.push_back({local, 100, false});
  local.keep = 0.8f;
  cases.push_back({local, 64, true});
  Case dense;
  dense.lsh = false;
  dense.lookback = 0;
  dense.heads = 2;
  dense.T = dense.chunk = 150;
  dense.d = 12;
  cases.push_back({dense, 70, true});
  dense.batch = 2;
  dense.keep = 0.9f;
  cases.push_back({dense, 128, false});
  for (KernelVariant variant :
       {KernelVariant::kTuned, KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
    const std::unique_ptr<Executor> ex = make_cpu_executor(0);
    ex->set_kernel_variant(variant);
    for (const MemoryCase& m : cases) {
      const Case& c = m.c;
      const int64_t M = m.memory, ld = c.ld(), blocks = c.batch * c.heads;
      const int64_t rel_len = c.lookback == 1 ? 2 * c.chunk : c.T;
      const std::string what = c.name() + " memory " + std::to_string(M) + " variant " +
                               std::to_string(static_cast<int>(variant));
      const Problem whole(c);
      std::vector<float> dout = test::random_vector(c.rows() * ld, 97);
      for (int64_t b = 0; b < c.batch; ++b)  // the memory's queries: no output gradient
        std::fill(dout.begin() + b * c.T * ld, dout.begin() + (b * c.T + M) * ld, 0.0f);
      const std::vector<float> rel = test::random_vector(blocks * c.T * rel_len, 96);
      DeviceBuffer<float> rel_whole = test::to_device(rel);
      DeviceBuffer<float> rel_segment =
          test::to_device(memory_layout(rel, blocks, c.T, M, rel_len, false));
      ChunkedAttentionArgs a = whole.args();
      if (m.relative) {
        a.rel_scores = rel_whole.data();
        a.rel_len = rel_len;
        a.max_distance = c.T / 2;
      }
      const auto want = backward_with_relative(a, dout, *ex);
      DeviceBuffer<float> q =
          test::to_device(memory_layout(whole.q.download(), c.batch, c.T, M, ld, false));
      DeviceBuffer<float> k =
          test::to_device(memory_layout(whole.k.download(), c.batch, c.T, M, ld, true));
      DeviceBuffer<float> v =
          test::to_device(memory_layout(whole.v.download(), c.batch, c.T, M, ld, true));
      a.q = q.data();
      a.k = k.data();
      a.v = v.data();
      a.memory_len = M;
      if (m.relative) a.rel_scores = rel_segment.data();
      for (const int64_t budget : {a.scratch_budget_bytes, int64_t{1}}) {  // 1: a segment a launch
        a.scratch_budget_bytes = budget;
        const auto got =
            backward_with_relative(a, memory_layout(dout, c.batch, c.T, M, ld, false), *ex);
        const char* names[] = {"output", "dq", "dv", "dk", "relative scores' gradient"};
        for (size_t i = 0; i < got.size(); ++i) {
          if (i == 4 && !m.relative) continue;
          const std::vector<float> expected =
              i == 4   ? memory_layout(want[i], blocks, c.T, M, rel_len, false)
              : i <= 1 ? memory_layout(want[i], c.batch, c.T, M, ld, false)
                       : memory_layout(want[i], c.batch, c.T, M, ld, true);
          ASSERT_EQ(got[i].size(), expected.size()) << what << ": " << names[i];
          EXPECT_LT(relative_max_error(got[i], expected), 1e-6)
              << what << " budget " << budget << ": " << names[i];
        }
      }
    }
  }
}

// A dropout mask that is not replayed exactly would show as a gradient mismatch above; this
// checks the test can see it: another dropout stream changes the outputs.
TEST(FusedAttention, DropoutStreamChangesTheOutput) {
  Case c;
  c.keep = 0.7f;
  const Problem p(c);
  Problem other(c);
  other.c.seed = c.seed;  // same inputs
  ChunkedAttentionArgs a = other.args();
  a.dropout.stream.step += 1;
  DeviceBuffer<float> out(cpu(), c.rows() * c.ld());
  Workspace ws(cpu());
  chunked_attention_forward(cpu(), ws, a, out.data(), c.ld());
  EXPECT_GT(test::max_abs_diff(out.download(), fused_forward(p)), 1e-3f);
}

}  // namespace
}  // namespace rf
