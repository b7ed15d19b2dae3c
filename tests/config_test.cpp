// Tests of the experiment configuration loader (trainer/config.h): defaults, strict typing and
// ranges, error messages (key, file:line, suggestion), --set overrides, the cross-field rules,
// derived values (bucket factors, axial dims), the resolved source_text round trip, and that
// configs/reference.yaml is exactly the generated reference.
#include "trainer/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/test_util.h"
#include "trainer/config_schema.h"

#ifndef RF_SOURCE_DIR
#error "RF_SOURCE_DIR must be defined as the repository root (the build defines it)"
#endif

namespace rf {
namespace {

using Overrides = std::vector<std::string>;

testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// The message of the rf::Error that `action` throws; a test failure when it throws none.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected an rf::Error, none was thrown";
  return "";
}

std::string load_error(const std::string& yaml, const Overrides& overrides = {}) {
  return error_of([&] { load_config_text(yaml, "exp.yaml", overrides); });
}

Config load(const std::string& yaml, const Overrides& overrides = {}) {
  return load_config_text(yaml, "exp.yaml", overrides);
}

using test::read_text;

// Tests that write real files get a fresh directory of their own.
class ConfigFileTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = testing::TempDir() + "/config_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::string dir_;
};

TEST_F(ConfigFileTest, EmptyFileGivesDefaults) {
  const Config c = load_config(write("empty.yaml", ""), {});
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.d_model, 256);
  EXPECT_EQ(c.model.n_layers, 6);
  EXPECT_EQ(c.model.attention, std::vector<AttentionKind>{AttentionKind::kLsh});
  EXPECT_EQ(c.model.activation, Activation::kGelu);
  EXPECT_EQ(c.model.position, PositionMode::kAxial);
  EXPECT_EQ(c.model.axial_shape, (std::vector<int64_t>{64, 64}));
  EXPECT_TRUE(c.model.axial_dims.empty());
  EXPECT_TRUE(c.model.reversible);
  EXPECT_TRUE(c.lsh.n_buckets.empty());
  EXPECT_EQ(c.train.seq_len, 4096);
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.train.schedule, ScheduleKind::kCosine);
  EXPECT_DOUBLE_EQ(c.train.adam_eps, 1e-9);
  EXPECT_EQ(c.train.out_dir, "runs/default");
  EXPECT_EQ(c.data.format, DataFormat::kSynthetic);
  EXPECT_EQ(c.data.train, "");
  EXPECT_EQ(c.runtime.device, Device::kCpu);
  EXPECT_EQ(c.runtime.precision, GemmPrecision::kFp32);
}

TEST(Config, EmptySectionsAndCommentsGiveDefaults) {
  const Config c = load("# nothing set\nmodel:\nlsh:\n  # n_hashes: 8\n");
  EXPECT_EQ(c.source_text, load("").source_text);
}

TEST(Config, ValuesAreRead) {
  const Config c = load(
      "model:\n  vocab_size: 300\n  d_model: 128\n  attention: [lsh, local, dense]\n"
      "  activation: relu\n  dropout: 0.25\n  position: learned\n  reversible: false\n"
      "  axial_dims: [60, 68]\n"
      "lsh:\n  bucket_size: 32\n  n_buckets: [4, 8]\n  n_hashes: 4\n  local_chunk: 64\n"
      "train:\n  seq_len: 1024\n  lr: 1e-3\n  schedule: rsqrt\n  weight_decay: 0\n"
      "  seed: 1234567890123\n  out_dir: runs/x\n"
      "data:\n  format: bytes\n  train: data/train.bin\n  val_fraction: 0.5\n"
      "runtime:\n  device: cuda\n  threads: 3\n  precision: tf32\n");
  EXPECT_EQ(c.model.vocab_size, 300);
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.attention,
            (std::vector<AttentionKind>{AttentionKind::kLsh, AttentionKind::kLocal,
                                        AttentionKind::kDense}));
  EXPECT_EQ(c.attention_of_layer(4), AttentionKind::kLocal);
  EXPECT_EQ(c.model.activation, Activation::kRelu);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.25);
  EXPECT_EQ(c.model.position, PositionMode::kLearned);
  EXPECT_FALSE(c.model.reversible);
  EXPECT_EQ(c.axial_dims(), (std::vector<int64_t>{60, 68}));
  EXPECT_EQ(c.lsh.bucket_size, 32);
  EXPECT_EQ(c.lsh.n_buckets, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(c.lsh.n_hashes, 4);
  EXPECT_EQ(c.train.seq_len, 1024);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.schedule, ScheduleKind::kRsqrt);
  EXPECT_DOUBLE_EQ(c.train.weight_decay, 0.0);
  EXPECT_EQ(c.train.seed, 1234567890123);
  EXPECT_EQ(c.train.out_dir, "runs/x");
  EXPECT_EQ(c.data.format, DataFormat::kBytes);
  EXPECT_EQ(c.data.train, "data/train.bin");
  EXPECT_EQ(c.runtime.device, Device::kCuda);
  EXPECT_EQ(c.runtime.threads, 3);
  EXPECT_EQ(c.runtime.precision, GemmPrecision::kTf32);
}

