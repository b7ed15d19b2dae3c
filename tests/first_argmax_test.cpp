// The CPU's vectorised first-largest-value search (kernels/cpu/first_argmax.h) against the scan
// it replaces, and the cross-entropy row built on it against the functor.
#include "kernels/cpu/first_argmax.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/ops/cross_entropy.h"

namespace rf {
namespace {

// The cross-entropy's vectorised prediction (first largest logit) picks what the scan picks:
// lengths around the vector width with short tails, tied maxima, +0 against -0, infinities, a NaN
// first, inside, or in the tail; and the whole tuned row (the CPU executor's) gives the functor's
// bits, gradient included.
TEST(FirstArgmax, VectorisedArgmaxPicksWhatTheScanPicks) {
  std::mt19937 gen(29);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 15, 16, 17, 31, 32, 33, 100, 1000}) {
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<float> z(static_cast<size_t>(n));
      for (float& x : z) x = uniform(gen);
      const int kind = trial % 9;
      const auto a = static_cast<size_t>(gen() % n), b = static_cast<size_t>(gen() % n);
      if (kind == 1) z[a] = z[b] = 5.0f;  // tied maximum
      if (kind == 2) std::fill(z.begin(), z.end(), -1.0f), z[a] = -0.0f, z[b] = 0.0f;
      if (kind == 3) z[a] = inf, z[b] = -inf;
      if (kind == 4) std::fill(z.begin(), z.end(), -inf);
      if (kind == 5) z[a] = std::nanf("");
      if (kind == 6) z[0] = std::nanf("");
      if (kind == 7) z[static_cast<size_t>(n) - 1] = 9.0f;  // in the tail
      if (kind == 8)
        for (float& x : z) x = std::floor(std::fabs(x));  // many ties
      ASSERT_EQ(cpu::first_argmax(z.data(), n), cpu::first_argmax_scan(z.data(), n))
          << "n " << n << ", trial " << trial;
    }
  }
  const int64_t rows = 6, vocab = 300;
  std::vector<float> logits(rows * vocab);
  for (float& x : logits) x = std::floor(uniform(gen));  // ties
  std::vector<int32_t> targets = {0, 5, 299, 17, 3, 100}, want_pred(rows), got_pred(rows);
  std::vector<float> want = logits, got = logits, want_loss(rows), got_loss(rows);
  CrossEntropyRow op{want.data(), targets.data(), want_loss.data(), want_pred.data(), vocab, 0.25f,
                     true};
  for (int64_t r = 0; r < rows; ++r) op(r);
  op.logits = got.data();
  op.loss = got_loss.data();
  op.prediction = got_pred.data();
  for (int64_t r = 0; r < rows; ++r) op.finish(r, cpu::first_argmax(got.data() + r * vocab, vocab));
  EXPECT_EQ(got_pred, want_pred);
  EXPECT_EQ(got_loss, want_loss);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace rf
