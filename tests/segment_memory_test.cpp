// Transformer-XL's segment memory in forward passes: scoring a stream segment by segment, each
// segment's attention seeing the layer inputs of the segments before it, equals one pass over
// the whole stream when the memory covers the past (memory rows are exactly "the previous keys
// and values"), for dense and local attention with relative positions; a shorter memory sees
// less and scores differently.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "base/error.h"
#include "tests/model_fixture.h"
#include "tests/run_fixture.h"
#include "trainer/model.h"

namespace rf {
namespace {

using test::cpu;

constexpr int64_t kSegment = 16, kSegments = 3;

Config config_of(int64_t seq_len, const std::string& attention,
                 std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"model.attention=" + attention,
                                "model.position=relative",
                                "model.dropout=0.0",
                                "model.attention_dropout=0.0",
                                "train.seq_len=" + std::to_string(seq_len),
                                "lsh.local_chunk=8"};
  o.insert(o.end(), extra.begin(), extra.end());
  return test::tiny_config(o);
}

std::vector<int32_t> stream(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 5 + i / 7) % vocab);
  return t;
}

StepContext eval_step(int64_t seq_len) {
  StepContext s;
  s.step = kEvalStep;
  s.batch = 1;
  s.seq_len = seq_len;
  s.training = false;
  return s;
}

TokenBatch window(const std::vector<int32_t>& tokens, int64_t first, int64_t len) {
  TokenBatch b;
  b.batch = 1;
  b.seq_len = len;
  b.inputs.assign(tokens.begin() + first, tokens.begin() + first + len);
  b.targets.assign(tokens.begin() + first + 1, tokens.begin() + first + len + 1);
  return b;
}

// Per-position losses of the whole stream in one pass, and segment by segment with `memory_len`.
std::pair<std::vector<float>, std::vector<float>> losses(
    const std::string& attention, int64_t memory_len, const std::vector<std::string>& extra = {}) {
  const int64_t total = kSegment * kSegments;
  ReformerModel whole(config_of(total, attention, extra), cpu());
  ReformerModel segmented(config_of(kSegment, attention, extra), cpu());
  // (No parameter depends on the sequence length with relative positions: the same weights.)
  RF_CHECK(whole.params().size() == segmented.params().size());
  const std::vector<float> params = test::random_vector(whole.params().size(), 21, 0.3f);
  cpu().upload(whole.params().params(), params.data(), params.size() * sizeof(float));
  cpu().upload(segmented.params().params(), params.data(), params.size() * sizeof(float));
  const std::vector<int32_t> tokens = stream(total + 1, whole.config().model.vocab_size);
  const std::vector<float> one = whole.forward(window(tokens, 0, total), eval_step(total)).row_loss;
  SegmentMemory memory(memory_len);
  std::vector<float> parts;
  for (int64_t s = 0; s < kSegments; ++s) {
    const BatchStats b = segmented.forward_with_memory(window(tokens, s * kSegment, kSegment),
                                                       eval_step(kSegment), memory);
    parts.insert(parts.end(), b.row_loss.begin(), b.row_loss.end());
  }
  return {one, parts};
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b, size_t from) {
  double d = 0;
  for (size_t i = from; i < a.size(); ++i) d = std::max(d, std::fabs(double{a[i]} - b[i]));
  return d;
}

TEST(SegmentMemory, SegmentBySegmentEqualsOnePassWhenTheMemoryCoversThePast) {
  for (const std::string attention : {"[dense]", "[local]", "[local, dense]"}) {
    for (bool single : {false, true}) {
      const auto [one, parts] = losses(attention, (kSegments - 1) * kSegment,
                                       single ? test::kSingleStream : std::vector<std::string>{});
      ASSERT_EQ(one.size(), parts.size());
      EXPECT_LT(max_difference(one, parts, 0), 2e-5) << attention << (single ? " single" : "");
    }
  }
}