TEST(Config, FloatsAcceptIntegerAndExponentSyntax) {
  EXPECT_DOUBLE_EQ(load("train:\n  lr: 1\n").train.lr, 1.0);
  EXPECT_DOUBLE_EQ(load("train:\n  lr: 3e-4\n").train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(load("train:\n  lr: 0.0003\n").train.lr, 3e-4);
}

TEST(Config, ScalarAttentionIsAOneEntryList) {
  EXPECT_EQ(load("model:\n  attention: dense\n").model.attention,
            std::vector<AttentionKind>{AttentionKind::kDense});
}

TEST(Config, EnumChoicesAreInEnumOrder) {
  const KeySpec* attention = find_key_spec("model", "attention");
  ASSERT_NE(attention, nullptr);
  for (const AttentionKind kind :
       {AttentionKind::kLsh, AttentionKind::kLocal, AttentionKind::kDense}) {
    EXPECT_EQ(attention->choices[static_cast<size_t>(kind)], attention_name(kind));
  }
  EXPECT_EQ(load("model:\n  position: none\n").model.position, PositionMode::kNone);
  EXPECT_EQ(load("train:\n  schedule: constant\n").train.schedule, ScheduleKind::kConstant);
  EXPECT_EQ(load("data:\n  format: hdf5\n  train: m.txt\n").data.format, DataFormat::kHdf5);
}

TEST_F(ConfigFileTest, UnknownKeyNamesFileLineAndSuggestion) {
  const std::string path = write("exp.yaml", "model:\n  d_model: 128\n  d_modle: 64\n");
  const std::string message = error_of([&] { load_config(path, {}); });
  EXPECT_TRUE(Contains(message, path + ":3: unknown key 'model.d_modle' "
                                       "(did you mean 'model.d_model'?)"));
}

TEST(Config, UnknownKeyFarFromAnyListsTheSectionKeys) {
  const std::string message = load_error("lsh:\n  zzzzzzzzz: 1\n");
  EXPECT_TRUE(Contains(message, "exp.yaml:2: unknown key 'lsh.zzzzzzzzz'"));
  EXPECT_TRUE(
      Contains(message, "valid keys of lsh: bucket_size, n_buckets, n_hashes, local_chunk"));
}

TEST(Config, KeyOfAnotherSectionIsSuggested) {
  EXPECT_TRUE(Contains(load_error("model:\n  seq_len: 1024\n"),
                       "unknown key 'model.seq_len' (did you mean 'train.seq_len'?)"));
}

TEST(Config, UnknownSection) {
  EXPECT_TRUE(Contains(load_error("modle:\n  d_model: 5\n"),
                       "exp.yaml:1: unknown section 'modle' (did you mean 'model'?)"));
  EXPECT_TRUE(Contains(load_error("optimizer:\n  lr: 1\n"),
                       "unknown section 'optimizer' (valid sections: model, lsh, train, data, "
                       "runtime)"));
}

TEST(Config, NonMappingTopLevelAndSection) {
  EXPECT_TRUE(Contains(load_error("just text\n"), "the top level must be a mapping of sections"));
  EXPECT_TRUE(Contains(load_error("model: 5\n"),
                       "exp.yaml:1: section 'model' must be a mapping of keys, got '5'"));
}

TEST(Config, DuplicateKey) {
  EXPECT_TRUE(Contains(load_error("train:\n  steps: 5\n  steps: 6\n"),
                       "exp.yaml:3: duplicate key 'train.steps' (first given on line 2)"));
}

TEST(Config, IntGivenString) {
  EXPECT_TRUE(Contains(load_error("model:\n  d_model: abc\n"),
                       "exp.yaml:2: model.d_model: expected an integer, got 'abc'"));
}

TEST(Config, IntGivenFloatOrQuotedNumber) {
  EXPECT_TRUE(Contains(load_error("model:\n  n_layers: 1.5\n"),
                       "exp.yaml:2: model.n_layers: expected an integer, got '1.5'"));
  EXPECT_TRUE(Contains(load_error("model:\n  n_layers: \"4\"\n"),
                       "model.n_layers: expected an integer, got the string \"4\""));
}

TEST(Config, OtherTypeErrors) {
  EXPECT_TRUE(Contains(load_error("train:\n  lr: fast\n"),
                       "exp.yaml:2: train.lr: expected a number, got 'fast'"));
  EXPECT_TRUE(Contains(load_error("model:\n  reversible: yes\n"),
                       "model.reversible: expected true or false, got 'yes'"));
  EXPECT_TRUE(Contains(load_error("model:\n  axial_shape: 64\n"),
                       "model.axial_shape: expected a list of exactly 2 integers"));
  EXPECT_TRUE(Contains(load_error("model:\n  axial_shape: [16, 16, 16]\n"), "got '[16, 16, 16]'"));
  EXPECT_TRUE(Contains(load_error("model:\n  axial_shape:\n    - 64\n    - x\n"),
                       "exp.yaml:4: model.axial_shape[1]: expected an integer, got 'x'"));
  EXPECT_TRUE(Contains(load_error("lsh:\n  n_buckets: [2, 2, 2, 2]\n"),
                       "lsh.n_buckets: expected auto, an integer"));
  EXPECT_TRUE(Contains(load_error("train:\n  out_dir: [a]\n"),
                       "train.out_dir: expected a string, got '[a]'"));
}

TEST(Config, FloatOutOfRange) {
  EXPECT_TRUE(Contains(load_error("model:\n  dropout: 1.5\n"),
                       "exp.yaml:2: model.dropout = 1.5 is out of range [0, 1)"));
  EXPECT_TRUE(Contains(load_error("train:\n  lr: 0\n"), "train.lr = 0 is out of range (0, 10]"));
  EXPECT_TRUE(Contains(load_error("train:\n  grad_clip: 2e6\n"),
                       "train.grad_clip = 2e6 is out of range [0, 1000000]"));
}

TEST(Config, IntOutOfRange) {
  EXPECT_TRUE(Contains(load_error("model:\n  d_model: 0\n"),
                       "exp.yaml:2: model.d_model = 0 is out of range [1, 65536]"));
  EXPECT_TRUE(Contains(load_error("train:\n  steps: 99999999999999999999\n"),
                       "train.steps = 99999999999999999999 is out of range [1, 1099511627776]"));
  EXPECT_TRUE(Contains(load_error("model:\n  axial_shape: [64, -1]\n"),
                       "model.axial_shape[1] = -1 is out of range [1, 16777216]"));
  // Heads wider than the attention kernels hold are a config error, not a failed internal check
  // at the first step (as they were up to 2026-12-03).
  EXPECT_TRUE(Contains(load_error("model:\n  d_head: 257\n"),
                       "exp.yaml:2: model.d_head = 257 is out of range [1, 256]"));
  EXPECT_EQ(load("model:\n  d_head: 256\n").model.d_head, 256);
}

TEST(Config, EnumNotAllowed) {
  EXPECT_TRUE(Contains(load_error("model:\n  activation: swish\n"),
                       "exp.yaml:2: model.activation = 'swish' is not one of gelu, relu"));
  EXPECT_TRUE(Contains(load_error("model:\n  attention: [lsh, full]\n"),
                       "model.attention[1] = 'full' is not one of lsh, local, dense"));
  EXPECT_TRUE(Contains(load_error("model:\n  attention: []\n"),
                       "model.attention: expected a non-empty list of entries"));
}

TEST(Config, EmptyRequiredString) {
  EXPECT_TRUE(Contains(load_error("train:\n  out_dir: \"\"\n"),
                       "exp.yaml:2: train.out_dir must not be empty"));
}

TEST_F(ConfigFileTest, BrokenYamlNamesLineAndColumn) {
  const std::string path = write("broken.yaml", "model:\n  d_model: 4\n  d_ff: [1, 2\n");
  const std::string message = error_of([&] { load_config(path, {}); });
  EXPECT_TRUE(Contains(message, path + ":4:1: invalid YAML: "));
  EXPECT_TRUE(
      Contains(load_error("model:\n  a: b: c\n"), "exp.yaml:2:7: invalid YAML: illegal map value"));
  // A second document was ignored (d_model 32 here, not 64).
  EXPECT_EQ(load_error("model:\n  d_model: 32\n---\nmodel:\n  d_model: 64\n"),
            "exp.yaml holds 2 YAML documents (separated by '---' or '...'); a config is one");
  EXPECT_TRUE(Contains(load_error("model:\n  d_model: 32\n...\nx\n"), "holds 2 YAML documents"));
  EXPECT_EQ(load_error("", {"model.d_model=32\n---\nx"}),
            "--set model.d_model=32\n---\nx: the value holds 2 YAML documents (separated by "
            "'---' or '...'); a config is one");
  EXPECT_EQ(load("---\nmodel:\n  d_model: 128\n").model.d_model, 128);  // one, marked
  EXPECT_EQ(load("%YAML 1.2\n---\nmodel:\n  d_model: 128\n...\n").model.d_model, 128);
  EXPECT_EQ(load("model:\n  d_model: 128\n---\n# a comment, no document\n").model.d_model, 128);
  EXPECT_EQ(load("model:\n  d_model: 128\n  d_ff: 64  # --- not a marker\n").model.d_ff, 64);
  // Keys after an empty first document were not read: the default experiment trained.
  for (const std::string empty_first : {"---\n---\n", "# notes\n...\n", "...\n"})
    EXPECT_EQ(load_error(empty_first + "model:\n  d_model: 32\n"),
              "exp.yaml starts with an empty YAML document: its keys follow a second '---' or a "
              "'...', where they are not read; remove the separator before them")
        << empty_first;
  EXPECT_EQ(load("# only a comment\n").model.d_model, Config().model.d_model);  // (empty: fine)
  EXPECT_EQ(load("%YAML 1.2\n---\nmodel:\n  d_model: 64\n").model.d_model, 64);
  EXPECT_EQ(load("--- {model: {d_model: 64}}\n").model.d_model, 64);
  EXPECT_EQ(load("data:\n  val: v.txt\n", {"data.val=~"}).data.val, "");  // (a null value)
}

TEST_F(ConfigFileTest, MissingFile) {
  const std::string path = dir_ + "/absent.yaml";
  EXPECT_EQ(error_of([&] { load_config(path, {}); }),
            "cannot read config file '" + path + "': No such file or directory");
}

TEST_F(ConfigFileTest, OverridesApplyAfterTheFileInOrder) {
  const std::string path = write("exp.yaml", "model:\n  d_model: 128\n  activation: relu\n");
  const Config c =
      load_config(path, {"model.d_model=512", "model.d_model=64", "model.axial_shape=[32, 128]",
                         "model.activation=gelu", "lsh.n_buckets=[8, 8]", "lsh.n_buckets=auto"});
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.axial_shape, (std::vector<int64_t>{32, 128}));
  EXPECT_EQ(c.model.activation, Activation::kGelu);
  EXPECT_TRUE(c.lsh.n_buckets.empty());
}

