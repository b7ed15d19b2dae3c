// `reformer export --format hf` and `reformer import --format hf` against the real transformers
// (tests/hf_reference.py, run with launch/python_env.sh's interpreter): a trained model exported
// and loaded by ReformerModelWithLMHead gives this program's logits; a model saved by
// transformers and imported gives transformers' logits here; export then import keeps every
// weight; bad directories are one-line errors that write nothing. Also the safetensors reader.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "data/safetensors.h"
#include "tests/run_fixture.h"
#include "tests/test_corpus.h"
#include "tests/test_python.h"
#include "trainer/checkpoint.h"
#include "trainer/hf_config.h"
#include "trainer/step_context.h"

namespace rf {
namespace {

namespace fs = std::filesystem;
using Logits = std::vector<std::vector<double>>;  // [position][token]

std::string reformer(const std::string& args) {
  return std::string(RF_BINARY_DIR) + "/reformer " + args;
}

// A small model with both attention types; LSH chunks hold a whole hash round (bucket_size =
// seq_len), so its output does not depend on the random rotations (HF draws its own).
std::vector<std::string> small_model(const std::string& attention, const std::string& position) {
  return {"model.vocab_size=37",
          "model.d_model=32",
          "model.d_ff=48",
          "model.n_layers=2",
          "model.n_heads=2",
          "model.d_head=16",
          "model.attention=" + attention,
          "model.position=" + position,
          "model.axial_shape=[8,8]",
          "model.dropout=0.0",
          "model.attention_dropout=0.0",
          "lsh.bucket_size=64",
          "lsh.local_chunk=16",
          "train.seq_len=64",
          "train.batch_size=2"};
}

// Trains a small model for a few steps; returns its run directory.
std::string trained_run(const std::vector<std::string>& model) {
  std::string dir = test::fresh_dir("run");
  const Config base = test::short_run_config(dir, 12, 3, model);
  test::train_quietly(base);
  return dir;
}

std::vector<int32_t> probe_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + 3) % vocab);
  return t;
}

// This program's logits of every position of `tokens` from the newest checkpoint of `run`.
Logits our_logits(const std::string& run, const std::vector<int32_t>& tokens) {
  const std::string path = resolve_checkpoint_path(run);
  const Config cfg = load_config_text(checkpoint_config_text(path), path, {});
  ReformerModel model(cfg, test::cpu());
  load_checkpoint(path, model, nullptr);
  TokenBatch seq;
  seq.batch = 1;
  seq.seq_len = static_cast<int64_t>(tokens.size());
  seq.inputs = tokens;
  seq.targets.assign(tokens.size(), 0);
  StepContext step;
  step.step = kEvalStep;
  step.seq_len = seq.seq_len;
  step.training = false;
  Logits out;
  for (int64_t p = 0; p < seq.seq_len; ++p) {
    const std::vector<float> row = model.next_token_logits(seq, step, p);
    out.emplace_back(row.begin(), row.end());
  }
  return out;
}

Logits hf_logits(const std::string& python, const std::string& dir,
                 const std::vector<int32_t>& tokens) {
  std::string command = python + " " RF_SOURCE_DIR "/tests/hf_reference.py logits " + dir;
  for (int32_t t : tokens) command += " " + std::to_string(t);
  const test::CommandResult r = test::run_command(command);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  Logits out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream values(line);
    out.emplace_back(std::istream_iterator<double>(values), std::istream_iterator<double>());
  }
  return out;
}

// Largest |a - b| over all logits, relative to the largest |b| (at least 1).
double logit_difference(const Logits& a, const Logits& b) {
  double worst = 0, scale = 1;
  for (size_t p = 0; p < b.size(); ++p)
    for (size_t v = 0; v < b[p].size(); ++v) {
      worst = std::max(worst, std::abs(a[p][v] - b[p][v]));
      scale = std::max(scale, std::abs(b[p][v]));
    }
  return worst / scale;
}

