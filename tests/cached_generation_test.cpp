// Cached generation: the attention of new positions over a key/value cache against the fused
// chunked attention over the whole sequence (dense, local, relative terms, distance limit); the
// model's cached logits against re-running the window, position by position, for each attention
// and position kind; greedy generation with the cache against generation without it, token for
// token; the context's restart past the window; LSH models falling back to the window, or with
// --lsh-cache fixing each position's windows when it arrives (against a brute-force listing, the
// uncached pass where that is defined to agree, and the same text fed in other pieces).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "data/window_source.h"
#include "kernels/cached_attention.h"
#include "kernels/chunked_attention.h"
#include "tests/model_fixture.h"
#include "trainer/evaluate.h"
#include "trainer/generate.h"
#include "trainer/lsh_generation_windows.h"
#include "trainer/segment_memory.h"

namespace rf {
namespace {

using test::cpu;

struct AttentionCase {
  int64_t heads = 2, T = 48, d = 8, chunk = 0, rel_len = 0, max_distance = -1;
  int64_t first = 0, queries = 1;  // the new positions
  std::string name() const {
    return "chunk" + std::to_string(chunk) + " rel" + std::to_string(rel_len) + " max" +
           std::to_string(max_distance) + " first" + std::to_string(first) + " queries" +
           std::to_string(queries);
  }
};

// The new positions' rows of chunked_attention_forward over the whole sequence, and of
// cached_attention_forward with the cache holding that sequence's keys and values.
void expect_cached_equals_chunked(const AttentionCase& c) {
  SCOPED_TRACE(c.name());
  const int64_t ld = c.heads * c.d;
  const std::vector<float> q = test::random_vector(c.T * ld, 3);
  const std::vector<float> k = test::random_vector(c.T * ld, 4);
  const std::vector<float> v = test::random_vector(c.T * ld, 5);
  const std::vector<float> rel =
      test::random_vector(c.heads * c.T * std::max<int64_t>(1, c.rel_len), 6);
  const DeviceBuffer<float> dq = test::to_device(q), dk = test::to_device(k),
                            dv = test::to_device(v), drel = test::to_device(rel);
  ChunkedAttentionArgs a;
  a.q = dq.data();
  a.k = dk.data();
  a.v = dv.data();
  a.ld = ld;
  a.heads = c.heads;
  a.seq_len = c.T;
  a.d = c.d;
  a.chunk = c.chunk > 0 ? c.chunk : c.T;
  a.lookback = c.chunk > 0 ? 1 : 0;
  a.key_scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  if (c.rel_len > 0) {
    a.rel_scores = drel.data();
    a.rel_len = c.rel_len;
  }
  a.max_distance = c.max_distance;
  DeviceBuffer<float> whole(cpu(), c.T * ld);
  Workspace ws(cpu());
  chunked_attention_forward(cpu(), ws, a, whole.data(), ld);

  // The cache's queries and relative scores are the new rows' only.
  std::vector<float> new_q(q.begin() + c.first * ld, q.begin() + (c.first + c.queries) * ld);
  std::vector<float> new_rel;
  for (int64_t h = 0; h < c.heads; ++h)
    for (int64_t r = 0; r < c.queries; ++r)
      for (int64_t dist = 0; dist < c.rel_len; ++dist)
        new_rel.push_back(rel[(h * c.T + c.first + r) * c.rel_len + dist]);
  const DeviceBuffer<float> cq = test::to_device(new_q);
  const DeviceBuffer<float> crel =
      test::to_device(new_rel.empty() ? std::vector<float>(1) : new_rel);
  DeviceBuffer<float> out(cpu(), c.queries * ld);
  CachedAttentionParams p;
  p.q = cq.data();
  p.k = dk.data();
  p.v = dv.data();
  p.ld = ld;
  p.heads = c.heads;
  p.d = c.d;
  p.first = c.first;
  p.queries = c.queries;
  p.chunk = c.chunk;
  p.key_scale = a.key_scale;
  if (c.rel_len > 0) {
    p.rel_scores = crel.data();
    p.rel_len = c.rel_len;
  }
  p.max_distance = c.max_distance;
  p.out = out.data();
  p.ldo = ld;
  cached_attention_forward(cpu(), p);

  const std::vector<float> all = whole.download();
  const std::vector<float> expected(all.begin() + c.first * ld,
                                    all.begin() + (c.first + c.queries) * ld);
  EXPECT_LT(test::max_abs_diff(out.download(), expected), 2e-6f);
}

TEST(CachedAttention, EqualsChunkedAttentionOverTheWholeSequence) {
  for (int64_t chunk : {0, 8}) {           // dense, local
    for (int64_t rel_len : {0, 16, 48}) {  // none, fewer distances than the window, all
      for (int64_t max_distance : {-1, 5}) {
        for (auto [first, queries] :
             {std::pair<int64_t, int64_t>{0, 48}, {47, 1}, {20, 7}, {8, 1}}) {
          AttentionCase c;
          c.chunk = chunk;
          c.rel_len = rel_len;
          c.max_distance = max_distance;
          c.first = first;
          c.queries = queries;
          expect_cached_equals_chunked(c);
        }
      }
    }
  }
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> t;
  t.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(gen() % vocab));
  return t;
}

// The logits for the token after `tokens` from the uncached window (as generate() without cache).
std::vector<float> window_logits(ReformerModel& m, const std::vector<int32_t>& tokens) {
  return rf::window_logits(m, tokens, m.config().train.seq_len);
}

// Models with a cache: every layer dense or local, each position kind, and one residual stream.
std::vector<std::vector<std::string>> cached_models() {
  return {{"model.attention=[dense, dense]", "model.position=learned"},
          {"model.attention=[dense, dense]", "model.position=relative"},
          {"model.attention=[local, local]", "model.position=axial"},
          {"model.attention=[dense, local]", "model.position=relative", "model.clamp_len=6"},
          {"model.attention=[dense, local]", "model.position=relative", "model.residual=single",
           "model.reversible=false"},
          {"model.attention=[local, dense]", "model.position=none"}};
}

// Each kernel variant of the CPU executor: its tuned loops and the reference functors the GPU
// also runs (the embedding's position offset, the cached attention row). Prompts of 5 and 16
// positions: a context's first pass runs the fused attention where its length allows (dense, or
// whole local chunks), the row per query otherwise.
TEST(CachedGeneration, LogitsEqualTheWindowsAtEveryPosition) {
  for (KernelVariant variant : {KernelVariant::kTuned, KernelVariant::kPlain}) {
    for (int64_t prompt : {5, 16}) {
      for (const std::vector<std::string>& o : cached_models()) {
        SCOPED_TRACE(test::describe_overrides(o) +
                     (variant == KernelVariant::kPlain ? "plain kernels" : "tuned") + " prompt " +
                     std::to_string(prompt));
        cpu().set_kernel_variant(variant);
        ReformerModel m(test::tiny_config(o), cpu());
        ASSERT_TRUE(m.supports_cached_generation());
        test::randomize_params(m, 21);
        const int64_t T = m.config().train.seq_len;
        const std::vector<int32_t> text = random_tokens(T, m.config().model.vocab_size, 4);
        GenerationCache cache = m.make_generation_cache(T);
        // The prompt at once, then one position at a time.
        std::vector<int32_t> fed(text.begin(), text.begin() + prompt);
        float worst = 0.0f;
        std::vector<float> cached = m.cached_next_token_logits(fed, cache);
        for (int64_t n = prompt;; ++n) {
          const std::vector<float> expected = window_logits(m, fed);
          ASSERT_EQ(cached.size(), expected.size());
          worst = std::max(worst, test::max_abs_diff(cached, expected));
          if (n == T) break;
          fed.push_back(text[n]);
          cached = m.cached_next_token_logits({text[n]}, cache);
        }
        EXPECT_EQ(cache.len, T);
        EXPECT_LT(worst, 1e-4f);
        EXPECT_THROW(m.cached_next_token_logits({0}, cache), Error);  // the cache is full
        cpu().set_kernel_variant(KernelVariant::kTuned);
      }
    }
  }
}

TEST(CachedGeneration, GreedyTokensEqualGenerationWithoutTheCache) {
  for (const std::vector<std::string>& o : cached_models()) {
    SCOPED_TRACE(test::describe_overrides(o));
    ReformerModel m(test::tiny_config(o), cpu());
    test::randomize_params(m, 33);
    const int64_t T = m.config().train.seq_len;
    SamplingOptions greedy;
    greedy.temperature = 0.0;
    greedy.tokens = T - 3;  // the prompt and the sample fill the window
    const std::vector<int32_t> prompt = {1, 2, 3};
    GenerationStats with, without;
    const std::vector<int32_t> cached = generate(m, prompt, greedy, &with);
    greedy.cache = false;
    const std::vector<int32_t> uncached = generate(m, prompt, greedy, &without);
    EXPECT_EQ(cached, uncached);
    EXPECT_TRUE(with.cached);
    EXPECT_FALSE(without.cached);
    // The cost: the prompt once and each new token once, against a window per token.
    EXPECT_EQ(with.model_positions, 3 + greedy.tokens - 1);
    EXPECT_EQ(without.model_positions, greedy.tokens * T);
    // Sampling draws the same numbers from the same logits.
    greedy.temperature = 0.8;
    greedy.cache = true;
    const std::vector<int32_t> sampled = generate(m, prompt, greedy);
    greedy.cache = false;
    EXPECT_EQ(sampled, generate(m, prompt, greedy));
  }
}

// Past the window the cached context restarts from its last half: the prediction after a restart
// is the window's over those tokens, and the next ones extend that context.
TEST(CachedGeneration, PastTheWindowTheContextRestartsFromItsLastHalf) {
  ReformerModel m(test::tiny_config({"model.attention=[dense, local]", "model.position=relative"}),
                  cpu());
  test::randomize_params(m, 8);
  const int64_t T = m.config().train.seq_len, half = T / 2;
  SamplingOptions greedy;
  greedy.temperature = 0.0;
  greedy.tokens = T + 4;
  GenerationStats stats;
  const std::vector<int32_t> out = generate(m, {5}, greedy, &stats);
  ASSERT_EQ(static_cast<int64_t>(out.size()), T + 5);
  EXPECT_EQ(stats.restarts, 1);
  auto argmax = [](const std::vector<float>& l) {
    return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  };
  // Token T + 1 is predicted from tokens [T + 1 - half, T + 1), T + 2 from one more, ...
  for (int64_t next = T + 1; next < T + 5; ++next) {
    const std::vector<int32_t> context(out.begin() + (T + 1 - half), out.begin() + next);
    EXPECT_EQ(out[next], argmax(window_logits(m, context))) << "token " << next;
  }
  EXPECT_EQ(stats.model_positions, T + half + 3);
}

// Generation with Transformer-XL's memory: the text in segments of train.seq_len (the prompt's
// in pieces, then one sampled token at a time), each seeing the memory_len positions before it.
// Each sampled token's log-probability under the logits it was drawn from equals its loss when
// the layer-input memory (ReformerModel::forward_with_memory: another computation of the same
// recurrence) scores the finished text segment by segment, as `eval --memory-len` does: far past
// the window and the memory, with no restart and each position run once; two streams and one,
// relative positions and none, same_length, local layers; a memory shorter than a segment and
// longer (the first trim then partial), a prompt that ends inside a segment, at its end, and of
// one token. Without the cache (`cache` false: each token re-runs its segment so far with the
// memory's layer inputs) the same, token for token. Models with LSH layers re-run too; their
// tokens that complete a segment (`segment_ends_only`) are scored as evaluation scores them (the
// others see the chunks of their segment so far, where evaluation sorts the whole segment).
struct MemoryGenerationCase {
  int64_t memory, prompt;
};

// A text as the consecutive windows evaluation reads: window w is tokens [w S, (w + 1) S].
class TextWindows final : public WindowSource {
 public:
  TextWindows(std::vector<int32_t> text, int64_t segment) : text_(std::move(text)), S_(segment) {}
  int64_t num_windows() const override { return (static_cast<int64_t>(text_.size()) - 1) / S_; }
  int64_t window_length() const override { return S_ + 1; }
  void read(int64_t index, int32_t* out) const override {
    std::copy_n(text_.begin() + index * S_, S_ + 1, out);
  }
  std::string describe() const override { return "a generated text"; }
  bool consecutive() const override { return true; }