TEST(Config, OverrideScalarListAndEnum) {
  EXPECT_EQ(load("", {"train.steps=7"}).train.steps, 7);
  EXPECT_EQ(load("", {"model.attention=[dense, lsh]"}).model.attention,
            (std::vector<AttentionKind>{AttentionKind::kDense, AttentionKind::kLsh}));
  EXPECT_EQ(load("", {"train.schedule=constant"}).train.schedule, ScheduleKind::kConstant);
  EXPECT_EQ(load("", {"lsh.n_buckets=512"}).lsh.n_buckets, std::vector<int64_t>{512});
  EXPECT_EQ(load("", {"data.val="}).data.val, "");
}

TEST(Config, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(load_error("", {"model.d_modle=5"}),
            "--set model.d_modle=5: unknown key 'model.d_modle' (did you mean 'model.d_model'?)");
  EXPECT_TRUE(Contains(load_error("", {"modle.d_model=5"}),
                       "--set modle.d_model=5: unknown section 'modle' (did you mean 'model'?)"));
  EXPECT_EQ(load_error("", {"model.d_model=abc"}),
            "--set model.d_model=abc: model.d_model: expected an integer, got 'abc'");
  EXPECT_EQ(load_error("", {"model.dropout=2"}),
            "--set model.dropout=2: model.dropout = 2 is out of range [0, 1)");
  EXPECT_TRUE(Contains(load_error("", {"model.axial_shape=[64,"}),
                       "--set model.axial_shape=[64,: invalid YAML value"));
}

