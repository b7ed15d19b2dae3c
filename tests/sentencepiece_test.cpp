// SentencePiece tokenization end to end: `reformer prepare --tokenizer sentencepiece` trains a
// model whose pieces decode to exactly the text, writes uint16 shards and the model beside them;
// training, eval (bits per byte) and generate use it, and the checkpoint alone carries it. Bad
// tokenizer input is a clear error.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/hdf5_io.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "tests/job_control.h"
#include "tests/run_fixture.h"
#include "tests/test_corpus.h"
#include "trainer/checkpoint.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

std::string reformer(const std::string& args) {
  return std::string(RF_BINARY_DIR) + "/reformer " + args;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first 300 KB of Tiny Shakespeare plus text its lines lack (a tab, UTF-8, double spaces).
// (SentencePiece decodes byte pieces that are not valid UTF-8 as U+FFFD: text must be UTF-8.)
std::string corpus(const std::string& shakespeare, const std::string& dir) {
  const std::string text = read_file(shakespeare);
  EXPECT_GT(text.size(), 300000u) << "Tiny Shakespeare is missing";
  std::string path = dir + "/corpus.txt";
  std::ofstream(path, std::ios::binary)
      << text.substr(0, 300000) << "\tcaf\xC3\xA9  \xE2\x82\xAC end\n";
  return path;
}

const char* kModelYaml = R"(model:
  vocab_size: 600
  d_model: 32
  d_ff: 64
  n_layers: 2
  n_heads: 2
  d_head: 16
  attention: [local, lsh]
  axial_shape: [8, 8]
lsh:
  bucket_size: 16
  local_chunk: 16
train:
  seq_len: 64
  batch_size: 4
  steps: 30
  warmup: 5
  lr: 0.003
  log_every: 10
  eval_every: 0
  checkpoint_every: 0
data:
  format: hdf5
)";