 private:
  std::vector<int32_t> text_;
  int64_t S_;
};

void expect_memory_generation_scores_as_evaluation(const std::vector<std::string>& extra,
                                                   MemoryGenerationCase c, bool cache = true,
                                                   bool segment_ends_only = false) {
  constexpr int64_t kSegment = 16, kScored = 3 * kSegment;
  const int64_t kMemory = c.memory, kPrompt = c.prompt, kTokens = kScored + 1 - c.prompt;
  SCOPED_TRACE("memory " + std::to_string(kMemory) + " prompt " + std::to_string(kPrompt) +
               (cache ? "" : ", no cache"));
  std::vector<std::string> o = {"train.seq_len=" + std::to_string(kSegment)};
  o.insert(o.end(), extra.begin(), extra.end());
  SCOPED_TRACE(test::describe_overrides(o));
  const Config cfg = test::tiny_config(o);
  ReformerModel m(cfg, cpu());
  test::randomize_params(m, 12);
  const std::vector<int32_t> prompt = random_tokens(kPrompt, cfg.model.vocab_size, 6);
  SamplingOptions sampling;
  sampling.temperature = 1.0;
  sampling.tokens = kTokens;
  sampling.memory_len = kMemory;
  sampling.cache = cache;
  std::vector<std::vector<float>> logits;
  sampling.on_logits = [&](int64_t, const std::vector<float>& l) { logits.push_back(l); };
  GenerationStats stats;
  const std::vector<int32_t> out = generate(m, prompt, sampling, &stats);
  ASSERT_EQ(out.size(), static_cast<size_t>(kPrompt + kTokens));
  ASSERT_EQ(logits.size(), static_cast<size_t>(kTokens));
  EXPECT_EQ(stats.memory_len, kMemory);
  EXPECT_EQ(stats.cached, cache && !segment_ends_only);
  EXPECT_EQ(stats.restarts, 0);
  // (Re-running: the prompt's complete segments before its last once, then a segment per token.)
  EXPECT_EQ(stats.model_positions,
            stats.cached ? kPrompt + kTokens - 1 : ((kPrompt - 1) / kSegment + kTokens) * kSegment);
  // The finished text's positions 0 .. 47 (the last token is not fed) scored in three segments
  // of 16 through the layers' inputs, segment k with the rotations evaluation draws for window k
  // (train.seed, example k): row t - 1 scores token t. (Their mean is what `eval --memory-len`
  // reports for the text, checked below, so these are evaluation's losses.)
  ASSERT_EQ(kPrompt + kTokens - 1, kScored);
  SegmentMemory memory(kMemory);
  std::vector<float> row_loss;
  for (int64_t from = 0; from < kPrompt + kTokens - 1; from += kSegment) {
    const int64_t to = std::min<int64_t>(from + kSegment, kPrompt + kTokens - 1);
    TokenBatch b;
    b.batch = 1;
    b.seq_len = to - from;
    b.inputs.assign(out.begin() + from, out.begin() + to);
    b.targets.assign(out.begin() + from + 1, out.begin() + to + 1);
    StepContext step = test::step_context(1, to - from, kEvalStep, false);
    step.seed = static_cast<uint64_t>(cfg.train.seed);
    step.example_base = static_cast<uint32_t>(from / kSegment);
    const BatchStats r = m.forward_with_memory(b, step, memory);
    row_loss.insert(row_loss.end(), r.row_loss.begin(), r.row_loss.end());
  }
  double mean = 0;
  for (float l : row_loss) mean += l / static_cast<double>(row_loss.size());
  const EvalResult evaluated =
      evaluate_with_memory(m, TextWindows(out, kSegment), kScored / kSegment, kMemory);
  EXPECT_EQ(evaluated.tokens, kScored);
  EXPECT_NEAR(evaluated.loss, mean, 1e-5);
  float worst = 0.0f;
  int64_t compared = 0;
  for (int64_t t = kPrompt; t < kPrompt + kTokens; ++t) {
    if (segment_ends_only && t % kSegment != 0) continue;
    ++compared;
    const std::vector<float>& l = logits[static_cast<size_t>(t - kPrompt)];
    const float top = *std::max_element(l.begin(), l.end());
    double sum = 0;
    for (float v : l) sum += std::exp(static_cast<double>(v - top));
    const float loss = static_cast<float>(std::log(sum)) - (l[out[t]] - top);
    worst = std::max(worst, std::fabs(loss - row_loss[static_cast<size_t>(t - 1)]));
  }
  EXPECT_GE(compared, 2);
  EXPECT_LT(worst, 1e-4f);
}

TEST(CachedGeneration, WithAMemoryEachTokenScoresAsEvaluationWithThatMemoryScoresIt) {
  for (const std::vector<std::string>& model : std::vector<std::vector<std::string>>{
           {"model.attention=[dense, dense]", "model.position=relative"},
           {"model.attention=[dense, dense]", "model.position=relative", "model.same_length=true"},
           {"model.attention=[dense, dense]", "model.position=none", "model.residual=single",
            "model.reversible=false"},
           {"model.attention=[local, dense]", "model.position=relative", "lsh.local_chunk=8"}})
    for (const MemoryGenerationCase c :
         {MemoryGenerationCase{8, 20}, MemoryGenerationCase{24, 16}, MemoryGenerationCase{24, 1}})
      for (const bool cache : {true, false})
        expect_memory_generation_scores_as_evaluation(model, c, cache);
}

// Models with LSH layers generate with a memory by re-running each token's segment so far: LSH
// layers that hash the memory with the segment, LSH layers that see the segment alone beside a
// dense layer with the memory, same_length.
TEST(CachedGeneration, WithAMemoryLshModelsScoreEachCompleteSegmentAsEvaluation) {
  for (const std::vector<std::string>& model : std::vector<std::vector<std::string>>{
           {"model.attention=[lsh, dense]", "model.position=relative", "lsh.sees_memory=true"},
           {"model.attention=[lsh, dense]", "model.position=relative"},
           {"model.attention=[lsh]", "model.position=none", "lsh.sees_memory=true",
            "model.same_length=true", "model.residual=single", "model.reversible=false"}})
    for (const MemoryGenerationCase c :
         {MemoryGenerationCase{8, 20}, MemoryGenerationCase{24, 16}, MemoryGenerationCase{24, 1}})
      expect_memory_generation_scores_as_evaluation(model, c, true, true);
}

// A memory that holds the whole text: generation with it is one causal pass over all of it (the
// window's tokens, with a window as long as the text), where a window of train.seq_len differs.
TEST(CachedGeneration, AMemoryThatHoldsTheWholeTextGeneratesAsOneWindowOverIt) {
  constexpr int64_t kSegment = 16, kWhole = 64;
  auto model = [&](int64_t seq_len) {
    auto m = std::make_unique<ReformerModel>(
        test::tiny_config({"model.attention=[dense, dense]", "model.position=relative",
                           "train.seq_len=" + std::to_string(seq_len)}),
        cpu());
    test::randomize_params(*m, 14);
    return m;
  };
  const auto segmented = model(kSegment), whole = model(kWhole);
  const std::vector<int32_t> prompt = random_tokens(20, 11, 7);
  SamplingOptions greedy;
  greedy.temperature = 0.0;
  greedy.tokens = kWhole - 20;
  greedy.memory_len = kWhole;
  const std::vector<int32_t> with_memory = generate(*segmented, prompt, greedy);
  greedy.memory_len = int64_t{1} << 40;  // (the same: the cache is sized for the text)
  EXPECT_EQ(generate(*segmented, prompt, greedy), with_memory);
  greedy.memory_len = 0;
  greedy.cache = false;
  EXPECT_EQ(with_memory, generate(*whole, prompt, greedy));
  // (And the past beyond a window of 16 changes the prediction, so the memory's reach mattered.)
  const std::vector<int32_t> text(with_memory.begin(), with_memory.end() - 1);
  EXPECT_GT(test::max_abs_diff(rf::window_logits(*whole, text, kWhole),
                               rf::window_logits(*segmented, text, kSegment)),
            1e-3);
}

TEST(CachedGeneration, MemoryGenerationNamesWhatCannotTakeIt) {
  struct Case {
    std::vector<std::string> overrides;
    int64_t memory_len;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"model.attention=[dense]", "model.position=axial", "model.axial_shape=[4,8]"},
       8,
       "--memory-len needs model.position relative (or none); this model's positions are axial"},
      {{"model.attention=[lsh]", "model.position=axial", "lsh.sees_memory=false"},
       8,
       "--memory-len needs model.position relative (or none)"},
      {{"model.attention=[lsh]", "model.position=none"},
       8,
       "--memory-len needs a layer that sees the memory; every layer of this model is lsh and "
       "lsh.sees_memory is false"},
      {{"model.attention=[lsh, dense]", "model.position=relative", "lsh.sees_memory=true"},
       6,
       "--memory-len 6 must be a multiple of lsh.bucket_size = 4"},
      {{"model.attention=[dense, local]", "model.position=relative"},
       6,
       "--memory-len 6 must be a multiple of lsh.local_chunk = 8"},
  };
  for (const Case& c : cases) {
    ReformerModel m(test::tiny_config(c.overrides), cpu());
    const std::string problem = memory_generation_problem(m.config(), c.memory_len);
    EXPECT_EQ(problem.rfind(c.message, 0), 0u) << problem;
    SamplingOptions o;
    o.tokens = 2;
    o.memory_len = c.memory_len;
    try {
      generate(m, {1}, o);
      ADD_FAILURE() << "no error for " << test::describe_overrides(c.overrides);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(memory_generation_problem(
                test::tiny_config({"model.attention=[dense, local]", "model.position=none"}), 16),
            "");
  // LSH layers with a memory re-run their segments: --lsh-cache (no memory) is the other way.
  ReformerModel lsh(test::tiny_config({"model.attention=[lsh, dense]", "model.position=relative",
                                       "lsh.sees_memory=true"}),
                    cpu());
  EXPECT_EQ(memory_generation_problem(lsh.config(), 8), "");
  SamplingOptions o;
  o.tokens = 2;
  o.memory_len = 8;
  o.lsh_cache = true;
  try {
    generate(lsh, {1}, o);
    ADD_FAILURE() << "no error for --lsh-cache with a memory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--lsh-cache caches LSH layers without a memory"),
              std::string::npos)
        << e.what();
  }
}