TEST(Config, MalformedOverride) {
  EXPECT_TRUE(Contains(load_error("", {"model.d_model"}), "malformed override 'model.d_model'"));
  EXPECT_TRUE(Contains(load_error("", {"d_model=5"}), "malformed override 'd_model=5'"));
  EXPECT_TRUE(Contains(load_error("", {".d_model=5"}), "malformed override '.d_model=5'"));
}

TEST(Config, AMergeKeyIsNamedAsUnsupported) {
  const std::string merged =
      load_error("train:\n  seq_len: &n 512\nmodel:\n  <<: {d_model: 64}\n  d_ff: *n\n");
  EXPECT_TRUE(Contains(merged, "exp.yaml:4"));
  EXPECT_TRUE(Contains(merged, "YAML merge keys ('<<') are not supported")) << merged;
  EXPECT_TRUE(Contains(load_error("<<: {model: {d_model: 64}}\n"), "merge keys"));
  EXPECT_EQ(
      load("train:\n  seq_len: &n 512\nmodel:\n  d_ff: *n\n  axial_shape: [16, 32]\n").model.d_ff,
      512);
}

// A cross-field error about a key a --set gave names that override, not the file.
TEST(ConfigRules, ACrossFieldErrorNamesTheOverrideThatGaveTheKey) {
  EXPECT_EQ(load_error("lsh:\n  bucket_size: 32\n", {"lsh.n_buckets=7"})
                .rfind("--set lsh.n_buckets=7 (with exp.yaml): lsh.n_buckets = 7 must be even", 0),
            0u)
      << load_error("lsh:\n  bucket_size: 32\n", {"lsh.n_buckets=7"});
  // The last of two overrides of the key gave it; one of another key leaves the file blamed.
  EXPECT_TRUE(Contains(load_error("", {"lsh.n_buckets=8", "lsh.n_buckets=9"}),
                       "--set lsh.n_buckets=9 (with exp.yaml): lsh.n_buckets = 9"));
  EXPECT_EQ(load_error("lsh:\n  n_buckets: 7\n", {"lsh.n_hashes=4"}).rfind("exp.yaml: ", 0), 0u);
  // A rule about two keys that names the overridden one second blames the override too (the
  // file, which says 32, was blamed).
  EXPECT_EQ(load_error("train:\n  seq_len: 256\nlsh:\n  bucket_size: 32\n", {"lsh.bucket_size=48"})
                .rfind("--set lsh.bucket_size=48 (with exp.yaml): train.seq_len = 256 must be a "
                       "multiple of lsh.bucket_size = 48",
                       0),
            0u);
}