TEST(SegmentMemory, AShorterMemorySeesLessOfThePast) {
  const auto [one, full] = losses("[dense]", 2 * kSegment);
  const auto [one_again, half] = losses("[dense]", kSegment);
  const auto [one_more, none] = losses("[dense]", 0);
  // The first segment has no past; the first memory segment equals the full one (it holds all of
  // its past), the last does not.
  EXPECT_LT(max_difference(full, half, 0), 1e-9 + max_difference(full, half, 2 * kSegment));
  EXPECT_LT(max_difference(std::vector<float>(full.begin(), full.begin() + 2 * kSegment),
                           std::vector<float>(half.begin(), half.begin() + 2 * kSegment), 0),
            2e-5);
  EXPECT_GT(max_difference(full, half, 2 * kSegment), 1e-3);
  EXPECT_GT(max_difference(full, none, kSegment), 1e-3);
  EXPECT_LT(max_difference(std::vector<float>(none.begin(), none.begin() + kSegment),
                           std::vector<float>(one.begin(), one.begin() + kSegment), 0),
            2e-5);
}

// Evaluation keeps the memory's keys and values (ReformerModel::forward_cached) rather than its
// layer inputs (forward_with_memory): the same losses, segment after segment, with a memory
// shorter than the stream (the cache drops its oldest positions and, every few segments, moves
// the rest back to its first row), none, and same_length's distance limit.
TEST(SegmentMemory, TheKeyValueCacheScoresWhatTheLayerInputMemoryScores) {
  constexpr int64_t kStream = 7;  // segments
  for (const std::string attention : {"[dense]", "[local, dense]", "[local, dense] single"}) {
    for (const char* same_length : {"false", "true"}) {
      for (int64_t memory_len : {int64_t{0}, kSegment, 2 * kSegment + 8}) {
        if (attention != "[dense]" && memory_len % 8 != 0) continue;
        SCOPED_TRACE(attention + " same_length " + same_length + " memory " +
                     std::to_string(memory_len));
        const bool single = attention.find("single") != std::string::npos;
        std::vector<std::string> extra = {std::string("model.same_length=") + same_length};
        if (single)
          extra.insert(extra.end(), test::kSingleStream.begin(), test::kSingleStream.end());
        const Config cfg =
            config_of(kSegment, attention.substr(0, attention.find(" single")), extra);
        ReformerModel m(cfg, cpu());
        const std::vector<float> params = test::random_vector(m.params().size(), 5, 0.3f);
        cpu().upload(m.params().params(), params.data(), params.size() * sizeof(float));
        const std::vector<int32_t> tokens = stream(kStream * kSegment + 1, cfg.model.vocab_size);
        SegmentMemory memory(memory_len);
        GenerationCache cache = m.make_memory_cache(memory_len, kSegment);
        double worst = 0.0;
        bool moved = false;
        for (int64_t s = 0; s < kStream; ++s) {
          const TokenBatch segment = window(tokens, s * kSegment, kSegment);
          const int64_t start_before = cache.start;
          const std::vector<float> cached = m.forward_cached(segment, cache).row_loss;
          moved |= cache.start < start_before;
          const std::vector<float> held =
              m.forward_with_memory(segment, eval_step(kSegment), memory).row_loss;
          worst = std::max(worst, max_difference(cached, held, 0));
          EXPECT_EQ(cache.len, std::min(memory_len, s * kSegment) + kSegment);
        }
        EXPECT_LT(worst, 2e-5);
        EXPECT_EQ(moved, memory_len > 0);
      }
    }
  }
}