TEST(CachedGeneration, ModelsWithLshLayersReRunTheWindow) {
  ReformerModel m(test::tiny_config({"model.dropout=0", "model.attention_dropout=0"}), cpu());
  EXPECT_FALSE(m.supports_cached_generation());  // [lsh, local]
  EXPECT_THROW(m.make_generation_cache(8), Error);
  SamplingOptions greedy;
  greedy.temperature = 0.0;
  greedy.tokens = 4;
  GenerationStats stats;
  const std::vector<int32_t> out = generate(m, {1, 2}, greedy, &stats);
  EXPECT_EQ(out.size(), 6u);
  EXPECT_FALSE(stats.cached);
  EXPECT_EQ(stats.model_positions, 4 * m.config().train.seq_len);
}

// What LshGenerationWindows lists for position t, computed from scratch: in each round the
// positions 0..t sorted by (bucket, position), t's chunk of that order and the chunk before it
// (for the first chunk, the previous round's last `chunk` positions).
std::vector<int32_t> windows_from_scratch(const std::vector<std::vector<int32_t>>& bucket_of,
                                          int64_t t, int64_t chunk) {
  const int64_t rounds = static_cast<int64_t>(bucket_of.size()), n = t + 1;
  std::vector<std::vector<int32_t>> sorted(rounds);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int32_t p = 0; p < n; ++p) sorted[r].push_back(p);
    std::stable_sort(sorted[r].begin(), sorted[r].end(),
                     [&](int32_t a, int32_t b) { return bucket_of[r][a] < bucket_of[r][b]; });
  }
  std::vector<int32_t> listed(rounds * 2 * chunk, -1);
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t k = std::find(sorted[r].begin(), sorted[r].end(), t) - sorted[r].begin();
    const int64_t c = k / chunk;
    std::vector<int32_t> window;
    if (c > 0) {
      window.assign(sorted[r].begin() + (c - 1) * chunk, sorted[r].begin() + c * chunk);
    } else {
      const std::vector<int32_t>& prev = sorted[(r + rounds - 1) % rounds];
      window.assign(prev.begin() + std::max<int64_t>(0, n - chunk), prev.end());
    }
    window.insert(window.end(), sorted[r].begin() + c * chunk,
                  sorted[r].begin() + std::min(n, (c + 1) * chunk));
    std::copy(window.begin(), window.end(), listed.begin() + r * 2 * chunk);
  }
  return listed;
}