// What an error says about an override, whichever form it takes, even where the file's name
// holds "): ".
TEST(ConfigRules, TheErrorAboutAnOverrideIsFoundInEitherForm) {
  EXPECT_EQ(error_about_override(load_error("", {"model.d_model=0"}), "model.d_model=0"),
            error_of([] {
              load_config_text("", "x", {"model.d_model=0"});
            }).substr(std::string("--set model.d_model=0: ").size()));
  std::string cross;
  try {
    load_config_text("", "odd): name.yaml", {"lsh.n_buckets=7"});
  } catch (const Error& e) {
    cross = e.what();
  }
  EXPECT_EQ(
      error_about_override(cross, "lsh.n_buckets=7").rfind("lsh.n_buckets = 7 must be even", 0), 0u)
      << cross;
  EXPECT_EQ(error_about_override(cross, "lsh.n_buckets=8"), "");
}

// Rule 1: LSH chunks and bucket counts.
TEST(ConfigRules, SeqLenMustBeAMultipleOfBucketSize) {
  EXPECT_EQ(load_error("model:\n  axial_shape: [40, 25]\ntrain:\n  seq_len: 1000\n"),
            "exp.yaml: train.seq_len = 1000 must be a multiple of lsh.bucket_size = 64 (LSH "
            "attention cuts the sorted sequence into chunks of bucket_size)");
}

