// Tests of the kernel layer: the GEMM description against a naive reference for every transpose
// combination and batch stride, the reductions, and the element kernels' bits over every split.
// (The LSH hash and the bucket sort: lsh_buckets_test.cpp; Philox, dropout masks and the fast exp
// and tanh: random_and_math_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "base/philox.h"
#include "kernels/adamw.h"
#include "kernels/embedding.h"
#include "kernels/fast_math.h"
#include "kernels/kernel_ops.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/reductions.h"
#include "tests/test_util.h"

namespace rf {
namespace {

using test::cpu;

using selftest::reference_gemm;

class GemmDescTest : public ::testing::TestWithParam<std::tuple<bool, bool, int>> {};

TEST_P(GemmDescTest, MatchesNaiveColumnMajorReference) {
  const auto [ta, tb, batch] = GetParam();
  const GemmDesc d = test::padded_gemm_desc(ta, tb, 7, 5, 9, batch, 0.75f, 0.5f);
  ASSERT_EQ(gemm_desc_problem(d), "");
  const auto a = test::random_vector(d.stride_a * batch, 1);
  const auto b = test::random_vector(d.stride_b * batch, 2);
  const auto c0 = test::random_vector(d.stride_c * batch, 3);
  auto da = test::to_device(a), db = test::to_device(b), dc = test::to_device(c0);
  cpu().gemm(d, da.data(), db.data(), dc.data());
  const auto expected = reference_gemm(d, a, b, c0);
  EXPECT_LT(test::max_abs_diff(dc.download(), expected), 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(AllTransposesAndBatches, GemmDescTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(1, 3)));

TEST(GemmDesc, RowMajorMappingComputesRowMajorProduct) {
  // C[M, N] = A^T B with A stored [K, M] and B [K, N], row-major, batched with strides.
  const int64_t M = 6, N = 4, K = 5, batch = 2;
  const auto a = test::random_vector(batch * K * M, 4);
  const auto b = test::random_vector(batch * K * N, 5);
  auto da = test::to_device(a), db = test::to_device(b);
  DeviceBuffer<float> dc(cpu(), batch * M * N);
  matmul(cpu(), {true, false, M, N, K, M, N, N, K * M, K * N, M * N, batch, 1.0f, 0.0f}, da.data(),
         db.data(), dc.data());
  const auto c = dc.download();
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t p = 0; p < K; ++p) s += a[bi * K * M + p * M + i] * b[bi * K * N + p * N + j];
        EXPECT_NEAR(c[bi * M * N + i * N + j], s, 1e-4);
      }
}

TEST(GemmDesc, ReportsInvalidLeadingDimensions) {
  GemmDesc d;
  d.m = 4;
  d.n = 3;
  d.k = 2;
  d.lda = 3;  // < m
  d.ldb = 2;
  d.ldc = 4;
  EXPECT_NE(gemm_desc_problem(d).find("lda"), std::string::npos);
  d.lda = 4;
  d.ldc = 2;
  EXPECT_NE(gemm_desc_problem(d).find("ldc"), std::string::npos);
  d.ldc = 4;
  EXPECT_EQ(gemm_desc_problem(d), "");
}

TEST(Reductions, ColumnSumsAndSquaresMatchDirectSums) {
  const int64_t rows = 300, cols = 7;
  const auto x = test::random_vector(rows * cols, 8);
  auto dx = test::to_device(x);
  DeviceBuffer<float> out(cpu(), cols);
  out.upload(std::vector<float>(cols, 1.0f));
  Workspace ws(cpu());
  add_column_sums(cpu(), ws, dx.data(), rows, cols, out.data());
  const auto got = out.download();
  double squares = 0;
  for (int64_t c = 0; c < cols; ++c) {
    double s = 1.0;
    for (int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
    EXPECT_NEAR(got[c], s, 1e-4);
  }
  for (float v : x) squares += double{v} * v;
  DeviceBuffer<GradientNormResult> norm(cpu(), 1);
  gradient_norm(cpu(), ws, dx.data(), rows * cols, 0.0, norm.data());
  EXPECT_NEAR(norm.download()[0].norm, std::sqrt(squares), 1e-6 * std::sqrt(squares));
  EXPECT_EQ(norm.download()[0].clip_scale, 1.0f);  // no clipping asked for
}

// The GPU's block reductions (kernels/cuda/reduce_kernels.cuh) add in the 32-lane order: lane l
// takes blocks l, l + 32, ..., then a tree. The functors must keep exactly that order for the two
// to agree bit for bit; the data make a running sum come out differently.
TEST(Reductions, ColumnSumsAndSquaresAddInThe32LaneOrder) {
  const int64_t blocks = 100, cols = 3;
  std::vector<float> partial(blocks * cols);
  for (int64_t i = 0; i < blocks * cols; ++i)
    partial[i] =
        (i % 7 == 0 ? 1e7f : 1.0f) * (i % 2 ? -1.0f : 1.0f) + 0.37f * static_cast<float>(i);
  auto lane_order = [&](int64_t c) {
    float lane[32] = {};
    for (int64_t b = 0; b < blocks; ++b) lane[b % 32] += partial[b * cols + c];
    for (int width = 16; width >= 1; width /= 2)
      for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
    return lane[0];
  };
  auto dp = test::to_device(partial);
  DeviceBuffer<float> out(cpu(), cols);
  cpu().run(cols, ColumnSumPartials{dp.data(), out.data(), blocks, cols, false});
  const auto got = out.download();
  bool some_running_sum_differs = false;
  for (int64_t c = 0; c < cols; ++c) {
    EXPECT_EQ(got[c], lane_order(c)) << c;
    float running = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) running += partial[b * cols + c];
    some_running_sum_differs |= running != got[c];
  }
  EXPECT_TRUE(some_running_sum_differs);

  const int64_t n = blocks * cols, block = 80;  // four blocks, the last one short
  DeviceBuffer<double> squares(cpu(), 4);
  cpu().run(4, SumSquaresPartial{dp.data(), squares.data(), n, block});
  const auto sq = squares.download();
  for (int64_t b = 0; b < 4; ++b) {
    double lane[32] = {};
    for (int64_t i = b * block; i < std::min(n, (b + 1) * block); ++i)
      lane[(i - b * block) % 32] += double{partial[i]} * partial[i];
    for (int width = 16; width >= 1; width /= 2)
      for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
    EXPECT_EQ(sq[b], lane[0]) << b;
  }
}

// The norm pass decides the clip factor and whether the update runs, on the device.
TEST(Reductions, GradientNormClipsAndFlagsNonFiniteGradients) {
  Workspace ws(cpu());
  DeviceBuffer<GradientNormResult> norm(cpu(), 1);
  std::vector<float> g(70000, 0.0f);  // several blocks of partial sums
  g[3] = 3.0f;
  g[69999] = 4.0f;
  auto dg = test::to_device(g);
  gradient_norm(cpu(), ws, dg.data(), static_cast<int64_t>(g.size()), 2.5, norm.data());
  GradientNormResult r = norm.download()[0];
  EXPECT_EQ(r.norm, 5.0);
  EXPECT_EQ(r.clip_scale, 0.5f);
  EXPECT_EQ(r.finite, 1);
  gradient_norm(cpu(), ws, dg.data(), static_cast<int64_t>(g.size()), 10.0, norm.data());
  EXPECT_EQ(norm.download()[0].clip_scale, 1.0f);  // below the threshold: unchanged
  for (float bad : {std::nanf(""), INFINITY}) {
    g[500] = bad;
    dg.upload(g);
    gradient_norm(cpu(), ws, dg.data(), static_cast<int64_t>(g.size()), 2.5, norm.data());
    r = norm.download()[0];
    EXPECT_EQ(r.finite, 0) << bad;
    EXPECT_FALSE(std::isfinite(r.norm)) << bad;
  }
}

// The GPU runs the row-split kernels one column per thread (span 1); the CPU whole rows. Every
// span must give bit-identical results, so the CPU tests of the model cover the GPU's indexing.
class RowSplitTest : public ::testing::TestWithParam<int64_t> {
 protected:
  static constexpr int64_t kRows = 70, kCols = 37;  // 70 rows: a partial last reduction block
  RowSplit split() const { return RowSplit{kCols, GetParam()}; }
  static RowSplit whole_rows() { return RowSplit{kCols, kCols}; }
  // Runs `launch(split, h, a)` on fresh copies of two random [rows, cols] arrays; returns both.
  template <class Launch>
  static std::vector<float> outputs(RowSplit split, const Launch& launch) {
    auto h = test::to_device(test::random_vector(kRows * kCols, 21));
    auto a = test::to_device(test::random_vector(kRows * kCols, 22));
    launch(split, h.data(), a.data());
    auto out = h.download(), second = a.download();
    out.insert(out.end(), second.begin(), second.end());
    return out;
  }
  static DropoutMask mask() {
    DropoutMask m;
    m.keep = 0.7f;
    m.stream = RngStream{5, 0, 1, 2};
    m.seq_len = 32;
    m.cols = kCols;
    return m;
  }
};

TEST_P(RowSplitTest, ElementKernelsGiveTheSameBitsForEverySpan) {
  const auto bias = test::to_device(test::random_vector(kCols, 23));
  const float* b = bias.data();
  for (Activation act : {Activation::kGelu, Activation::kRelu}) {
    auto forward = [&](RowSplit s, float* h, float* a) {
      cpu().run(s.indices(kRows), BiasActivationForward{h, a, b, s, act, mask()});
    };
    EXPECT_EQ(outputs(split(), forward), outputs(whole_rows(), forward));
    auto backward = [&](RowSplit s, float* h, float* a) {
      cpu().run(s.indices(kRows), ActivationBackward{a, h, s, mask()});
    };
    EXPECT_EQ(outputs(split(), backward), outputs(whole_rows(), backward));
  }
  for (const float* with_bias : {b, static_cast<const float*>(nullptr)}) {
    auto residual = [&](RowSplit s, float* h, float* a) {
      cpu().run(s.indices(kRows), BiasDropoutResidualAdd{h, a, with_bias, s, -1.0f, mask()});
    };
    EXPECT_EQ(outputs(split(), residual), outputs(whole_rows(), residual));
  }
}

// The CPU's own loops for AdamW and the embedding (kernels/cpu/flat_loops.h) give the plain
// per-element loops' bits: ragged blocks of the optimizer, a skipped update, every position kind
// with and without dropout, rows wider than the embedding's column block.
TEST(FlatLoops, AdamWAndEmbeddingGiveThePlainLoopsBits) {
  const std::unique_ptr<Executor> tuned = make_cpu_executor(2), plain = make_cpu_executor(2);
  plain->set_kernel_variant(KernelVariant::kPlain);
  const int64_t n = 70001;
  std::vector<uint8_t> decay(n);
  for (int64_t i = 0; i < n; ++i) decay[i] = i % 3 != 0;
  auto v0 = test::random_vector(n, 52);
  for (float& x : v0) x *= x;  // second moments are squares
  for (const int32_t finite : {1, 0}) {
    std::vector<std::vector<float>> results[2];
    for (int which = 0; which < 2; ++which) {
      Executor& ex = which == 0 ? *tuned : *plain;
      DeviceBuffer<float> param(ex, n), m(ex, n), v(ex, n), grad(ex, n);
      param.upload(test::random_vector(n, 50));
      m.upload(test::random_vector(n, 51));
      v.upload(v0);
      grad.upload(test::random_vector(n, 53));
      DeviceBuffer<uint8_t> decay_mask(ex, n);
      ex.upload(decay_mask.data(), decay.data(), decay.size());
      DeviceBuffer<GradientNormResult> norm(ex, 1);
      const GradientNormResult host_norm{3.0, 0.7f, finite};
      ex.upload(norm.data(), &host_norm, sizeof(host_norm));
      DeviceBuffer<AdamWStepScalars> scalars(ex, 1);
      const AdamWStepScalars host_scalars{1e-3f, 0.271f, 0.0589f};
      ex.upload(scalars.data(), &host_scalars, sizeof(host_scalars));
      AdamWArgs a;
      a.param = param.data();
      a.m = m.data();
      a.v = v.data();
      a.grad = grad.data();
      a.decay = decay_mask.data();
      a.norm = norm.data();
      a.scalars = scalars.data();
      a.count = n;
      a.weight_decay = 0.01f;
      adamw_update(ex, a);
      results[which] = {param.download(), m.download(), v.download()};
    }
    EXPECT_EQ(results[0], results[1]) << "finite " << finite;
  }

  const int64_t batch = 2, seq_len = 24, d_model = 520, vocab = 7, n2 = 6, d1 = 200;
  const int64_t rows = batch * seq_len;
  std::vector<int32_t> tokens(rows);
  for (int64_t r = 0; r < rows; ++r) tokens[r] = static_cast<int32_t>((r * 5 + 3) % vocab);
  for (PositionKind kind : {PositionKind::kNone, PositionKind::kAxial, PositionKind::kLearned})
    for (const float keep : {1.0f, 0.9f}) {
      std::vector<float> outputs[2];
      for (int which = 0; which < 2; ++which) {
        Executor& ex = which == 0 ? *tuned : *plain;
        DeviceBuffer<int32_t> device_tokens(ex, rows);
        ex.upload(device_tokens.data(), tokens.data(), tokens.size() * sizeof(int32_t));
        DeviceBuffer<float> table(ex, vocab * d_model), axial_a(ex, 4 * d1),
            axial_b(ex, n2 * (d_model - d1)), learned(ex, seq_len * d_model),
            out(ex, rows * d_model);
        table.upload(test::random_vector(vocab * d_model, 54));
        axial_a.upload(test::random_vector(4 * d1, 55));
        axial_b.upload(test::random_vector(n2 * (d_model - d1), 56));
        learned.upload(test::random_vector(seq_len * d_model, 57));
        EmbeddingArgs a;
        a.tokens = device_tokens.data();
        a.table = table.data();
        a.positions.kind = kind;
        a.positions.axial_a = axial_a.data();
        a.positions.axial_b = axial_b.data();
        a.positions.learned = learned.data();
        a.positions.n2 = n2;
        a.positions.d1 = d1;
        a.positions.d2 = d_model - d1;
        a.out = out.data();
        a.rows = rows;
        a.seq_len = seq_len;
        a.d_model = d_model;
        a.dropout.keep = keep;
        a.dropout.stream = RngStream{5, 0, 1, 2};
        a.dropout.seq_len = seq_len;
        a.dropout.cols = d_model;
        embedding_forward(ex, a);
        outputs[which] = out.download();
      }
      EXPECT_EQ(outputs[0], outputs[1]) << static_cast<int>(kind) << " keep " << keep;
    }
}

// The CPU's loops for the embedding's gradients (kernels/cpu/embedding_grad_loops.h) sum whole
// rows into blocks of columns; they give the plain functors' bits: rows wider than a block, a
// token without rows, a grid with a column count that is not a whole block of rows, a batch.
TEST(FlatLoops, EmbeddingGradientsGiveThePlainLoopsBits) {
  const std::unique_ptr<Executor> tuned = make_cpu_executor(2), plain = make_cpu_executor(2);
  plain->set_kernel_variant(KernelVariant::kPlain);
  const int64_t batch = 2, n1 = 5, n2 = 11, seq_len = n1 * n2, d_model = 300, d1 = 270;
  const int64_t d2 = d_model - d1, rows = batch * seq_len, vocab = 7;
  const std::vector<float> dx = test::random_vector(rows * d_model, 60);
  // Rows grouped by token (token 3 has none), as the launcher groups them.
  std::vector<int32_t> tokens(rows), offsets(vocab + 1, 0), order;
  for (int64_t r = 0; r < rows; ++r) tokens[r] = static_cast<int32_t>((r * r + 5 * r) % vocab);
  for (int32_t& t : tokens) t = t == 3 ? 4 : t;
  for (int32_t v = 0; v < vocab; ++v) {
    offsets[v] = static_cast<int32_t>(order.size());
    for (int64_t r = 0; r < rows; ++r)
      if (tokens[r] == v) order.push_back(static_cast<int32_t>(r));
  }
  offsets[vocab] = static_cast<int32_t>(order.size());
  std::vector<float> dtable[2], daxial_a[2], daxial_b[2];
  for (int which = 0; which < 2; ++which) {
    Executor& ex = which == 0 ? *tuned : *plain;
    dtable[which] = test::random_vector(vocab * d_model, 61);
    ex.run(vocab * d_model, EmbedTokenBackward{offsets.data(), order.data(), dx.data(),
                                               dtable[which].data(), d_model});
    daxial_a[which] = test::random_vector(n1 * d1, 62);
    daxial_b[which] = test::random_vector(n2 * d2, 63);
    AxialPositionBackward op{};
    op.dx = dx.data();
    op.daxial_a = daxial_a[which].data();
    op.daxial_b = daxial_b[which].data();
    op.batch = batch;
    op.seq_len = seq_len;
    op.d_model = d_model;
    op.n1 = n1;
    op.n2 = n2;
    op.d1 = d1;
    op.d2 = d2;
    ex.run(n1 * d1 + n2 * d2, op);
  }
  EXPECT_EQ(dtable[0], dtable[1]);
  EXPECT_EQ(daxial_a[0], daxial_a[1]);
  EXPECT_EQ(daxial_b[0], daxial_b[1]);
  EXPECT_NE(dtable[0], test::random_vector(vocab * d_model, 61));  // (the sums were added)
}

// The CPU's loop for shared-QK key scales (kernels/cpu/flat_loops.h) walks the key rows by the
// row stride, each head of a row at once, where the launch has whole examples; it gives the plain
// functor's bits across blocks that start inside an example, with a memory (the key rows in two
// runs), for a launch that starts at a later example, and (the plain loop) at a later head.
TEST(FlatLoops, KeyNormScalesGiveThePlainLoopsBits) {
  const std::unique_ptr<Executor> tuned = make_cpu_executor(2), plain = make_cpu_executor(2);
  plain->set_kernel_variant(KernelVariant::kPlain);
  const int64_t batch = 2, heads = 3, seq_len = 700, d = 33, ld = heads * d + 5;
  for (const int64_t memory_len : {int64_t{0}, int64_t{100}})
    for (const int64_t first_segment : {int64_t{0}, int64_t{1}, heads}) {
      const int64_t segments = batch * heads - first_segment;
      const std::vector<float> keys = test::random_vector(batch * seq_len * ld, 58);
      ChunkAttentionParams p;
      p.q = keys.data();
      p.k = memory_len > 0 ? keys.data() : nullptr;  // (shared QK has no memory)
      p.ld = ld;
      p.heads = heads;
      p.d = d;
      p.batch = batch;
      p.memory_len = memory_len;
      p.first_segment = first_segment;
      p.segments = segments;
      p.layout.seq_len = seq_len;
      std::vector<float> scales[2];
      for (int which = 0; which < 2; ++which) {
        scales[which].assign(segments * seq_len, -1.0f);
        (which == 0 ? *tuned : *plain)
            .run(segments * seq_len, KeyNormScales{p, scales[which].data()});
      }
      EXPECT_EQ(scales[0], scales[1])
          << "memory " << memory_len << ", first segment " << first_segment;
      EXPECT_EQ(std::count(scales[0].begin(), scales[0].end(), -1.0f), 0);
    }
}

// The forward of a pass that goes backward leaves act'(pre-activation) in h, computed from the same
// tanh as the activation (exactly gelu_derivative's bits, ReLU's 0 or 1); one that does not
// leaves h alone. Both write the same activation.
TEST(Activation, ForwardKeepsTheDerivativeTheBackwardReads) {
  const int64_t rows = 5, cols = 70;
  const RowSplit s{cols, cols};
  const auto bias = test::random_vector(cols, 31);
  auto h0 = test::random_vector(rows * cols, 32);
  for (float& x : h0) x *= 4.0f;  // into GELU's curved range and past ReLU's kink
  const auto db = test::to_device(bias);
  for (Activation act : {Activation::kGelu, Activation::kRelu}) {
    auto kept = test::to_device(h0), left = test::to_device(h0);
    auto a_kept = test::to_device(h0), a_left = test::to_device(h0);
    BiasActivationForward op{kept.data(), a_kept.data(), db.data(), s, act, DropoutMask{}};
    cpu().run(s.indices(rows), op);
    op.h = left.data();
    op.a = a_left.data();
    op.keep_derivative = false;
    cpu().run(s.indices(rows), op);
    EXPECT_EQ(a_kept.download(), a_left.download());
    EXPECT_EQ(left.download(), h0);
    const auto derivative = kept.download();
    int64_t wrong = 0;
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float pre = h0[i] + bias[i % cols];
      const float want =
          act == Activation::kGelu ? gelu_derivative(pre) : (pre > 0.0f ? 1.0f : 0.0f);
      wrong += derivative[i] != want;
    }
    EXPECT_EQ(wrong, 0) << activation_name(act);
  }
}

