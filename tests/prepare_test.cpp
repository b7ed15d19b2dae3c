// Tests of `prepare`: text and the duplication task written as HDF5 token shards read back exactly
// (windows equal the input bytes / generated windows, across shard boundaries, with global
// indices), bad options are refused, and no failure leaves a manifest or overwrites one.
#include "data/prepare.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/shards.h"
#include "data/synthetic_duplication.h"
#include "tests/shard_files.h"
#include "tests/test_corpus.h"
#include "tests/test_util.h"

namespace rf {
namespace {
namespace fs = std::filesystem;
using test::expect_error;
using test::prepare_text;
using test::PreparedText;
using test::pseudo_text;
using test::read_text;
using test::ScratchDir;
using test::text_options;
using test::write_file;

// Checks every window of a split against `tokens`, the split's concatenated token stream:
// window j of a shard starting at stream offset s is tokens[s + j * stride .. + seq_len + 1).
void expect_windows_match(const ShardedWindows& windows, const std::vector<ShardEntry>& shards,
                          const std::vector<int32_t>& tokens, int64_t seq_len, int64_t stride) {
  std::vector<int32_t> window(seq_len + 1);
  int64_t index = 0, shard_start = 0;
  for (const ShardEntry& shard : shards) {
    for (int64_t first = 0; first + seq_len + 1 <= shard.tokens; first += stride, ++index) {
      windows.read(index, window.data());
      const std::vector<int32_t> expected(tokens.begin() + shard_start + first,
                                          tokens.begin() + shard_start + first + seq_len + 1);
      ASSERT_EQ(window, expected) << "window " << index << " (shard " << shard.path << ")";
    }
    shard_start += shard.tokens;
  }
  EXPECT_EQ(index, windows.num_windows());
}

std::vector<int32_t> bytes_as_tokens(const std::string& text, size_t begin, size_t end) {
  std::vector<int32_t> tokens;
  for (size_t i = begin; i < end; ++i) tokens.push_back(static_cast<uint8_t>(text[i]));
  return tokens;
}

// --- prepare from text ---------------------------------------------------------------------

TEST(PrepareText, WindowsEqualInputBytesAcrossShards) {
  const ScratchDir scratch("text");
  const std::string& dir = scratch.path();
  const std::string a = pseudo_text(6000, 1), b = pseudo_text(4003, 2);
  const std::string text = a + b;  // two inputs are concatenated in order
  std::ostringstream progress;
  prepare_shards(
      text_options({write_file(dir + "/a.txt", a), write_file(dir + "/b.txt", b)}, dir + "/out", 3),
      progress);

  const Manifest m = read_manifest(dir + "/out/manifest.yaml");
  EXPECT_EQ(m.vocab_size, 256);
  EXPECT_EQ(m.tokenizer, "bytes");
  EXPECT_EQ(m.window_stride, 0);
  ASSERT_EQ(m.train.size(), 3u);
  ASSERT_EQ(m.val.size(), 1u);
  const int64_t val_tokens = static_cast<int64_t>(static_cast<double>(text.size()) * 0.1);
  EXPECT_EQ(m.val[0].tokens, val_tokens);
  int64_t train_tokens = 0;
  for (const ShardEntry& e : m.train) train_tokens += e.tokens;
  EXPECT_EQ(train_tokens + val_tokens, static_cast<int64_t>(text.size()));
  EXPECT_NE(progress.str().find("train-00002.h5"), std::string::npos) << progress.str();

  const int64_t seq_len = 16;
  const ShardedWindows train(m, "train", seq_len, 256, true);
  const ShardedWindows val(m, "val", seq_len, 256, true);
  EXPECT_EQ(train.num_shards(), 3);
  EXPECT_EQ(train.num_tokens(), train_tokens);
  EXPECT_EQ(train.window_length(), seq_len + 1);
  int64_t expected_windows = 0;
  for (const ShardEntry& e : m.train) expected_windows += (e.tokens - 1) / seq_len;
  EXPECT_EQ(train.num_windows(), expected_windows);
  expect_windows_match(train, m.train, bytes_as_tokens(text, 0, train_tokens), seq_len, seq_len);
  expect_windows_match(val, m.val, bytes_as_tokens(text, train_tokens, text.size()), seq_len,
                       seq_len);
  EXPECT_NE(train.describe().find("3 shards"), std::string::npos) << train.describe();
}

TEST(PrepareText, RealTextWindowsAtShardBoundaries) {
  RF_TINY_SHAKESPEARE_OR_SKIP(input);
  const ScratchDir scratch("shakespeare");
  const std::string& dir = scratch.path();
  std::ostringstream progress;
  prepare_shards(text_options({input}, dir, 4), progress);
  const Manifest m = read_manifest(dir + "/manifest.yaml");
  const std::string text = read_text(input);
  const int64_t seq_len = 256;
  const ShardedWindows train(m, "train", seq_len, 256, true);

  // The last window of each shard and the first of the next: global indices by prefix sums.
  int64_t first_window = 0, shard_start = 0;
  std::vector<int32_t> window(seq_len + 1);
  for (const ShardEntry& e : m.train) {
    const int64_t windows = (e.tokens - 1) / seq_len;
    for (int64_t local : {int64_t{0}, windows - 1}) {
      train.read(first_window + local, window.data());
      const size_t begin = shard_start + local * seq_len;
      ASSERT_EQ(window, bytes_as_tokens(text, begin, begin + seq_len + 1))
          << "shard " << e.path << " window " << local;
    }
    first_window += windows;
    shard_start += e.tokens;
  }
  EXPECT_EQ(first_window, train.num_windows());
  EXPECT_THROW(train.read(train.num_windows(), window.data()), Error);
}

// --- prepare from the duplication task -----------------------------------------------------

TEST(PrepareSynthetic, WindowsEqualGeneratedWindows) {
  const ScratchDir scratch("synthetic");
  const std::string& dir = scratch.path();
  PrepareOptions o;
  o.synthetic = "duplication";
  o.output_dir = dir;
  o.sequences = 50;
  o.seq_len = 16;
  o.vocab_size = 10;
  o.shards = 3;
  o.val_fraction = 0.1;
  o.seed = 5;
  std::ostringstream progress;
  prepare_shards(o, progress);

  const Manifest m = read_manifest(dir + "/manifest.yaml");
  EXPECT_EQ(m.window_stride, 17);
  EXPECT_EQ(m.vocab_size, 10);
  EXPECT_EQ(m.tokenizer, "duplication");
  ASSERT_EQ(m.train.size(), 3u);
  for (const bool validation : {false, true}) {
    const ShardedWindows windows(m, validation ? "val" : "train", 16, 10, true);
    const SyntheticDuplication generator(16, 10, 5, validation);
    ASSERT_EQ(windows.num_windows(), validation ? 5 : 50);
    std::vector<int32_t> got(17), expected(17);
    for (int64_t i = 0; i < windows.num_windows(); ++i) {
      windows.read(i, got.data());
      generator.read(i, expected.data());
      ASSERT_EQ(got, expected) << (validation ? "val" : "train") << " window " << i;
    }
  }
  // Independent windows can only be read with the seq_len they were made for.
  expect_error([&] { ShardedWindows(m, "train", 32, 10, false); },
               {"manifest.yaml", "train.seq_len = 16"});
}

TEST(PrepareSynthetic, RejectsBadOptions) {
  PrepareOptions o;
  o.synthetic = "duplication";
  const ScratchDir scratch("synthetic_bad");
  o.output_dir = scratch.path();
  o.sequences = 10;
  o.vocab_size = 10;
  o.seq_len = 15;
  std::ostringstream progress;
  expect_error([&] { prepare_shards(o, progress); }, {"--seq-len"});
  o.seq_len = 16;
  o.vocab_size = 2;
  expect_error([&] { prepare_shards(o, progress); }, {"--vocab-size"});
  o.vocab_size = 99999999;  // more than model.vocab_size allows: shards no model could read
  expect_error([&] { prepare_shards(o, progress); },
               {"--vocab-size 99999999 is more than any model can read", "16777216"});
  o.vocab_size = 10;
  o.shards = 0;
  expect_error([&] { prepare_shards(o, progress); }, {"--shards"});
  o.shards = 1;
  o.val_fraction = 0.6;
  expect_error([&] { prepare_shards(o, progress); }, {"--val-fraction"});
  o.val_fraction = 0.0;
  expect_error([&] { prepare_shards(o, progress); }, {"--val-fraction"});
  EXPECT_FALSE(fs::exists(o.output_dir + "/manifest.yaml"));
}

// --- prepare refuses and cleans up ---------------------------------------------------------

TEST(PrepareSafety, RefusesToOverwriteAManifest) {
  const PreparedText p = prepare_text("overwrite", 3000, 2);
  const std::string before = read_text(p.manifest);
  std::ostringstream progress;
  expect_error(
      [&] { prepare_shards(text_options({p.dir + "/input.txt"}, p.dir + "/out", 1), progress); },
      {"manifest.yaml", "already exists"});
  EXPECT_EQ(read_text(p.manifest), before);
  EXPECT_NO_THROW(read_manifest(p.manifest));
}

TEST(PrepareSafety, RefusesToOverwriteAShardFile) {
  const ScratchDir scratch("overwrite_shard");
  const std::string& dir = scratch.path();
  write_file(dir + "/train-00000.h5", "precious");
  const std::string input = write_file(dir + "/in.txt", pseudo_text(2000, 3));
  std::ostringstream progress;
  expect_error([&] { prepare_shards(text_options({input}, dir, 1), progress); },
               {"train-00000.h5", "already exists"});
  EXPECT_EQ(read_text(dir + "/train-00000.h5"), "precious");
}

TEST(PrepareSafety, BadInputsLeaveNoManifest) {
  const ScratchDir scratch("bad_inputs");
  const std::string& dir = scratch.path();
  const std::string good = write_file(dir + "/good.txt", pseudo_text(5000, 4));
  std::ostringstream progress;
  expect_error(
      [&] {
        prepare_shards(text_options({good, dir + "/nope.txt"}, dir + "/o1", 1), progress);
      },
      {"nope.txt"});
  EXPECT_FALSE(fs::exists(dir + "/o1/manifest.yaml"));
  const std::string empty = write_file(dir + "/empty.txt", "");
  expect_error([&] { prepare_shards(text_options({empty}, dir + "/o2", 1), progress); }, {"empty"});
  const std::string tiny = write_file(dir + "/tiny.txt", pseudo_text(40, 5));
  expect_error([&] { prepare_shards(text_options({tiny}, dir + "/o3", 40), progress); },
               {"too few for 40 shards"});
  PrepareOptions with_seq_len = text_options({tiny}, dir + "/o4", 2);
  with_seq_len.seq_len = 16;  // the 4-byte validation tail is shorter than one window of 17
  expect_error([&] { prepare_shards(with_seq_len, progress); }, {"window of 17 tokens"});
  PrepareOptions sized = text_options({good}, dir + "/o5", 1);
  sized.vocab_size = 100;  // was ignored: byte tokens are 256
  expect_error([&] { prepare_shards(sized, progress); },
               {"--vocab-size 100 does not apply to byte tokens"});
  // The same file twice (under another name here) made shards training refuses.
  expect_error(
      [&] {
        prepare_shards(
            text_options(
                {good, tiny, dir + "/../" + fs::path(dir).filename().string() + "/good.txt"},
                dir + "/o6", 2),
            progress);
      },
      {"/good.txt' again: list each file once"});
  EXPECT_FALSE(fs::exists(dir + "/o3/manifest.yaml"));
  EXPECT_FALSE(fs::exists(dir + "/o4/manifest.yaml"));
  EXPECT_FALSE(fs::exists(dir + "/o5/manifest.yaml"));
  EXPECT_FALSE(fs::exists(dir + "/o6"));
  // Nothing left behind: output directories it made are removed again (they were left empty).
  PrepareOptions deep = text_options({tiny}, dir + "/new/deeper", 2);
  deep.seq_len = 16;
  expect_error([&] { prepare_shards(deep, progress); }, {"window of 17 tokens"});
  EXPECT_FALSE(fs::exists(dir + "/new"));
  EXPECT_FALSE(fs::exists(dir + "/o4"));
}

// A sysfs file claims 4096 bytes but yields a few: reading fails after shards were written.
TEST(PrepareSafety, FailureMidwayRemovesEverything) {
  const std::string liar = "/sys/devices/system/cpu/online";
  if (!fs::exists(liar) || fs::file_size(liar) <= read_text(liar).size())
    GTEST_SKIP() << "no sysfs file whose size exceeds its content";
  const ScratchDir scratch("midway");
  const std::string& dir = scratch.path();
  const std::string good = write_file(dir + "/good.txt", pseudo_text(200000, 6));
  std::ostringstream progress;
  expect_error(
      [&] {
        prepare_shards(text_options({good, liar}, dir + "/out", 4), progress);
      },
      {liar});
  EXPECT_NE(progress.str().find("wrote train shard"), std::string::npos) << progress.str();
  EXPECT_FALSE(fs::exists(dir + "/out")) << "leftovers in " << dir << "/out";  // (it made out/)
}

}  // namespace
}  // namespace rf