TEST(ConfigRules, BucketCountsMustBeEven) {
  EXPECT_TRUE(Contains(load_error("lsh:\n  n_buckets: 7\n"),
                       "exp.yaml: lsh.n_buckets = 7 must be even and at least 2"));
  EXPECT_TRUE(Contains(load_error("lsh:\n  n_buckets: [32, 15]\n"),
                       "lsh.n_buckets = [32, 15]: factor 15 must be even and at least 2"));
  // 2^32 buckets a round overflowed the 32-bit bucket ids (a crash); 2^24 is the most.
  EXPECT_TRUE(Contains(load_error("lsh:\n  n_buckets: [65536, 65536]\n"),
                       "lsh.n_buckets = [65536, 65536] makes 4294967296 buckets per hash round; "
                       "at most 16777216"));
  EXPECT_TRUE(Contains(load_error("lsh:\n  n_buckets: [4096, 4096, 2]\n"),
                       "makes 33554432 buckets per hash round"));
  EXPECT_EQ(load("lsh:\n  n_buckets: [4096, 4096]\n").lsh.n_buckets,
            (std::vector<int64_t>{4096, 4096}));
}

TEST(ConfigRules, LshRulesOnlyWhenALayerUsesLsh) {
  // attention [dense, lsh] with one layer: no layer uses LSH.
  const Config c = load(
      "model:\n  n_layers: 1\n  attention: [dense, lsh]\n  position: none\n"
      "train:\n  seq_len: 1000\n");
  EXPECT_EQ(c.train.seq_len, 1000);
  EXPECT_TRUE(Contains(load_error("model:\n  n_layers: 2\n  attention: [dense, lsh]\n"
                                  "  position: none\ntrain:\n  seq_len: 1000\n"),
                       "must be a multiple of lsh.bucket_size"));
}

// Rule 2: local attention chunks.
TEST(ConfigRules, SeqLenMustBeAMultipleOfLocalChunk) {
  EXPECT_TRUE(Contains(load_error("model:\n  attention: [local]\nlsh:\n  local_chunk: 100\n"),
                       "exp.yaml: train.seq_len = 4096 must be a multiple of lsh.local_chunk = "
                       "100 (local attention"));
}

// Rule 3: axial positions.
TEST(ConfigRules, AxialShapeProductMustEqualSeqLen) {
  EXPECT_TRUE(Contains(load_error("model:\n  axial_shape: [64, 32]\n"),
                       "exp.yaml: model.axial_shape = [64, 32] has product 2048 but must equal "
                       "train.seq_len = 4096"));
  EXPECT_EQ(load("model:\n  position: none\n  axial_shape: [64, 32]\n").model.position,
            PositionMode::kNone);
}

TEST(ConfigRules, AxialDimsMustSumToDModel) {
  EXPECT_TRUE(Contains(load_error("model:\n  axial_dims: [100, 100]\n"),
                       "model.axial_dims = [100, 100] sums to 200 but must equal model.d_model "
                       "= 256"));
  EXPECT_TRUE(Contains(load_error("model:\n  d_model: 1\n"),
                       "model.axial_dims = auto ([0, 1]) must be 2 entries each at least 1"));
}

// Rule 4: byte-level data.
TEST(ConfigRules, ByteDataNeedsVocab256AndATrainFile) {
  EXPECT_TRUE(Contains(load_error("model:\n  vocab_size: 100\ndata:\n  format: text\n"
                                  "  train: a.txt\n"),
                       "exp.yaml: model.vocab_size = 100 must be at least 256 when data.format = "
                       "text"));
  EXPECT_TRUE(Contains(load_error("data:\n  format: hdf5\n"),
                       "exp.yaml: data.train must name the shard manifest when data.format = "
                       "hdf5"));
}

// Rule 5: the duplication task.
TEST(ConfigRules, DuplicationNeedsVocab3AndEvenSeqLen) {
  EXPECT_TRUE(Contains(load_error("model:\n  vocab_size: 2\n"),
                       "model.vocab_size = 2 must be at least 3 for data.synthetic = "
                       "duplication"));
  EXPECT_TRUE(Contains(load_error("model:\n  attention: [dense]\n  position: none\n"
                                  "train:\n  seq_len: 5\n"),
                       "train.seq_len = 5 must be even and at least 4 for data.synthetic = "
                       "duplication"));
}