// The activation kernels writing bf16 for the next product (a_bf16, grad_bf16) write the rounding
// of exactly what they write in fp32 otherwise, with and without dropout, across the blocks of
// columns the forward rounds at a time (kActivationBlock) and for every span.
TEST_P(RowSplitTest, ActivationKernelsWriteTheRoundingOfTheirFp32Results) {
  const int64_t cols = kActivationBlock + 45;  // a whole block and a partial one
  const RowSplit s{cols, GetParam() == kCols ? cols : GetParam()};
  const auto bias = test::to_device(test::random_vector(cols, 27));
  const auto h0 = test::random_vector(kRows * cols, 28), g0 = test::random_vector(kRows * cols, 29);
  for (Activation act : {Activation::kGelu, Activation::kRelu})
    for (const bool dropout : {false, true}) {
      DropoutMask m = mask();
      m.cols = cols;
      if (!dropout) m.keep = 1.0f;
      auto h = test::to_device(h0), a = test::to_device(h0);
      cpu().run(s.indices(kRows),
                BiasActivationForward{h.data(), a.data(), bias.data(), s, act, m});
      auto h16 = test::to_device(h0);
      DeviceBuffer<uint16_t> a16(cpu(), h0.size());
      BiasActivationForward op{h16.data(), nullptr, bias.data(), s, act, m};
      op.a_bf16 = a16.data();
      cpu().run(s.indices(kRows), op);
      EXPECT_EQ(h16.download(), h.download());
      std::vector<uint16_t> got(h0.size());
      cpu().download(got.data(), a16.data(), got.size() * sizeof(uint16_t));
      EXPECT_EQ(got, test::bf16_bits_of(a.download())) << static_cast<int>(act) << dropout;

      auto g = test::to_device(g0), g_also = test::to_device(g0);
      cpu().run(s.indices(kRows), ActivationBackward{g.data(), h.data(), s, m});
      DeviceBuffer<uint16_t> g16(cpu(), g0.size());
      ActivationBackward back{g_also.data(), h.data(), s, m};
      back.grad_bf16 = g16.data();
      cpu().run(s.indices(kRows), back);
      const auto want = g.download();
      EXPECT_EQ(g_also.download(), want);
      cpu().download(got.data(), g16.data(), got.size() * sizeof(uint16_t));
      EXPECT_EQ(got, test::bf16_bits_of(want)) << static_cast<int>(act) << dropout;
    }
}