void expect_same_logits(const Logits& ours, const Logits& theirs, const std::string& what) {
  ASSERT_EQ(ours.size(), theirs.size()) << what;
  for (size_t p = 0; p < ours.size(); ++p) ASSERT_EQ(ours[p].size(), theirs[p].size()) << what;
  // fp32 here, float64 in transformers: fp32 rounding (measured 2.9e-7 to 3.3e-7).
  EXPECT_LT(logit_difference(ours, theirs), 5e-6) << what;
}

struct ExportCase {
  const char* attention;
  const char* position;
};

// (Named by its settings in test listings, rather than by the bytes of its pointers.)
void PrintTo(const ExportCase& c, std::ostream* out) {
  *out << c.attention << "," << c.position;  // (no space: ctest's cost file splits on them)
}

class HfExport : public ::testing::TestWithParam<ExportCase> {};

TEST_P(HfExport, TransformersLoadsItWithEveryWeightAndGivesTheSameLogits) {
  RF_TEST_PYTHON_OR_SKIP(python);
  const std::string run = trained_run(small_model(GetParam().attention, GetParam().position));
  const std::string out = test::fresh_dir("hf") + "/model";
  const test::CommandResult r =
      test::run_command(reformer("export --checkpoint " + run + " --format hf --output " + out));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::vector<int32_t> tokens = probe_tokens(64, 37);
  const Logits theirs = hf_logits(python, out, tokens);
  expect_same_logits(our_logits(run, tokens), theirs, GetParam().attention);
}

INSTANTIATE_TEST_SUITE_P(Models, HfExport,
                         ::testing::Values(ExportCase{"[local,lsh]", "axial"},
                                           ExportCase{"[dense]", "learned"}),
                         [](const auto& info) { return std::to_string(info.index); });