// Rule 6: reduced precision.
TEST(ConfigRules, ReducedPrecisionNeedsCuda) {
  EXPECT_TRUE(Contains(load_error("runtime:\n  precision: tf32\n"),
                       "exp.yaml: runtime.precision = tf32 requires runtime.device = cuda, got "
                       "cpu"));
}

TEST(Config, BucketFactors) {
  EXPECT_EQ(load("").bucket_factors(), std::vector<int64_t>{128});  // 2 * 4096 / 64
  const Config long_seq = load(
      "model:\n  axial_shape: [256, 256]\nlsh:\n  bucket_size: 256\ntrain:\n"
      "  seq_len: 65536\n");
  EXPECT_EQ(long_seq.bucket_factors(), (std::vector<int64_t>{32, 16}));  // 512 buckets
  EXPECT_EQ(load("lsh:\n  n_buckets: [4, 16, 2]\n").bucket_factors(),
            (std::vector<int64_t>{4, 16, 2}));
  EXPECT_EQ(load("lsh:\n  n_buckets: 512\n").bucket_factors(), (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(load("lsh:\n  n_buckets: 384\n").bucket_factors(), (std::vector<int64_t>{32, 12}));
  EXPECT_EQ(load("lsh:\n  n_buckets: 130\n").bucket_factors(), std::vector<int64_t>{130});
  EXPECT_EQ(load("lsh:\n  n_buckets: 64\n").bucket_factors(), std::vector<int64_t>{64});
}

TEST(Config, AxialDims) {
  EXPECT_EQ(load("").axial_dims(), (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(load("model:\n  d_model: 255\n").axial_dims(), (std::vector<int64_t>{127, 128}));
}

// model.ff_chunk and model.head_chunk: `auto` is 1024 rows on a CPU and every row at once on a
// GPU, unless a chunk's activations would pass 2 GiB; numbers mean what they say on both.
TEST(Config, AutoChunksDependOnTheDevice) {
  const Config cpu = load("");
  EXPECT_EQ(cpu.model.ff_chunk, kAutoInt);
  EXPECT_EQ(cpu.ff_chunking().rows(4096), 1024);
  EXPECT_EQ(cpu.head_chunking().rows(4096), 1024);
  EXPECT_EQ(cpu.ff_chunking().rows(100), 100);
  const Config gpu = load("runtime:\n  device: cuda\n");
  EXPECT_EQ(gpu.ff_chunking().rows(65536), 65536);
  EXPECT_EQ(gpu.head_chunking().rows(65536), 65536);
  // d_ff 1024: 12 KiB of activations per row, so 2 GiB hold 174,762 rows.
  EXPECT_EQ(gpu.ff_chunking().rows(int64_t{1} << 20), (int64_t{2} << 30) / (int64_t{3} * 1024 * 4));
  const Config fixed = load("model:\n  ff_chunk: 300\n  head_chunk: 0\nruntime:\n  device: cuda\n");
  EXPECT_EQ(fixed.ff_chunking().rows(4096), 300);
  EXPECT_EQ(fixed.head_chunking().rows(4096), 4096);
  EXPECT_TRUE(Contains(cpu.source_text, "  ff_chunk: auto\n"));
  EXPECT_TRUE(Contains(fixed.source_text, "  ff_chunk: 300\n"));
  EXPECT_EQ(load_config_text(cpu.source_text, "x", {}).model.head_chunk, kAutoInt);
  EXPECT_TRUE(Contains(load_error("model:\n  ff_chunk: some\n"),
                       "model.ff_chunk: expected auto, or an integer in [0, 1073741824], got "
                       "'some'"));
}

TEST(Config, SourceTextRoundTrips) {
  const Config original = load(
      "model:\n  d_model: 130\n  attention: [local, lsh]\n  dropout: 0.1\n  axial_dims: [30, "
      "100]\n  reversible: false\n"
      "lsh:\n  n_buckets: 256\n  local_chunk: 64\n"
      "train:\n  lr: 3e-4\n  grad_clip: 0\n  adam_eps: 1e-8\n  out_dir: \"runs/a \\\"b\\\": c\"\n"
      "data:\n  format: text\n  val: \"null\"\n  train: \"tab\\there\"\n");
  EXPECT_TRUE(Contains(original.source_text, "  n_buckets: 256\n"));
  EXPECT_TRUE(Contains(original.source_text, "  axial_dims: [30, 100]\n"));
  const Config reloaded = load_config_text(original.source_text, "x", {});
  EXPECT_EQ(reloaded.source_text, original.source_text);
  EXPECT_EQ(reloaded.train.out_dir, "runs/a \"b\": c");
  EXPECT_EQ(reloaded.data.val, "null");
  EXPECT_EQ(reloaded.data.train, "tab\there");
  EXPECT_DOUBLE_EQ(reloaded.train.lr, 3e-4);
  EXPECT_EQ(reloaded.lsh.n_buckets, std::vector<int64_t>{256});

  const Config defaults = load("");
  EXPECT_TRUE(Contains(defaults.source_text, "  n_buckets: auto\n"));
  EXPECT_TRUE(Contains(defaults.source_text, "  axial_dims: auto\n"));
  EXPECT_EQ(load_config_text(defaults.source_text, "x", {}).source_text, defaults.source_text);
}

TEST(Config, SourceTextHasEveryKey) {
  const std::string text = load("").source_text;
  for (const KeySpec& spec : config_schema()) {
    EXPECT_TRUE(Contains(text, "\n  " + spec.name + ": ")) << spec.full_name();
  }
}

TEST(ConfigReference, FileMatchesGeneratedText) {
  const std::string path = std::string(RF_SOURCE_DIR) + "/configs/reference.yaml";
  EXPECT_EQ(read_text(path), config_reference_yaml())
      << path << " is stale: regenerate it from config_reference_yaml()";
}

TEST(ConfigReference, LoadsToTheDefaults) {
  EXPECT_EQ(load(config_reference_yaml()).source_text, load("").source_text);
}

// The comment on `spec`'s line of the reference, joined with its continuation lines.
std::string reference_comment_of(const std::string& reference, const KeySpec& spec) {
  std::istringstream lines(reference);
  std::string line;
  std::string section;
  std::string comment;
  bool in_key = false;
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] != ' ' && line[0] != '#') section = line.substr(0, line.find(':'));
    const size_t hash = line.find("# ");
    if (in_key && hash != std::string::npos && hash > 0 && line.find_first_not_of(' ') == hash) {
      comment += " " + line.substr(hash + 2);
      continue;
    }
    in_key = section == spec.section &&
             line.rfind("  " + spec.name + ": " + spec.default_yaml + " ", 0) == 0 &&
             hash != std::string::npos;
    if (in_key) comment = line.substr(hash + 2);
  }
  return comment;
}

TEST(ConfigReference, DocumentsEveryKeyWithDefaultMeaningAndAllowedValues) {
  const std::string reference = config_reference_yaml();
  for (const KeySpec& spec : config_schema()) {
    EXPECT_FALSE(spec.doc.empty()) << spec.full_name();
    EXPECT_EQ(reference_comment_of(reference, spec),
              spec.doc + ". Allowed: " + allowed_text(spec) + ".")
        << spec.full_name();
  }
  EXPECT_TRUE(Contains(reference, "  dropout: 0.0 "));
  EXPECT_TRUE(Contains(reference, "number in [0, 1)"));
}

TEST(ConfigReference, LinesFitIn100Columns) {
  std::istringstream lines(config_reference_yaml());
  std::string line;
  while (std::getline(lines, line)) EXPECT_LE(line.size(), 100u) << line;
}

TEST(Config, Bf16IsAcceptedOnBothDevices) {
  for (const char* device : {"cpu", "cuda"}) {
    const Config c = load(std::string("runtime: {device: ") + device + ", precision: bf16}\n");
    EXPECT_EQ(c.runtime.precision, GemmPrecision::kBf16);
    EXPECT_STREQ(device_name(c.runtime.device), device);
  }
}

// Every experiment file shipped in configs/ is valid (a broken shipped config would only show
// when a user runs it).
TEST(ShippedConfigs, AllLoadWithoutError) {
  int loaded = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(RF_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(load_config(entry.path().string(), {})) << entry.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 5);
}

}  // namespace
}  // namespace rf