TEST_P(RowSplitTest, ColumnSumsGiveTheSameBitsForEverySpan) {
  constexpr int64_t kBlockRows = 16, kBlocks = (kRows + kBlockRows - 1) / kBlockRows;
  const auto x = test::to_device(test::random_vector(kRows * kCols, 24));
  const auto dy = test::to_device(test::random_vector(kRows * kCols, 25));
  const auto stats = test::to_device(test::random_vector(2 * kRows, 26));
  auto partials = [&](RowSplit s) {
    DeviceBuffer<float> sums(cpu(), kBlocks * kCols), pg(cpu(), kBlocks * kCols),
        pb(cpu(), kBlocks * kCols);
    cpu().run(s.indices(kBlocks), ColumnPartialSum{x.data(), sums.data(), kRows, kBlockRows, s});
    cpu().run(s.indices(kBlocks),
              LayerNormParamGradPartial{x.data(), dy.data(), stats.data(), stats.data() + kRows,
                                        pg.data(), pb.data(), kRows, kBlockRows, s});
    return std::vector<std::vector<float>>{sums.download(), pg.download(), pb.download()};
  };
  EXPECT_EQ(partials(split()), partials(whole_rows()));
}

// Layer norm as the GPU runs it (statistics kernel first, then pieces of rows) against the CPU's
// whole rows with the statistics computed inline: the same bits, forward and backward.
TEST_P(RowSplitTest, LayerNormGivesTheSameBitsWithStatisticsFirst) {
  const auto gamma = test::to_device(test::random_vector(kCols, 27));
  const auto beta = test::to_device(test::random_vector(kCols, 28));
  const auto x = test::to_device(test::random_vector(kRows * kCols, 29));
  const auto dy = test::to_device(test::random_vector(kRows * kCols, 30));
  const float eps = 1e-5f;
  auto run = [&](RowSplit s, bool stats_first) {
    DeviceBuffer<float> y(cpu(), kRows * kCols), dx(cpu(), kRows * kCols), mean(cpu(), kRows),
        rstd(cpu(), kRows), mean_g(cpu(), kRows), mean_gx(cpu(), kRows);
    dx.upload(test::random_vector(kRows * kCols, 31));  // accumulated into
    if (stats_first)
      cpu().run(kRows, LayerNormRowStats{x.data(), nullptr, nullptr, mean.data(), rstd.data(),
                                         nullptr, nullptr, kCols, eps});
    cpu().run(s.indices(kRows), LayerNormForward{x.data(), gamma.data(), beta.data(), y.data(),
                                                 stats_first ? mean.data() : nullptr,
                                                 stats_first ? rstd.data() : nullptr, s, eps});
    if (stats_first)
      cpu().run(kRows, LayerNormRowStats{x.data(), gamma.data(), dy.data(), mean.data(),
                                         rstd.data(), mean_g.data(), mean_gx.data(), kCols, eps});
    cpu().run(s.indices(kRows), LayerNormBackward{x.data(), gamma.data(), dy.data(), dx.data(),
                                                  mean.data(), rstd.data(), mean_g.data(),
                                                  mean_gx.data(), s, eps, stats_first, true});
    return std::vector<std::vector<float>>{y.download(), dx.download(), mean.download(),
                                           rstd.download()};
  };
  EXPECT_EQ(run(split(), true), run(whole_rows(), false));
}