TEST(SentencePiece, PreparedTextTrainsEvaluatesAndSamplesWithTheCheckpointAlone) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("sp");
  const std::string text_path = corpus(shakespeare, dir);
  test::CommandResult r = test::run_command(reformer("prepare --input " + text_path + " --output " +
                                                     dir + "/shards --tokenizer " +
                                                     "sentencepiece --vocab-size 600 --shards 2"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const Manifest m = read_manifest(dir + "/shards/manifest.yaml");
  EXPECT_EQ(m.tokenizer, "sentencepiece");
  EXPECT_EQ(m.vocab_size, 600);
  // Every byte of the text comes back from its tokens (byte fallback, whitespace kept).
  const Tokenizer tok =
      Tokenizer::from_model_file(m.tokenizer_model, m.tokenizer_model_checksum, "test");
  const std::string text = read_file(text_path);
  const std::vector<uint32_t> ids = tok.encode(text);
  EXPECT_LT(ids.size(), text.size() * 6 / 10) << "subwords should be longer than bytes";
  const std::string decoded = tok.decode(std::vector<int32_t>(ids.begin(), ids.end()));
  const auto diff = std::mismatch(decoded.begin(), decoded.end(), text.begin(), text.end());
  EXPECT_TRUE(decoded == text) << "decoded text differs at byte " << (diff.first - decoded.begin());
  int64_t bytes = 0;
  for (uint32_t id : ids) bytes += tok.token_bytes()[id];
  EXPECT_EQ(bytes, static_cast<int64_t>(text.size()));
  // Shards: uint16 tokens, as many as the encoding gives (the val tail apart).
  H5T_class_t cls;
  size_t width = 0;
  int rank = 0;
  Hdf5File::open_read(m.train[0].path).dataset_type(kShardDataset, &cls, &width, &rank);
  EXPECT_EQ(width, 2u);
  int64_t stored = 0;
  for (const auto* split : {&m.train, &m.val})
    for (const ShardEntry& e : *split) stored += e.tokens;
  EXPECT_NEAR(static_cast<double>(stored), static_cast<double>(ids.size()),
              0.002 * static_cast<double>(ids.size()));

  std::ofstream(dir + "/run.yaml") << kModelYaml << "  train: " << dir << "/shards/manifest.yaml\n";
  r = test::run_command(reformer("train --config " + dir + "/run.yaml --set train.out_dir=" + dir +
                                 "/run --no-report"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // The checkpoint carries the model: eval and generate get nothing but the checkpoint.
  EXPECT_EQ(checkpoint_tokenizer(resolve_checkpoint_path(dir + "/run")).serialized_model(),
            tok.serialized_model());
  r = test::run_command(reformer("eval --checkpoint " + dir + "/run --json"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json e = nlohmann::json::parse(r.out.substr(r.out.rfind('{')));
  const double bpt = e["bits_per_token"], bpb = e["bits_per_byte"];
  const double tokens = e["tokens"], text_bytes = e["text_bytes"];
  EXPECT_GT(text_bytes, 1.5 * tokens) << "a subword stands for more than a byte";
  EXPECT_NEAR(bpb, bpt * tokens / text_bytes, 1e-6 * bpb);  // (JSON keeps 8 digits)
  EXPECT_GT(bpb, 1.0);
  EXPECT_LT(bpb, 8.0);
  r = test::run_command(
      reformer("generate --checkpoint " + dir + "/run --prompt 'ROMEO:' --tokens 20 --seed 3"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // Progress on stderr (cleared with a carriage return), then the prompt's text and the decoded
  // pieces on stdout, then how it ran.
  EXPECT_NE(r.out.find("generate: 20/20 tokens"), std::string::npos) << r.out;
  const size_t sample = r.out.find("ROMEO:");
  ASSERT_NE(sample, std::string::npos) << r.out;
  EXPECT_TRUE(sample == 0 || r.out[sample - 1] == '\r') << r.out;
  EXPECT_GT(r.out.size() - sample, 30u) << r.out;
  EXPECT_NE(r.out.find("generate: 20 tokens in"), std::string::npos) << r.out;
  // Bytes that are not UTF-8 were replaced by U+FFFD without a word.
  r = test::run_command(reformer("generate --checkpoint " + dir +
                                 "/run --prompt \"$(printf 'ab\\377cd')\" --tokens 2"));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("error: --prompt is not UTF-8 text at byte 2 (this model's SentencePiece"),
            std::string::npos)
      << r.out;

  // Byte shards of the same text: the checkpoint's pieces are not bytes (eval scored them, exit
  // 0), and validation must be tokenised as training (bytes against pieces trained and scored).
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir + "/bytes"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string bytes_manifest = dir + "/bytes/manifest.yaml";
  r = test::run_command(reformer("eval --checkpoint " + dir + "/run --set data.train=" +
                                 bytes_manifest + " --set data.val=" + bytes_manifest));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("was trained with another tokenizer than data.train"), std::string::npos)
      << r.out;
  r = test::run_command(reformer("train --config " + dir + "/run.yaml --set train.out_dir=" + dir +
                                 "/mixed --set data.val=" + bytes_manifest));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("was tokenised differently from data.train"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(bytes against sentencepiece)"), std::string::npos) << r.out;
}

// The train/val split fell inside a character (each part is encoded alone), and both halves came
// back as U+FFFD: the shards no longer held the input. The decoded shards are the input.
TEST(SentencePiece, TheSplitBetweenTrainingAndValidationCutsNoCharacter) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("split");
  // Shakespeare, then euro signs without a newline around the split at 90%, which falls inside
  // one of them (a prefix length that makes it so is chosen).
  const std::string lines = read_file(shakespeare).substr(0, 250000);
  const size_t euros = 20000;
  size_t prefix = lines.size();
  const auto split_at = [&](size_t p) {
    const auto total = static_cast<int64_t>(p + 3 * euros);
    return total - static_cast<int64_t>(static_cast<double>(total) * 0.1);
  };
  while ((split_at(prefix) - static_cast<int64_t>(prefix)) % 3 == 0) --prefix;
  ASSERT_GT(split_at(prefix), static_cast<int64_t>(prefix));
  std::string text = lines.substr(0, prefix);
  for (size_t i = 0; i < euros; ++i) text += "\xE2\x82\xAC";
  const std::string input = dir + "/input.txt";
  std::ofstream(input, std::ios::binary) << text;
  const test::CommandResult r = test::run_command(
      reformer("prepare --input " + input + " --output " + dir +
               "/shards --tokenizer sentencepiece " + "--vocab-size 400 --val-fraction 0.1"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const Manifest m = read_manifest(dir + "/shards/manifest.yaml");
  const Tokenizer tok =
      Tokenizer::from_model_file(m.tokenizer_model, m.tokenizer_model_checksum, "test");
  std::string decoded;
  for (const auto* split : {&m.train, &m.val})
    for (const ShardEntry& e : *split) {
      std::vector<int32_t> ids(static_cast<size_t>(e.tokens));
      Hdf5File::open_read(e.path).read(kShardDataset, H5T_NATIVE_INT32, 0, e.tokens, ids.data());
      decoded += tok.decode(ids);
    }
  const auto diff = std::mismatch(decoded.begin(), decoded.end(), text.begin(), text.end());
  EXPECT_TRUE(decoded == text) << "the decoded shards differ from the input at byte "
                               << (diff.first - decoded.begin()) << " of " << text.size();
}

TEST(SentencePiece, BpeAndAGivenModelFileGiveTheSameShardsForTheSameModel) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("bpe");
  const std::string text_path = corpus(shakespeare, dir);
  test::CommandResult r = test::run_command(
      reformer("prepare --input " + text_path + " --output " + dir + "/a --tokenizer " +
               "sentencepiece --model-type bpe --vocab-size 500"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/b --tokenizer-model " + dir + "/a/tokenizer.model"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const Manifest a = read_manifest(dir + "/a/manifest.yaml");
  const Manifest b = read_manifest(dir + "/b/manifest.yaml");
  ASSERT_EQ(a.train.size(), b.train.size());
  EXPECT_EQ(a.train[0].checksum, b.train[0].checksum);
  EXPECT_EQ(a.val[0].checksum, b.val[0].checksum);
  EXPECT_EQ(a.tokenizer_model_checksum, b.tokenizer_model_checksum);
}

TEST(SentencePiece, BadTokenizerInputIsAClearErrorAndWritesNothing) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("bad");
  const std::string text_path = corpus(shakespeare, dir);
  test::CommandResult r =
      test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/small --tokenizer sentencepiece " + "--vocab-size 100"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--vocab-size for sentencepiece must be in [260"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/small/manifest.yaml"));

  std::ofstream(dir + "/junk.model") << "not a model";
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/junk --tokenizer-model " + dir + "/junk.model"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("is not a SentencePiece model"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("./src/"), std::string::npos) << r.out;  // (SentencePiece's own source)
  EXPECT_FALSE(fs::exists(dir + "/junk/manifest.yaml"));
  // A folder named as the model ("basic_filebuf::underflow error reading the file: Is a
  // directory", no file named), and too few pieces for the text's characters (SentencePiece's
  // reason named a --character_coverage option this program does not have).
  fs::create_directories(dir + "/folder.model");
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/folder --tokenizer-model " + dir + "/folder.model"));
  EXPECT_NE(r.out.find("--tokenizer-model '" + dir + "/folder.model' is a folder, not a model"),
            std::string::npos)
      << r.out;
  std::ofstream(dir + "/aaa.txt") << "aaa\n";
  r = test::run_command(reformer("prepare --input " + dir + "/aaa.txt --output " + dir +
                                 "/aaa --tokenizer sentencepiece --vocab-size 260"));
  EXPECT_NE(r.out.find("error: prepare: --vocab-size 260 is too small for this text: its "
                       "characters and the byte pieces need at least 261 pieces\n"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/aaa"));

  // Bytes that are not UTF-8 (binary data) became U+FFFD in the shards, changing the data. The
  // file is checked a block of 16 MiB at a time: here an "é" straddles the first block's end
  // (valid), and the byte 0xFF comes three bytes after it.
  {
    std::ofstream binary(dir + "/binary.txt", std::ios::binary);
    binary << std::string((16 << 20) - 1, 'a') << "\xC3\xA9"
           << "bc" << '\xFF' << "tail\n";
  }
  r = test::run_command(reformer("prepare --input " + dir + "/binary.txt --output " + dir +
                                 "/binary --tokenizer sentencepiece --vocab-size 300"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("binary.txt' is not UTF-8 text at byte " + std::to_string((16 << 20) + 3)),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/binary"));

  // More pieces than the text can give: SentencePiece's reason, not its source location.
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/huge --tokenizer sentencepiece --vocab-size 1000000"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("failed: Vocabulary size too high (1000000). Please set it to a value <="),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/huge"));
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/none --tokenizer sentencepiece"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--tokenizer sentencepiece needs --vocab-size"), std::string::npos) << r.out;

  // A tokenizer model changed after prepare no longer matches its manifest's checksum.
  r = test::run_command(reformer("prepare --input " + text_path + " --output " + dir +
                                 "/ok --tokenizer sentencepiece --vocab-size 400"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ofstream(dir + "/ok/tokenizer.model", std::ios::app) << "x";
  std::ofstream(dir + "/run.yaml") << kModelYaml << "  train: " << dir << "/ok/manifest.yaml\n";
  r = test::run_command(reformer("train --config " + dir + "/run.yaml --set train.out_dir=" + dir +
                                 "/run --set model.vocab_size=400"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("does not match its checksum"), std::string::npos) << r.out;
}

// The shards hold the input, or prepare says why not: U+2581, SentencePiece's mark for a space,
// came back as a space (refused, naming the file and byte, before training), and a model trained
// with SentencePiece's defaults (normalisation, no byte fallback) changed the text (said), each
// without a word before. generate's prompt likewise.
TEST(SentencePiece, TextThePiecesWouldNotGiveBackIsRefusedOrSaid) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("round_trip");
  const std::string text = read_file(shakespeare).substr(0, 100000);
  std::ofstream(dir + "/mark.txt", std::ios::binary) << text << "a\xE2\x96\x81"
                                                     << "b\n";
  test::CommandResult r =
      test::run_command(reformer("prepare --input " + dir + "/mark.txt --output " + dir +
                                 "/mark --tokenizer sentencepiece --vocab-size 400"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("mark.txt' holds U+2581 ('\xE2\x96\x81') at byte " +
                       std::to_string(text.size() + 1) + ", SentencePiece's mark for a space"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("training a"), std::string::npos) << "refused after training: " << r.out;
  EXPECT_FALSE(fs::exists(dir + "/mark"));

  std::ofstream(dir + "/plain.txt", std::ios::binary) << text;
  const auto trained = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + dir + "/plain.txt --model_prefix=" + dir + "/lossy --vocab_size=300 " +
      "--minloglevel=2");
  ASSERT_TRUE(trained.ok()) << trained.ToString();
  std::ofstream(dir + "/spaces.txt", std::ios::binary) << "two  spaces\n" << text;
  r = test::run_command(reformer("prepare --input " + dir + "/spaces.txt --output " + dir +
                                 "/lossy --tokenizer-model " + dir + "/lossy.model"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("note: --tokenizer-model does not give back the inputs exactly (first at "
                       "byte 4 of the inputs read as one text): the shards hold its normalised "
                       "text"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("note: --tokenizer-model"), r.out.rfind("note: --tokenizer-model"))
      << "said once: " << r.out;

  ASSERT_EQ(test::run_command(reformer("prepare --input " + dir + "/plain.txt --output " + dir +
                                       "/ok --tokenizer sentencepiece --vocab-size 400"))
                .exit_code,
            0);
  std::ofstream(dir + "/run.yaml") << kModelYaml << "  train: " << dir << "/ok/manifest.yaml\n";
  ASSERT_EQ(test::run_command(reformer("train --no-report --config " + dir +
                                       "/run.yaml --set train.steps=1 --set train.out_dir=" + dir +
                                       "/run --set model.vocab_size=400"))
                .exit_code,
            0);
  r = test::run_command(reformer("generate --checkpoint " + dir +
                                 "/run --tokens 1 --prompt 'a\xE2\x96\x81"
                                 "b'"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--prompt holds U+2581 ('\xE2\x96\x81') at byte 1, SentencePiece's mark "
                       "for a space"),
            std::string::npos)
      << r.out;
}

// Ctrl-C (or SIGTERM) while prepare works left its output folder behind, with a partial token
// file of 4 bytes a token once encoding had begun: the clean-up of a failure did not run.
TEST(SentencePiece, AnInterruptedPrepareRemovesItsPartialOutput) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("interrupted");
  const std::string text = read_file(shakespeare);
  std::ofstream(dir + "/twice.txt", std::ios::binary) << text << text;
  for (const int signal : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(signal);
    const std::string out = dir + "/new/shards", log = dir + "/prepare.log";
    const pid_t job = test::spawn(reformer("prepare --input " + dir + "/twice.txt --output " + out +
                                           " --tokenizer sentencepiece --vocab-size 4000"),
                                  log);
    const test::ReapOnExit reap{job};
    ASSERT_TRUE(test::wait_for_file(out, 60)) << read_file(log);
    kill(job, signal);
    double seconds = 0;
    EXPECT_EQ(test::wait_exit(job, 60, &seconds), 128 + signal) << read_file(log);
    EXPECT_NE(
        read_file(log).find(std::string("stopped by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
                            ": the partial output is removed"),
        std::string::npos)
        << read_file(log);
    EXPECT_FALSE(fs::exists(dir + "/new")) << "left behind";
  }
}

}  // namespace
}  // namespace rf