TEST(HfImport, AModelSavedByTransformersGivesItsLogitsHere) {
  RF_TEST_PYTHON_OR_SKIP(python);
  const std::string dir = test::fresh_dir("import");
  const std::string hf = dir + "/hf", run = dir + "/run";
  // save_pretrained writes only what differs from ReformerConfig's defaults: the import must
  // supply those (here num_buckets is left to HF's own choice).
  const std::string config =
      R"({"attn_layers": ["lsh", "local", "lsh"], "vocab_size": 29, "hidden_size": 24,
          "num_attention_heads": 3, "attention_head_size": 8, "feed_forward_size": 40,
          "hidden_act": "gelu_new", "layer_norm_eps": 1e-6, "is_decoder": true,
          "axial_pos_shape": [4, 8], "axial_pos_embds_dim": [8, 16],
          "max_position_embeddings": 32, "lsh_attn_chunk_length": 32, "num_hashes": 2,
          "local_attn_chunk_length": 8})";
  test::CommandResult r = test::run_command(
      python + " " RF_SOURCE_DIR "/tests/hf_reference.py make " + hf + " 5 '" + config + "'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = test::run_command(reformer("import --format hf --input " + hf + " --output " + run));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::vector<int32_t> tokens = probe_tokens(32, 29);
  expect_same_logits(our_logits(run, tokens), hf_logits(python, hf, tokens), "imported");
  // The imported run directory is what `reformer eval` and `reformer train` take.
  r = test::run_command(
      reformer("eval --checkpoint " + run + " --json --set train.eval_batches=1"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = test::run_command(reformer("train --config " + run + "/config.yaml --resume auto " +
                                 "--set train.steps=2 --set train.log_every=1 " +
                                 "--set train.eval_every=0 --set train.batch_size=2"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step-00000002.h5")) << r.out;
}

TEST(HfRoundTrip, ExportThenImportKeepsEveryWeightBitForBit) {
  const std::string run = trained_run(small_model("[lsh,local]", "axial"));
  const std::string dir = test::fresh_dir("round_trip");
  test::CommandResult r = test::run_command(
      reformer("export --checkpoint " + run + " --format hf --output " + dir + "/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  r = test::run_command(
      reformer("import --format hf --input " + dir + "/hf --output " + dir + "/back"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::vector<float> before = test::checkpoint_params(resolve_checkpoint_path(run));
  const std::vector<float> after = test::checkpoint_params(resolve_checkpoint_path(dir + "/back"));
  ASSERT_EQ(before.size(), after.size());
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0);
}

TEST(HfExport, TheSentencePieceModelTravelsAsSpieceModelBothWays) {
  RF_TEST_PYTHON_OR_SKIP(python);
  RF_TINY_SHAKESPEARE_OR_SKIP(corpus);
  const std::string dir = test::fresh_dir("spiece");
  std::ifstream shakespeare(corpus);
  std::string text(120000, '\0');
  shakespeare.read(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_EQ(shakespeare.gcount(), 120000) << "Tiny Shakespeare is missing";
  std::ofstream(dir + "/text.txt") << text;
  test::CommandResult r =
      test::run_command(reformer("prepare --input " + dir + "/text.txt --output " + dir +
                                 "/shards --tokenizer sentencepiece " + "--vocab-size 400"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> model = small_model("[local,lsh]", "axial");
  model.push_back("model.vocab_size=400");
  model.push_back("data.format=hdf5");
  model.push_back("data.train=" + dir + "/shards/manifest.yaml");
  const std::string run = test::fresh_dir("run");
  test::train_quietly(test::short_run_config(run, 3, 1, model));
  r = test::run_command(
      reformer("export --checkpoint " + run + " --format hf --output " + dir + "/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // transformers' ReformerTokenizer encodes a text as this program does.
  const std::string sample = dir + "/sample.txt";
  std::ofstream(sample) << text.substr(1000, 3000) << "\tcaf\xC3\xA9  x\n";
  r = test::run_command(python + " " RF_SOURCE_DIR "/tests/hf_reference.py tokenize " + dir +
                        "/hf " + sample);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::ifstream sample_in(sample);
  const std::string sample_text((std::istreambuf_iterator<char>(sample_in)),
                                std::istreambuf_iterator<char>());
  std::string ours;
  for (uint32_t id : checkpoint_tokenizer(resolve_checkpoint_path(run)).encode(sample_text))
    ours += (ours.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(r.out, ours + "\n");
  // Importing the directory brings the model back into the checkpoint.
  r = test::run_command(
      reformer("import --format hf --input " + dir + "/hf --output " + dir + "/back"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(checkpoint_tokenizer(resolve_checkpoint_path(dir + "/back")).serialized_model(),
            checkpoint_tokenizer(resolve_checkpoint_path(run)).serialized_model());
}

// --- bad input: one line naming the problem, a non-zero exit, nothing written ------------------

struct BrokenDirectory {
  std::string hf, out;
};

// A copy of a good export, to be broken by the caller.
BrokenDirectory broken_copy(const std::string& good, const std::string& name) {
  const std::string dir = test::fresh_dir(name);
  fs::copy(good, dir + "/hf");
  return {dir + "/hf", dir + "/out"};
}

void expect_import_fails(const BrokenDirectory& d, const std::string& expected) {
  const test::CommandResult r =
      test::run_command(reformer("import --format hf --input " + d.hf + " --output " + d.out));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_FALSE(fs::exists(d.out)) << "an import that failed wrote " << d.out;
  for (const auto& entry : fs::directory_iterator(fs::path(d.out).parent_path()))
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos);
}

void edit_config(const std::string& hf, const std::string& from, const std::string& to) {
  std::ifstream in(hf + "/config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  std::ofstream(hf + "/config.json", std::ios::trunc) << text;
}

void rewrite_weights(const std::string& hf,
                     const std::function<void(std::vector<NamedTensor>&)>& change) {
  const std::map<std::string, NamedTensor> read = read_safetensors(hf + "/model.safetensors");
  std::vector<NamedTensor> tensors;
  tensors.reserve(read.size());
  for (const auto& [name, t] : read) tensors.push_back(t);
  change(tensors);
  write_safetensors(hf + "/model.safetensors", tensors, {{"format", "pt"}});
}

TEST(HfImport, BadDirectoriesAreOneLineErrorsAndWriteNothing) {
  const std::string run = trained_run(small_model("[local,lsh]", "axial"));
  const std::string good = test::fresh_dir("good") + "/hf";
  const test::CommandResult r =
      test::run_command(reformer("export --checkpoint " + run + " --format hf --output " + good));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string ff = "reformer.encoder.layers.1.feed_forward.dense.dense.weight";

  BrokenDirectory d = broken_copy(good, "missing_tensor");
  rewrite_weights(d.hf, [&](auto& t) {
    t.erase(std::find_if(t.begin(), t.end(), [&](const NamedTensor& x) { return x.name == ff; }));
  });
  expect_import_fails(d, "tensor '" + ff + "' is missing");

  d = broken_copy(good, "wrong_shape");
  rewrite_weights(d.hf, [&](auto& t) {
    for (NamedTensor& x : t)
      if (x.name == ff) x.shape = {x.shape[1], x.shape[0]};
  });
  expect_import_fails(d, "tensor '" + ff + "' has shape [32, 48]");

  d = broken_copy(good, "unexpected_tensor");
  rewrite_weights(d.hf, [&](auto& t) { t.push_back({"extra.weight", {2}, {1, 2}}); });
  expect_import_fails(d, "tensor 'extra.weight' has no place");

  d = broken_copy(good, "wrong_dtype");
  {  // the same header with an integer dtype for one tensor
    std::fstream f(d.hf + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t at = bytes.find("\"F32\"");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 5, "\"I32\"");
    f.seekp(0);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  expect_import_fails(d, "has dtype I32");

  d = broken_copy(good, "truncated_header");
  fs::resize_file(d.hf + "/model.safetensors", 40);
  expect_import_fails(d, "header in a 40-byte file");

  d = broken_copy(good, "not_decoder");
  edit_config(d.hf, "\"is_decoder\": true", "\"is_decoder\": false");
  expect_import_fails(d, "is_decoder is false");

  d = broken_copy(good, "erf_gelu");
  edit_config(d.hf, "\"gelu_new\"", "\"gelu\"");
  expect_import_fails(d, "hidden_act is 'gelu'");

  d = broken_copy(good, "dropout");  // said of config.json, not as a --set the user never typed
  edit_config(d.hf, "\"hidden_dropout_prob\": 0.0", "\"hidden_dropout_prob\": 2.0");
  expect_import_fails(d, "config.json gives model.dropout=2.000000: model.dropout = 2");

  d = broken_copy(good, "eps");
  edit_config(d.hf, "1e-06", "1e-12");
  expect_import_fails(d, "layer_norm_eps is 1e-12");

  d = broken_copy(good, "nan_weight");  // imported before, to train on as "non-finite gradient"
  rewrite_weights(d.hf, [&](auto& t) {
    for (NamedTensor& x : t)
      if (x.name == ff) x.values[5] = std::numeric_limits<float>::quiet_NaN();
  });
  expect_import_fails(d, "tensor '" + ff + "' has a non-finite value (nan) at element 5");

  d = broken_copy(good, "overlap");
  {  // one tensor's offsets moved 8 bytes back (the same digits): it overlaps the one before it
    std::fstream f(d.hf + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::regex offsets("\"data_offsets\":\\[(\\d+),(\\d+)\\]");
    bool moved = false;
    for (std::sregex_iterator it(bytes.begin(), bytes.end(), offsets), end; it != end && !moved;
         ++it) {
      const std::string b = (*it)[1], e = (*it)[2];
      const std::string b2 = std::to_string(std::stoull(b) - 8),
                        e2 = std::to_string(std::stoull(e) - 8);
      if (std::stoull(b) < 1000 || b2.size() != b.size() || e2.size() != e.size()) continue;
      std::string moved_offsets = "\"data_offsets\":[";
      moved_offsets += b2;
      moved_offsets += ",";
      moved_offsets += e2;
      moved_offsets += "]";
      bytes.replace(static_cast<size_t>(it->position(0)), static_cast<size_t>(it->length(0)),
                    moved_offsets);
      moved = true;
    }
    ASSERT_TRUE(moved);
    f.seekp(0);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  expect_import_fails(d, "which overlap the tensor before it");

  d = broken_copy(good, "no_config");
  fs::remove(d.hf + "/config.json");
  expect_import_fails(d, "has no config.json");

  // Without hidden_size, Hugging Face's default (256) meets config.json's axial dims. Imported
  // with --config, the error named the --config file, which has neither value.
  d = broken_copy(good, "no_hidden_size");
  {
    std::ifstream in(d.hf + "/config.json");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string without =
        std::regex_replace(text, std::regex("\"hidden_size\": *\\d+, *"), "");
    ASSERT_NE(without, text);
    std::ofstream(d.hf + "/config.json", std::ios::trunc) << without;
  }
  const test::CommandResult with_config =
      test::run_command(reformer("import --format hf --input " + d.hf + " --output " + d.out +
                                 " --config " + run + "/config.yaml"));
  EXPECT_NE(with_config.exit_code, 0);
  EXPECT_EQ(
      with_config.out.rfind(
          "error: the model of " + d.hf + "/config.json does not fit: model.axial_dims = ", 0),
      0u)
      << with_config.out;
  EXPECT_FALSE(fs::exists(d.out));
  // A mistake on a line of the user's own --config file is that file's, not config.json's.
  const std::string typo = d.hf + "/../typo.yaml";
  std::ofstream(typo) << "train:\n  steps: 10\nmodel:\n  d_modle: 64\n";
  const test::CommandResult typo_import = test::run_command(
      reformer("import --format hf --input " + good + " --output " + d.out + " --config " + typo));
  EXPECT_EQ(typo_import.out.rfind("error: " + typo + ":4: unknown key 'model.d_modle'", 0), 0u)
      << typo_import.out;
  EXPECT_FALSE(fs::exists(d.out));
}

// "out/" names the directory out (it was staged inside out/, and the rename onto it failed);
// an output that names no new directory is one line.
TEST(HfExport, AnOutputWithATrailingSlashIsThatDirectory) {
  const std::string run = trained_run(small_model("[local,lsh]", "axial"));
  const std::string dir = test::fresh_dir("slash");
  const test::CommandResult r = test::run_command(
      reformer("export --checkpoint " + run + " --format hf --output " + dir + "/hf/"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::exists(dir + "/hf/model.safetensors"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  for (const char* bad : {"''", "."}) {
    const test::CommandResult e =
        test::run_command(reformer("export --checkpoint " + run + " --format hf --output " + bad));
    EXPECT_NE(e.exit_code, 0) << e.out;
    EXPECT_NE(e.out.find("does not name a new directory"), std::string::npos) << e.out;
  }
}

// --set may change how an imported model trains, not the function its weights compute: another
// activation, attention kind, chunk, bucket length, hash count or bucket count (each imported
// without a word before, except the activation), position encoding or residual streams (each
// refused by the weights' reading or an internal check, blaming config.json).
TEST(HfImport, SettingsThatChangeTheModelsFunctionAreRefused) {
  const std::string run = trained_run(small_model("[local,lsh]", "axial"));
  const std::string dir = test::fresh_dir("activation");
  ASSERT_EQ(test::run_command(
                reformer("export --checkpoint " + run + " --format hf --output " + dir + "/hf"))
                .exit_code,
            0);
  const test::CommandResult r =
      test::run_command(reformer("import --format hf --input " + dir + "/hf --output " + dir +
                                 "/out --set model.activation=relu"));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("config.json makes model.activation gelu; relu would compute another "
                       "function of its weights"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/out"));
  for (const auto& [set, said] : std::vector<std::pair<std::string, std::string>>{
           {"model.attention=[dense,lsh]", "model.attention [local, lsh]; [dense, lsh] would"},
           {"lsh.local_chunk=4", "lsh.local_chunk "},
           {"lsh.bucket_size=4", "lsh.bucket_size "},
           {"lsh.n_hashes=3", "lsh.n_hashes "},
           {"lsh.n_buckets=4", "lsh.n_buckets (as hashed) "},
           // (Each failed elsewhere, blaming config.json or its weights: a tensor without a
           // Hugging Face name, one config.json's model "needs".)
           {"model.position=relative", "model.position axial; relative would"},
           {"model.position=learned", "model.position axial; learned would"},
           {"model.position=none", "model.position axial; none would"},
           {"model.residual=single --set model.reversible=false",
            "model.residual two_streams; single would"},
           {"model.axial_shape=[4,16]", "model.axial_shape [8, 8]; [4, 16] would"},
           {"model.axial_dims=[8,24]", "model.axial_dims [16, 16]; [8, 24] would"}}) {
    const test::CommandResult changed = test::run_command(reformer(
        "import --format hf --input " + dir + "/hf --output " + dir + "/out --set " + set));
    EXPECT_NE(changed.exit_code, 0) << set << ": " << changed.out;
    EXPECT_NE(changed.out.find(said), std::string::npos) << set << ": " << changed.out;
    EXPECT_FALSE(fs::exists(dir + "/out"));
  }
  // The run directory is --output: a train.out_dir elsewhere left the fine-tune command it prints
  // training from random weights.
  const test::CommandResult moved =
      test::run_command(reformer("import --format hf --input " + dir + "/hf --output " + dir +
                                 "/out " + "--set train.out_dir=" + dir + "/ft"));
  EXPECT_NE(moved.exit_code, 0) << moved.out;
  EXPECT_NE(moved.out.find("--set train.out_dir=" + dir + "/ft is not --output '" + dir + "/out'"),
            std::string::npos)
      << moved.out;
  EXPECT_FALSE(fs::exists(dir + "/out"));
  // The user's own --set mistake is said as it is, not as config.json's.
  const test::CommandResult typo = test::run_command(
      reformer("import --format hf --input " + dir + "/hf --output " + dir + "/out --set foo"));
  EXPECT_EQ(typo.out.rfind("error: malformed override 'foo'", 0), 0u) << typo.out;
  EXPECT_EQ(test::run_command(reformer("import --format hf --input " + dir + "/hf --output " + dir +
                                       "/out --set model.dropout=0.1"))
                .exit_code,
            0);  // a setting of training goes
}

TEST(HfExport, WhatHuggingFaceCannotRepresentIsAnErrorAndNothingIsOverwritten) {
  const std::string dir = test::fresh_dir("unrepresentable");
  const std::string run = trained_run(small_model("[lsh]", "none"));
  test::CommandResult r = test::run_command(
      reformer("export --checkpoint " + run + " --format hf --output " + dir + "/a"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("model.position: none has no Hugging Face equivalent"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir + "/a"));

  const std::string mixed = trained_run(small_model("[dense,local]", "axial"));
  r = test::run_command(
      reformer("export --checkpoint " + mixed + " --format hf --output " + dir + "/b"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("mixes dense and local layers"), std::string::npos) << r.out;

  const std::string good = trained_run(small_model("[lsh]", "axial"));
  fs::create_directories(dir + "/c");
  std::ofstream(dir + "/c/keep.txt") << "mine";
  r = test::run_command(
      reformer("export --checkpoint " + good + " --format hf --output " + dir + "/c"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("exists and is not an empty directory"), std::string::npos) << r.out;
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/c"), fs::directory_iterator()), 1);
}

// --- the safetensors format ----------------------------------------------------------------------

TEST(Safetensors, ReadsWhatItWritesAndConvertsHalfAndDoublePrecision) {
  const std::string dir = test::fresh_dir("st");
  write_safetensors(dir + "/a.safetensors",
                    {{"x", {2, 3}, {1, -2, 3.5f, 0, 1e-3f, -7}}, {"b", {1}, {9}}},
                    {{"format", "pt"}});
  const auto back = read_safetensors(dir + "/a.safetensors");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back.at("x").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(back.at("x").values, (std::vector<float>{1, -2, 3.5f, 0, 1e-3f, -7}));
  // F16 1.5 = 0x3E00, -2 = 0xC000, 2^-24 = 0x0001 (subnormal); BF16 -1.5 = 0xBFC0; F64 0.1.
  const std::string header = R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
                             R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},)"
                             R"("d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(header.size() >> (8 * i));
  file += header;
  const unsigned char data[8] = {0x00, 0x3E, 0x00, 0xC0, 0x01, 0x00, 0xC0, 0xBF};
  file.append(reinterpret_cast<const char*>(data), 8);
  const double tenth = 0.1;
  file.append(reinterpret_cast<const char*>(&tenth), 8);
  std::ofstream(dir + "/b.safetensors", std::ios::binary) << file;
  const auto converted = read_safetensors(dir + "/b.safetensors");
  EXPECT_EQ(converted.at("h").values, (std::vector<float>{1.5f, -2.0f, std::ldexp(1.0f, -24)}));
  EXPECT_EQ(converted.at("b").values, (std::vector<float>{-1.5f}));
  EXPECT_EQ(converted.at("d").values, (std::vector<float>{0.1f}));
}

TEST(Safetensors, OffsetsOutsideTheDataAreAnError) {
  const std::string dir = test::fresh_dir("st_bad");
  const std::string header = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string file(8, '\0');
  file[0] = static_cast<char>(header.size());
  file += header + std::string(8, '\0');  // 8 of the 16 bytes
  std::ofstream(dir + "/t.safetensors", std::ios::binary) << file;
  try {
    read_safetensors(dir + "/t.safetensors");
    FAIL() << "a truncated tensor was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the file's 8 data bytes"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, AHeaderNumberBeyondDoubleIsAnError) {  // found by fuzz/run.sh
  const std::string dir = test::fresh_dir("st_overflow");
  const std::string header = R"({"x":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  file[0] = static_cast<char>(header.size());
  file += header + std::string(4, '\0');
  std::ofstream(dir + "/t.safetensors", std::ios::binary) << file;
  try {
    read_safetensors(dir + "/t.safetensors");
    FAIL() << "a header with 1e999 was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has a header that is not JSON"), std::string::npos)
        << e.what();
  }
}

// What fuzzing config.json found (fuzz/regressions/hf_config/): each is now a one-line error or,
// for a file without model_type, a mapping.
TEST(HfConfig, ValuesFuzzingFoundAreErrorsOrMappedNotUndefinedBehaviour) {
  const auto error_of = [](const std::string& json) {
    std::ostringstream notes;
    try {
      overrides_from_hf_config(json, "config.json", notes);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string base =
      R"({"is_decoder": true, "hidden_act": "gelu_new", "layer_norm_eps": 1e-06, )";
  // No model_type (it has no default): read as absent, not through a missing key.
  std::ostringstream notes;
  EXPECT_FALSE(overrides_from_hf_config(base + R"("attn_layers": ["local"]})", "config.json", notes)
                   .empty());
  EXPECT_NE(error_of(base + R"("hidden_size": 1e999})").find("'config.json' is not JSON"),
            std::string::npos);
  EXPECT_NE(
      error_of(base + R"("attn_layers": ["local"], "axial_pos_shape": [4611686018427387904, 4]})")
          .find("axial_pos_shape is [4611686018427387904,4], expected 2 positive integers up "
                "to 16777216"),
      std::string::npos);
  EXPECT_NE(error_of(base + R"("attn_layers": ["lsh"], "axial_pos_embds": false, )" +
                     R"("max_position_embeddings": 9223372036854775807})")
                .find("max_position_embeddings is 9223372036854775807, expected a positive "
                      "integer up to 1073741824"),
            std::string::npos);
}

}  // namespace
}  // namespace rf