// Layer norm writing bf16 for the products that read its output (y_bf16) writes the rounding of
// exactly what it writes in fp32 otherwise, for every span, with the statistics inline or first.
TEST_P(RowSplitTest, LayerNormWritesTheRoundingOfItsFp32Result) {
  const auto gamma = test::to_device(test::random_vector(kCols, 33));
  const auto beta = test::to_device(test::random_vector(kCols, 34));
  const auto x = test::to_device(test::random_vector(kRows * kCols, 35));
  const float eps = 1e-5f;
  DeviceBuffer<float> mean(cpu(), kRows), rstd(cpu(), kRows);
  cpu().run(kRows, LayerNormRowStats{x.data(), nullptr, nullptr, mean.data(), rstd.data(), nullptr,
                                     nullptr, kCols, eps});
  for (const bool stats_first : {false, true}) {
    DeviceBuffer<float> y(cpu(), kRows * kCols);
    LayerNormForward op{x.data(),
                        gamma.data(),
                        beta.data(),
                        y.data(),
                        stats_first ? mean.data() : nullptr,
                        stats_first ? rstd.data() : nullptr,
                        split(),
                        eps};
    cpu().run(split().indices(kRows), op);
    DeviceBuffer<uint16_t> y16(cpu(), kRows * kCols);
    op.y = nullptr;
    op.y_bf16 = y16.data();
    cpu().run(split().indices(kRows), op);
    std::vector<uint16_t> got(kRows * kCols);
    cpu().download(got.data(), y16.data(), got.size() * sizeof(uint16_t));
    EXPECT_EQ(got, test::bf16_bits_of(y.download())) << stats_first;
  }
}