// Few buckets (ties common) and many (most empty), the text in one piece, in several and token by
// token; buckets numbered as lsh_hash numbers them (round r's from r * n_buckets).
TEST(LshGenerationWindows, ListWhatSortingThePositionsUpToEachOneGivesInAnyPieces) {
  const int64_t heads = 2, rounds = 3, chunk = 4, n = 41;
  for (int64_t n_buckets : {5, 64})
    for (const std::vector<int64_t>& pieces :
         {std::vector<int64_t>{n}, {1, 1, 1, 6, 13, 19}, std::vector<int64_t>(n, 1)}) {
      SCOPED_TRACE(std::to_string(n_buckets) + " buckets, " + std::to_string(pieces.size()) +
                   " pieces");
      std::mt19937 gen(5);
      std::vector<int32_t> buckets(heads * rounds * n);  // [h, r, t]
      for (size_t i = 0; i < buckets.size(); ++i)
        buckets[i] = static_cast<int32_t>(gen() % n_buckets + i / n % rounds * n_buckets);
      LshGenerationWindows windows(heads, rounds, n_buckets, chunk);
      const int64_t W = windows.window_len();
      ASSERT_EQ(W, rounds * 2 * chunk);
      std::vector<int32_t> listed;
      int64_t done = 0;
      for (int64_t rows : pieces) {
        const int32_t* out = windows.append(buckets.data() + done, n, rows);
        listed.insert(listed.end(), out, out + rows * heads * W);
        done += rows;
      }
      ASSERT_EQ(windows.positions(), n);
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<std::vector<int32_t>> bucket_of(rounds);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = 0; r < rounds; ++r)
            bucket_of[r].push_back(buckets[(h * rounds + r) * n + t]);
          const std::vector<int32_t> got(listed.begin() + (t * heads + h) * W,
                                         listed.begin() + (t * heads + h + 1) * W);
          ASSERT_EQ(got, windows_from_scratch(bucket_of, t, chunk))
              << "position " << t << " head " << h;
        }
      }
      windows.clear();
      EXPECT_EQ(windows.positions(), 0);
    }
}