// `reformer eval --memory-len`: a table row per memory length from a relative-position model and
// from a model of LSH layers alone; absolute positions, a memory that is not a whole number of
// LSH chunks and LSH layers trained with lsh.sees_memory false are one-line errors.
TEST(SegmentMemory, EvalCommandPrintsATableAndRefusesWhatCannotTakeMemory) {
  const std::string dir = test::fresh_dir("eval");
  std::string text;  // a small text stream: memory is for consecutive segments of one stream
  for (int i = 0; i < 400; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of text\n";
  const std::string text_path = dir + "/text.txt";
  std::ofstream(text_path) << text;
  const Config cfg = test::short_run_config(
      dir, 3, 1,
      {"model.attention=[dense]", "model.position=relative", "train.eval_batches=2",
       "model.vocab_size=256", "data.format=text", "data.train=" + text_path});
  const TrainSummary run = test::train_quietly(cfg);
  const std::string reformer = std::string(RF_BINARY_DIR) + "/reformer ";
  test::CommandResult r =
      test::run_command(reformer + "eval --checkpoint " + dir + " --memory-len 0,32 --segment 16");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("consecutive segments of 16 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("       0 | "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("      32 | "), std::string::npos) << r.out;

  const std::string axial = test::fresh_dir("axial");
  test::train_quietly(test::short_run_config(axial, 2, 1, {"model.attention=[dense]"}));
  // (With a --segment the axial shape fits no more, but the positions are what refuses it.)
  for (const char* segment : {"", " --segment 16"}) {
    r = test::run_command(
        concat(reformer, "eval --checkpoint ", axial, " --memory-len 16", segment));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("--memory-len needs model.position relative (or none)"), std::string::npos)
        << segment << ": " << r.out;
  }
  // LSH layers alone: they hash the memory with each segment, in whole chunks (buckets of 4),
  // unless trained with lsh.sees_memory false.
  const std::string lsh = test::fresh_dir("lsh");
  const std::vector<std::string> lsh_text = {"model.attention=[lsh]",   "model.position=none",
                                             "train.seq_len=16",        "train.eval_batches=2",
                                             "model.vocab_size=256",    "data.format=text",
                                             "data.train=" + text_path, "lsh.sees_memory=true"};
  test::train_quietly(test::short_run_config(lsh, 1, 1, lsh_text));
  r = test::run_command(reformer + "eval --checkpoint " + lsh + " --memory-len 0,16 --json");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("\"memory_len\": 16"), std::string::npos) << r.out;
  r = test::run_command(reformer + "eval --checkpoint " + lsh + " --memory-len 6");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--memory-len 6 must be a multiple of lsh.bucket_size = 4"),
            std::string::npos)
      << r.out;
  const std::string lsh_alone = test::fresh_dir("lsh_alone");
  std::vector<std::string> alone = lsh_text;
  alone.back() = "lsh.sees_memory=false";
  test::train_quietly(test::short_run_config(lsh_alone, 1, 1, alone));
  r = test::run_command(reformer + "eval --checkpoint " + lsh_alone + " --memory-len 16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--memory-len needs a layer that sees the memory; every layer of this "
                       "model is lsh and lsh.sees_memory is false"),
            std::string::npos)
      << r.out;
  r = test::run_command(reformer + "eval --checkpoint " + dir + " --memory-len 16 --positions 0:4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--positions goes without --memory-len"), std::string::npos) << r.out;
  r = test::run_command(reformer + "eval --checkpoint " + dir + " --segment 16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--segment goes with --memory-len"), std::string::npos) << r.out;
  // A segment the config refuses is named as the user gave it, not as the --set it becomes; a
  // wrong --set of the user's own is not blamed on the segment.
  r = test::run_command(reformer + "eval --checkpoint " + dir + " --memory-len 32 --segment 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("error: --segment 1 (this evaluation's train.seq_len): "), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("--set train.seq_len"), std::string::npos) << r.out;
  // The same for a check across keys (buckets of 4 do not cut a segment of 6).
  r = test::run_command(reformer + "eval --checkpoint " + lsh + " --memory-len 16 --segment 6");
  EXPECT_NE(r.out.find("error: --segment 6 (this evaluation's train.seq_len): train.seq_len = 6 "
                       "must be a multiple of lsh.bucket_size = 4"),
            std::string::npos)
      << r.out;
  r = test::run_command(reformer + "eval --checkpoint " + dir +
                        " --memory-len 32 --segment 16 --set model.no_such_key=1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--set model.no_such_key=1"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("--segment"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace rf
