// Choosing tokens from logits (trainer/sampling.h): greedy, temperature, top-k and the nucleus
// (top-p), their order, and that generate() applies them.
#include "trainer/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/model_fixture.h"
#include "trainer/generate.h"

namespace rf {
namespace {

// Probabilities 0.5, 0.3, 0.15, 0.05 at tokens 2, 0, 3, 1 (logits shifted by a constant, which
// changes nothing).
const std::vector<float> kLogits = {std::log(0.3f) + 4, std::log(0.05f) + 4, std::log(0.5f) + 4,
                                    std::log(0.15f) + 4};

// How often each token is drawn in `draws` draws (numbers 0 .. draws - 1 of one stream).
std::vector<double> frequencies(const SamplingRule& rule, int draws = 40000) {
  const RngStream rng = make_rng_stream(7, RngPurpose::kSampling, 0, 0, 0, 0);
  std::vector<double> f(kLogits.size(), 0.0);
  for (int i = 0; i < draws; ++i) f[sample_token(kLogits, rule, rng, i)] += 1.0 / draws;
  return f;
}

// Each frequency within 0.01 of `expected` (40,000 draws: a standard deviation of at most 0.0025),
// and tokens expected never drawn never drawn.
void expect_frequencies(const SamplingRule& rule, const std::vector<double>& expected) {
  SCOPED_TRACE("temperature " + std::to_string(rule.temperature) + ", top_k " +
               std::to_string(rule.top_k) + ", top_p " + std::to_string(rule.top_p));
  const std::vector<double> f = frequencies(rule);
  for (size_t t = 0; t < expected.size(); ++t) {
    if (expected[t] == 0.0)
      EXPECT_EQ(f[t], 0.0) << "token " << t;
    else
      EXPECT_NEAR(f[t], expected[t], 0.01) << "token " << t;
  }
}

TEST(Sampling, GreedyTakesTheMostLikelyAndTheFirstOfEquals) {
  const RngStream rng = make_rng_stream(1, RngPurpose::kSampling, 0, 0, 0, 0);
  SamplingRule greedy;
  greedy.temperature = 0.0;
  EXPECT_EQ(sample_token(kLogits, greedy, rng, 0), 2);
  EXPECT_EQ(sample_token({1.0f, 3.0f, 3.0f, -2.0f}, greedy, rng, 5), 1);
}

TEST(Sampling, DrawsInProportionToTheProbabilities) {
  expect_frequencies({}, {0.3, 0.05, 0.5, 0.15});
  // Temperature 2: proportional to the square roots.
  const double a = std::sqrt(0.3), b = std::sqrt(0.05), c = std::sqrt(0.5), d = std::sqrt(0.15);
  const double z = a + b + c + d;
  expect_frequencies({2.0, 0, 1.0}, {a / z, b / z, c / z, d / z});
}

TEST(Sampling, TopKAndTopPDrawFromTheirShareRenormalised) {
  // The two most likely, as top-k and as the nucleus: 0.5 holds less than 0.7, 0.5 + 0.3 more.
  expect_frequencies({1.0, 2, 1.0}, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
  expect_frequencies({1.0, 0, 0.7}, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
  // Three: 0.8 is less than 0.85.
  expect_frequencies({1.0, 0, 0.85}, {0.3 / 0.95, 0.0, 0.5 / 0.95, 0.15 / 0.95});
  // A nucleus smaller than the most likely token's probability keeps that token.
  expect_frequencies({1.0, 0, 0.4}, {0.0, 0.0, 1.0, 0.0});
  // Top-k first, then top-p of what it left (as Hugging Face's warpers): the top two renormalised
  // are 0.625 and 0.375, and 0.625 alone reaches 0.6, where the nucleus of all four would be two.
  expect_frequencies({1.0, 2, 0.6}, {0.0, 0.0, 1.0, 0.0});
  expect_frequencies({1.0, 0, 0.6}, {0.3 / 0.8, 0.0, 0.5 / 0.8, 0.0});
}

TEST(Sampling, TheSameNumberDrawsTheSameToken) {
  const RngStream rng = make_rng_stream(3, RngPurpose::kSampling, 0, 0, 0, 0);
  const SamplingRule rule{0.9, 3, 0.95};
  int changed = 0;
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(sample_token(kLogits, rule, rng, i), sample_token(kLogits, rule, rng, i));
    changed += sample_token(kLogits, rule, rng, i) != sample_token(kLogits, rule, rng, i + 1);
  }
  EXPECT_GT(changed, 0);  // different numbers do draw different tokens
}

// generate() passes top_p on: a nucleus this small keeps only the most likely token, so sampling
// at temperature 1 writes the greedy text, and without it the text differs.
TEST(Sampling, GenerateWithATinyNucleusWritesTheGreedyText) {
  ReformerModel m(test::tiny_config(), test::cpu());
  test::randomize_params(m, 21);
  SamplingOptions o;
  o.tokens = 24;
  o.temperature = 0.0;
  const std::vector<int32_t> greedy = generate(m, {1, 2, 3}, o);
  o.temperature = 1.0;
  o.top_p = 1e-6;
  EXPECT_EQ(generate(m, {1, 2, 3}, o), greedy);
  o.top_p = 1.0;
  EXPECT_NE(generate(m, {1, 2, 3}, o), greedy);
}

// A tokenizer of fewer pieces than the model's vocabulary (a padded Hugging Face one) cannot
// decode the ids past it: generate failed after sampling the whole text. Those ids are not drawn.
TEST(Sampling, GenerateDrawsOnlyIdsTheTokenizerHas) {
  ReformerModel m(test::tiny_config(), test::cpu());
  test::randomize_params(m, 22);
  SamplingOptions o;
  o.tokens = 64;
  o.temperature = 50.0;  // nearly uniform: every id would come up
  const std::vector<int32_t> free = generate(m, {1}, o);
  EXPECT_GT(*std::max_element(free.begin(), free.end()), 3);
  o.vocabulary = 4;
  const std::vector<int32_t> limited = generate(m, {1}, o);
  EXPECT_LT(*std::max_element(limited.begin() + 1, limited.end()), 4);
}

}  // namespace
}  // namespace rf