// The cached logits of `text`'s positions from `from` on, fed one token at a time after the
// first `from` at once.
std::vector<std::vector<float>> cached_logits(ReformerModel& m, const std::vector<int32_t>& text,
                                              int64_t from, bool approximate_lsh) {
  GenerationCache cache =
      m.make_generation_cache(static_cast<int64_t>(text.size()), approximate_lsh);
  std::vector<std::vector<float>> out;
  out.push_back(m.cached_next_token_logits({text.begin(), text.begin() + from}, cache));
  for (size_t n = from; n < text.size(); ++n)
    out.push_back(m.cached_next_token_logits({text[n]}, cache));
  return out;
}

// While the text fits one bucket_size chunk every LSH window holds every earlier position, as in
// the uncached pass: the same logits, at every depth, for LSH alone and mixed with local layers
// (also with relative positions in the local layer: the hybrid of Reformer and Transformer-XL).
TEST(LshGenerationCache, LogitsEqualTheWindowsWhileTheTextFitsOneChunk) {
  for (const std::vector<std::string>& o : std::vector<std::vector<std::string>>{
           {"model.attention=[lsh, lsh]"},
           {"model.attention=[lsh, local]"},
           {"model.attention=[lsh, local]", "model.position=relative"}}) {
    SCOPED_TRACE(test::describe_overrides(o));
    std::vector<std::string> overrides = o;
    overrides.push_back("lsh.bucket_size=32");
    ReformerModel m(test::tiny_config(overrides), cpu());
    EXPECT_FALSE(m.supports_cached_generation());
    EXPECT_TRUE(m.supports_cached_generation(true));
    test::randomize_params(m, 12);
    const int64_t T = m.config().train.seq_len;
    const std::vector<int32_t> text = random_tokens(T, m.config().model.vocab_size, 9);
    const std::vector<std::vector<float>> cached = cached_logits(m, text, 3, true);
    float worst = 0.0f;
    for (int64_t n = 3; n <= T; ++n) {
      const std::vector<float> expected = window_logits(m, {text.begin(), text.begin() + n});
      worst = std::max(worst, test::max_abs_diff(cached[n - 3], expected));
    }
    EXPECT_LT(worst, 1e-4f);
  }
}

