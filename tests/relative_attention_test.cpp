// Fused chunked attention with Transformer-XL's relative scores and distance mask, against a
// direct double-precision definition: per (query t, key j <= t in its window) the score
// q.k / sqrt(d) + rel[t, t - j], keys further back than max_distance masked. Every kernel variant
// of the CPU executor (the tiles, the reference functors, the GPU's indexing); the relative
// scores' gradient by finite differences; the bf16 AMX tiles within bf16 rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/chunked_attention.h"
#include "kernels/cpu/chunk_attention_tiles.h"
#include "tests/test_util.h"

namespace rf {
namespace {

struct RelCase {
  int64_t batch = 2, heads = 2, T = 48, d = 8, chunk = 16, lookback = 1, rel_len = 32;
  int64_t max_distance = -1;
  float keep = 1.0f;
  std::string name() const {
    return "T" + std::to_string(T) + " d" + std::to_string(d) + " chunk" + std::to_string(chunk) +
           " lb" + std::to_string(lookback) + " rel" + std::to_string(rel_len) + " max" +
           std::to_string(max_distance) + (keep < 1 ? " dropout" : "");
  }
  int64_t ld() const { return heads * d; }
  int64_t rows() const { return batch * T; }
  int64_t rel_size() const { return batch * heads * T * rel_len; }
};

struct RelProblem {
  RelProblem(const RelCase& c, Executor& /*ex: CPU executors share host memory*/)
      : c(c),
        q(test::to_device(test::random_vector(c.rows() * c.ld(), 3))),
        k(test::to_device(test::random_vector(c.rows() * c.ld(), 4))),
        v(test::to_device(test::random_vector(c.rows() * c.ld(), 5))),
        rel(test::to_device(test::random_vector(c.rel_size(), 6))) {}
  ChunkedAttentionArgs args() const {
    ChunkedAttentionArgs a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.ld = c.ld();
    a.batch = c.batch;
    a.heads = c.heads;
    a.seq_len = c.T;
    a.d = c.d;
    a.chunk = c.chunk;
    a.lookback = c.lookback;
    a.key_scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    a.rel_scores = rel.data();
    a.rel_len = c.rel_len;
    a.max_distance = c.max_distance;
    a.dropout.keep = c.keep;
    a.dropout.stream = make_rng_stream(7, RngPurpose::kAttentionDropout, 1, 0, 0, 0);
    return a;
  }
  RelCase c;
  DeviceBuffer<float> q, k, v, rel;
};

// The keys query t sees: its chunk and (with look-back) the one before, never later than t.
bool in_window(const RelCase& c, int64_t t, int64_t j) {
  if (j > t) return false;
  if (c.lookback == 0) return j / c.chunk == t / c.chunk;
  return j / c.chunk == t / c.chunk || j / c.chunk + 1 == t / c.chunk;
}

// The attention output from the definition, in double (no dropout).
std::vector<float> direct_output(const RelCase& c, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& v,
                                 const std::vector<float>& rel) {
  std::vector<float> out(c.rows() * c.ld());
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t t = 0; t < c.T; ++t) {
        std::vector<double> w(c.T, 0.0);
        double mx = -1e300;
        for (int64_t j = 0; j < c.T; ++j) {
          if (!in_window(c, t, j)) continue;
          double dot = 0;
          for (int64_t x = 0; x < c.d; ++x)
            dot += double{q[(b * c.T + t) * c.ld() + h * c.d + x]} *
                   k[(b * c.T + j) * c.ld() + h * c.d + x];
          double score = dot / std::sqrt(static_cast<double>(c.d));
          if (t - j < c.rel_len) score += rel[(((h * c.batch + b) * c.T) + t) * c.rel_len + t - j];
          if (c.max_distance >= 0 && t - j > c.max_distance) score -= 1e9;
          w[j] = score;
          mx = std::max(mx, score);
        }
        double z = 0;
        for (int64_t j = 0; j < c.T; ++j)
          if (in_window(c, t, j)) z += (w[j] = std::exp(w[j] - mx));
        for (int64_t x = 0; x < c.d; ++x) {
          double o = 0;
          for (int64_t j = 0; j < c.T; ++j)
            if (in_window(c, t, j)) o += w[j] / z * v[(b * c.T + j) * c.ld() + h * c.d + x];
          out[(b * c.T + t) * c.ld() + h * c.d + x] = static_cast<float>(o);
        }
      }
  return out;
}

std::vector<float> forward(const RelProblem& p, Executor& ex) {
  DeviceBuffer<float> out(ex, p.c.rows() * p.c.ld());
  Workspace ws(ex);
  chunked_attention_forward(ex, ws, p.args(), out.data(), p.c.ld());
  return out.download();
}

// The gradient of sum(out * weights) with respect to the relative scores (and q, for a check
// that the relative term does not disturb the others).
std::vector<float> rel_gradient(const RelProblem& p, const std::vector<float>& weights,
                                Executor& ex) {
  const int64_t n = p.c.rows() * p.c.ld();
  DeviceBuffer<float> dq(ex, n), dk(ex, n), dv(ex, n), drel(ex, p.c.rel_size());
  DeviceBuffer<float> g = test::to_device(weights);
  Workspace ws(ex);
  ChunkedAttentionGrads grads{dq.data(), dk.data(), dv.data(), p.c.ld()};
  grads.rel_grads = drel.data();
  chunked_attention_backward(ex, ws, p.args(), g.data(), p.c.ld(), grads, nullptr, 0);
  return drel.download();
}

std::vector<RelCase> cases() {
  std::vector<RelCase> all;
  RelCase c;
  all.push_back(c);  // local, rel_len covering the window (2 chunks)
  c.rel_len = 20;    // distances 20..31 add nothing
  all.push_back(c);
  c = RelCase();
  c.max_distance = 9;  // same_length's mask inside the window
  all.push_back(c);
  c = RelCase();
  c.chunk = c.T = 40;  // dense: one chunk, no look-back, distances up to 39
  c.lookback = 0;
  c.rel_len = 40;
  c.d = 12;
  all.push_back(c);
  c = RelCase();
  c.T = c.chunk = 24;  // one chunk that is its own look-back: every key twice in the window
  c.rel_len = 24;
  all.push_back(c);
  c = RelCase();
  c.T = 150;  // over several 64-slot tiles, a partial last tile
  c.chunk = 150;
  c.lookback = 0;
  c.rel_len = 150;
  c.d = 20;
  c.batch = c.heads = 1;
  all.push_back(c);
  return all;
}

TEST(RelativeAttention, EveryKernelVariantEqualsTheDefinition) {
  for (KernelVariant variant :
       {KernelVariant::kTuned, KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
    const std::unique_ptr<Executor> ex = make_cpu_executor(0);
    ex->set_kernel_variant(variant);
    for (const RelCase& c : cases()) {
      const RelProblem p(c, *ex);
      const std::vector<float> want =
          direct_output(c, p.q.download(), p.k.download(), p.v.download(), p.rel.download());
      const std::vector<float> got = forward(p, *ex);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::fabs(double{got[i]} - want[i]));
      EXPECT_LT(worst, 2e-5) << c.name() << " variant " << static_cast<int>(variant);
    }
  }
}

TEST(RelativeAttention, WithoutTheRelativeScoresTheOutputChanges) {
  // (So the definition test above is not passing on an ignored term.)
  const RelCase c;
  const RelProblem p(c, test::cpu());
  ChunkedAttentionArgs plain = p.args();
  plain.rel_scores = nullptr;
  DeviceBuffer<float> out(test::cpu(), c.rows() * c.ld());
  Workspace ws(test::cpu());
  chunked_attention_forward(test::cpu(), ws, plain, out.data(), c.ld());
  const std::vector<float> with = forward(p, test::cpu()), without = out.download();
  double diff = 0;
  for (size_t i = 0; i < with.size(); ++i)
    diff = std::max(diff, double{std::fabs(with[i] - without[i])});
  EXPECT_GT(diff, 1e-2);
}

// d sum(out * weights) / d rel against central differences along random directions, and the
// same gradient from every kernel variant (each pair's dS added in window order: the same bits).
TEST(RelativeAttention, RelativeScoreGradientsMatchFiniteDifferences) {
  for (RelCase c : cases()) {
    c.keep = 0.8f;  // with attention dropout
    const RelProblem p(c, test::cpu());
    const auto weights = test::random_vector(c.rows() * c.ld(), 8);
    const std::vector<float> grad = rel_gradient(p, weights, test::cpu());
    const std::vector<float> rel0 = p.rel.download();
    const auto direction = test::random_vector(rel0.size(), 9);
    auto perturb = [&](float s) {
      std::vector<float> x = rel0;
      for (size_t i = 0; i < x.size(); ++i) x[i] += s * direction[i];
      const_cast<DeviceBuffer<float>&>(p.rel).upload(x);
    };
    auto loss = [&] { return test::dot(forward(p, test::cpu()), weights); };
    test::expect_directional_derivative(perturb, loss, test::dot(grad, direction), 1e-2, 2e-3,
                                        c.name());
    perturb(0.0f);
    for (KernelVariant variant : {KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
      const std::unique_ptr<Executor> ex = make_cpu_executor(0);
      ex->set_kernel_variant(variant);
      const RelProblem same(c, *ex);
      const std::vector<float> other = rel_gradient(same, weights, *ex);
      double worst = 0, scale = 1e-30;
      for (size_t i = 0; i < grad.size(); ++i) {
        worst = std::max(worst, std::fabs(double{other[i]} - grad[i]));
        scale = std::max(scale, std::fabs(double{grad[i]}));
      }
      EXPECT_LT(worst / scale, 2e-5) << c.name() << " variant " << static_cast<int>(variant);
    }
  }
}

}  // namespace
}  // namespace rf