// The layer-norm backward's bf16 gradient rows (dx_bf16, for the products that read the gradient
// next) are the rounding of exactly the fp32 dx it writes, for every span, overwriting or adding,
// with the statistics inline or first.
TEST_P(RowSplitTest, LayerNormBackwardWritesTheRoundingOfItsFp32Gradient) {
  const auto gamma = test::to_device(test::random_vector(kCols, 36));
  const auto x = test::to_device(test::random_vector(kRows * kCols, 37));
  const auto dy = test::to_device(test::random_vector(kRows * kCols, 38));
  const auto dx0 = test::random_vector(kRows * kCols, 39);
  const float eps = 1e-5f;
  for (const bool stats_first : {false, true})
    for (const bool accumulate : {false, true}) {
      DeviceBuffer<float> dx(cpu(), kRows * kCols), mean(cpu(), kRows), rstd(cpu(), kRows),
          mean_g(cpu(), kRows), mean_gx(cpu(), kRows);
      DeviceBuffer<uint16_t> dx16(cpu(), kRows * kCols);
      dx.upload(dx0);
      if (stats_first)
        cpu().run(kRows, LayerNormRowStats{x.data(), gamma.data(), dy.data(), mean.data(),
                                           rstd.data(), mean_g.data(), mean_gx.data(), kCols, eps});
      LayerNormBackward op{x.data(),    gamma.data(), dy.data(),     dx.data(),
                           mean.data(), rstd.data(),  mean_g.data(), mean_gx.data(),
                           split(),     eps,          stats_first,   accumulate};
      op.dx_bf16 = dx16.data();
      cpu().run(split().indices(kRows), op);
      std::vector<uint16_t> got(kRows * kCols);
      cpu().download(got.data(), dx16.data(), got.size() * sizeof(uint16_t));
      EXPECT_EQ(got, test::bf16_bits_of(dx.download())) << stats_first << accumulate;
    }
}

INSTANTIATE_TEST_SUITE_P(Spans, RowSplitTest, ::testing::Values(1, 5, 36));

}  // namespace
}  // namespace rf