// Past one chunk, a position's windows are those the uncached pass gives the last position of
// the text up to it: in a one-layer model (whose earlier positions feed nothing else) the cached
// logits equal the uncached pass over the text so far at every multiple of bucket_size, with
// several chunks, hash rounds and the look-back across rounds.
TEST(LshGenerationCache, OneLayerLogitsEqualTheUncachedPassOfTheTextSoFar) {
  ReformerModel m(
      test::tiny_config({"model.attention=[lsh]", "model.n_layers=1", "lsh.n_hashes=3"}), cpu());
  test::randomize_params(m, 14);
  const int64_t T = m.config().train.seq_len, chunk = m.config().lsh.bucket_size;
  ASSERT_GE(T / chunk, 4);
  const std::vector<int32_t> text = random_tokens(T, m.config().model.vocab_size, 10);
  const std::vector<std::vector<float>> cached = cached_logits(m, text, 1, true);
  float worst = 0.0f;
  for (int64_t n = chunk; n <= T; n += chunk) {
    const std::vector<int32_t> so_far(text.begin(), text.begin() + n);
    worst = std::max(worst, test::max_abs_diff(cached[n - 1], rf::window_logits(m, so_far, n)));
  }
  EXPECT_LT(worst, 1e-4f);
  // (With the uncached pass of the whole window instead, later tokens move the chunks: it
  // differs, which is what the comparison above would miss if the windows were not used.)
  float moved = 0.0f;
  for (int64_t n = chunk; n < T; n += chunk)
    moved = std::max(moved,
                     test::max_abs_diff(cached[n - 1],
                                        rf::window_logits(m, {text.begin(), text.begin() + n}, T)));
  EXPECT_GT(moved, 1e-3f);
}

// A position's output depends on the positions up to it only, so how the text is fed (the
// prompt at once or token by token) does not change any logit, at any depth.
TEST(LshGenerationCache, TheSameTextFedInOtherPiecesGivesTheSameLogits) {
  ReformerModel m(test::tiny_config({"model.attention=[lsh, lsh]"}), cpu());
  test::randomize_params(m, 15);
  const int64_t T = m.config().train.seq_len;
  const std::vector<int32_t> text = random_tokens(T, m.config().model.vocab_size, 11);
  const std::vector<std::vector<float>> at_once = cached_logits(m, text, 20, true);
  const std::vector<std::vector<float>> singly = cached_logits(m, text, 1, true);
  float worst = 0.0f;
  for (int64_t n = 20; n <= T; ++n)
    worst = std::max(worst, test::max_abs_diff(at_once[n - 20], singly[n - 1]));
  EXPECT_LT(worst, 1e-5f);
}

TEST(LshGenerationCache, GreedyTokensEqualGenerationWithoutTheCacheWithinOneChunk) {
  ReformerModel m(test::tiny_config({"lsh.bucket_size=32"}), cpu());  // [lsh, local]
  test::randomize_params(m, 16);
  const int64_t T = m.config().train.seq_len;
  SamplingOptions greedy;
  greedy.temperature = 0.0;
  greedy.tokens = T - 3;
  greedy.lsh_cache = true;
  GenerationStats with, without;
  const std::vector<int32_t> cached = generate(m, {1, 2, 3}, greedy, &with);
  greedy.cache = false;
  const std::vector<int32_t> uncached = generate(m, {1, 2, 3}, greedy, &without);
  EXPECT_EQ(cached, uncached);
  EXPECT_TRUE(with.cached);
  EXPECT_EQ(with.model_positions, 3 + greedy.tokens - 1);
  EXPECT_FALSE(without.cached);
}

}  // namespace
}  // namespace rf
