// Tests of the `reformer` command itself: every kind of bad input gives one clear line on stderr
// and a non-zero exit, and train -> eval -> generate works end to end from the command line.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "base/error.h"
#include "data/hdf5_io.h"
#include "kernels/executor.h"
#include "tests/run_fixture.h"
#include "tests/test_corpus.h"

namespace rf {
namespace {

using Result = test::CommandResult;

// The reformer binary with `args`.
Result run(const std::string& args) {
  return test::run_command(std::string(RF_BINARY_DIR) + "/reformer " + args);
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kTinyYaml = R"(model:
  vocab_size: 16
  d_model: 16
  d_ff: 32
  n_layers: 2
  n_heads: 2
  d_head: 8
  attention: [lsh, local]
  position: learned
lsh:
  bucket_size: 8
  local_chunk: 8
train:
  seq_len: 32
  batch_size: 2
  steps: 5
  log_every: 1
  eval_every: 5
  eval_batches: 2
  checkpoint_every: 0
)";

void expect_one_line_error(const Result& r, const std::vector<std::string>& parts) {
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "not one line:\n" << r.out;
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  for (const std::string& p : parts)
    EXPECT_NE(r.out.find(p), std::string::npos) << p << " not in: " << r.out;
}

TEST(CommandLine, UnknownKeyNamesKeyFileLineAndSuggestion) {
  const std::string dir = test::fresh_dir("cfg");
  const std::string path = write_file(dir, "bad.yaml", "model:\n  d_model: 64\n  d_modle: 32\n");
  expect_one_line_error(run("train --config " + path), {"bad.yaml:3", "unknown key 'model.d_modle'",
                                                        "did you mean 'model.d_model'"});
}

TEST(CommandLine, MissingConfigFile) {
  expect_one_line_error(run("train --config /nonexistent/x.yaml"),
                        {"/nonexistent/x.yaml", "No such file"});
}

TEST(CommandLine, BrokenYaml) {
  const std::string dir = test::fresh_dir("cfg");
  const std::string path = write_file(dir, "broken.yaml", "model:\n  d_model: [1, 2\n");
  expect_one_line_error(run("train --config " + path), {"broken.yaml:", "invalid YAML"});
  // Control characters in what a message quotes are escaped: the line stays one line.
  const std::string binary = write_file(dir, "binary.yaml", std::string("\x11\x02model", 7));
  expect_one_line_error(run("train --config " + binary), {"binary.yaml", "\\x11\\x02model"});
  const std::string tiny = write_file(dir, "tiny.yaml", kTinyYaml);
  expect_one_line_error(
      run("train --config " + tiny + " --set \"$(printf 'model.d_model=32\\n---\\nx')\""),
      {"--set model.d_model=32\\n---\\nx: the value holds 2 YAML documents"});
}

TEST(CommandLine, WrongTypeAndRangeInOverrides) {
  const std::string dir = test::fresh_dir("cfg");
  const std::string path = write_file(dir, "tiny.yaml", kTinyYaml);
  expect_one_line_error(run("train --config " + path + " --set model.d_model=abc"),
                        {"--set model.d_model=abc", "integer"});
  expect_one_line_error(run("train --config " + path + " --set model.dropout=1.5"),
                        {"model.dropout", "out of range"});
  expect_one_line_error(run("train --config " + path + " --set train.seq_len=36"),
                        {"train.seq_len", "lsh.bucket_size"});
}

TEST(CommandLine, MissingDataFileNamesTheKey) {
  const std::string dir = test::fresh_dir("cfg");
  const std::string path = write_file(dir, "tiny.yaml", kTinyYaml);
  expect_one_line_error(run("train --config " + path + " --set data.format=text --set " +
                            "model.vocab_size=256 --set data.train=/nonexistent/text.txt " +
                            "--set train.out_dir=" + dir + "/run"),
                        {"data.train", "/nonexistent/text.txt"});
  // A directory ("basic_filebuf::underflow error") and a device that never ends (read whole
  // into memory until it ran out).
  const std::vector<std::pair<std::string, std::string>> not_files = {
      {dir, "is a directory"}, {"/dev/zero", "is not a regular file"}};
  const std::string train_on = "train --config " + path + " --set train.out_dir=" + dir +
                               "/run --set data.format=text --set model.vocab_size=256 " +
                               "--set data.train=";
  for (const auto& [file, what] : not_files) {
    const std::string quoted = "'" + file + "' ";
    expect_one_line_error(run(train_on + file), {"data.train", quoted + what});
  }
}

TEST(CommandLine, BadCheckpointArguments) {
  const std::string dir = test::fresh_dir("cfg");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  expect_one_line_error(run("eval --config " + cfg + " --checkpoint /nonexistent/ckpt.h5"),
                        {"/nonexistent/ckpt.h5"});
  const std::string junk = write_file(dir, "junk.h5", "this is not HDF5");
  expect_one_line_error(run("eval --config " + cfg + " --checkpoint " + junk),
                        {"junk.h5", "not an HDF5 file"});
}

// Command-line mistakes are one `error:` line too (CLI11 alone prints two), and integer bounds
// read as integers (CLI11's PositiveNumber prints a 309-digit double).
TEST(CommandLine, UsageErrorsAreOneLineAndExitNonZero) {
  // A command line that does not parse exits 2 (CLI11's own codes ran from 105 to 114); an error
  // of the command itself exits 1.
  for (const char* usage : {"", "train", "train --config x.yaml --stop-at-step 1.5",
                            "eval --checkpoint x --bogus", "generate --checkpoint x --top-k -1"})
    EXPECT_EQ(run(usage).exit_code, 2) << usage;
  EXPECT_EQ(run("train --config /nonexistent.yaml").exit_code, 1);
  const std::string commands = "the commands are train eval generate prepare export import";
  expect_one_line_error(run(""), {"no command given", commands});
  expect_one_line_error(run("frobnicate --config x.yaml"),
                        {"unknown command 'frobnicate'", commands});
  expect_one_line_error(run("train"), {"--config is required"});
  expect_one_line_error(run("train --config x.yaml --stop-at-step 1.5"),
                        {"--stop-at-step: must be an integer >= 0, not '1.5'"});
  expect_one_line_error(run("eval --checkpoint x --memory-len 32 --segment 0"),
                        {"--segment: must be an integer >= 1, not '0'"});
  expect_one_line_error(run("generate --checkpoint x --top-k -1"),
                        {"--top-k: must be an integer >= 0, not '-1'"});
  // NaN passed CLI11's Range; seeds past int64 were clamped, -1 wrapped.
  expect_one_line_error(run("generate --checkpoint x --temperature nan"),
                        {"--temperature: must be a number in [0, 100], not 'nan'"});
  expect_one_line_error(run("generate --checkpoint x --seed 99999999999999999999999"),
                        {"--seed: must be an integer >= 0, not '99999999999999999999999'"});
  expect_one_line_error(
      run("prepare --synthetic duplication --sequences 2 --seq-len 8 --vocab-size 8 --output x "
          "--seed -1"),
      {"--seed: must be an integer in [0, 4611686018427387904], not '-1'"});
  expect_one_line_error(run("prepare --input x.txt --output y --tokenizer bytes "
                            "--tokenizer-model m.model"),
                        {"--tokenizer bytes and --tokenizer-model contradict each other"});
  expect_one_line_error(run("prepare --input x.txt --output y --model-type bpe"),
                        {"--model-type is the kind of model", "byte tokens have none"});
  expect_one_line_error(
      run("prepare --input x.txt --output y --tokenizer-model m.model --model-type bpe"),
      {"--tokenizer-model's file has its own"});
  expect_one_line_error(run("generate --checkpoint x --top-p 0"),
                        {"--top-p: must be a number in (0, 1], not '0'"});
  expect_one_line_error(run("generate --checkpoint x --top-p 1.5"),
                        {"--top-p: must be a number in (0, 1], not '1.5'"});
  expect_one_line_error(run("generate --checkpoint x --top-p 0.9x"),
                        {"--top-p: must be a number in (0, 1], not '0.9x'"});
  expect_one_line_error(run("generate --checkpoint x --context 9"), {"not expected", "--context"});
  expect_one_line_error(run("generate --checkpoint x --lsh-cache --no-cache"),
                        {"--lsh-cache", "--no-cache"});
  expect_one_line_error(run("config --set model.d_model=abc"),
                        {"--set model.d_model=abc needs --config"});
  // An empty file name was the option not given: config printed the reference, eval used the
  // checkpoint's own config, prepare wrote byte shards, import took the defaults.
  for (const auto& [command, option] : std::vector<std::pair<std::string, std::string>>{
           {"config --config ''", "--config"},
           {"eval --checkpoint x --config ''", "--config"},
           {"prepare --input x --output y --tokenizer-model ''", "--tokenizer-model"},
           {"import --format hf --input x --output y --config ''", "--config"}}) {
    const Result empty = run(command);
    EXPECT_EQ(empty.exit_code, 2) << command;
    EXPECT_EQ(empty.out, "error: " + option + ": must name a file (--help lists the options)\n")
        << command;
  }
  expect_one_line_error(run("generate --checkpoint x --tokens abc"),
                        {"--tokens: must be an integer in [1, 1048576], not 'abc'"});
}

// A file named with data.format synthetic was ignored without a word; it is refused where data
// is read (train, eval), while such a config still loads (a checkpoint trained with it generates).
TEST(CommandLine, AFileNamedForTheSyntheticTaskIsRefusedWhereDataIsRead) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);  // (the duplication task)
  expect_one_line_error(
      run("train --config " + cfg + " --set data.train=input.txt --set train.out_dir=" + dir),
      {"data.train = 'input.txt' names a file, but data.format = synthetic generates its windows "
       "and reads none: set data.format (text, bytes or hdf5) to read it, or data.train= (empty)"});
  EXPECT_EQ(run("config --config " + cfg + " --set data.val=v.txt").exit_code, 0);
}

// In stream order the lanes are the global batch's: resumed with another, the rest of the epoch
// reads other stretches, which is said (it was not).
TEST(CommandLine, ResumingWithAnotherGlobalBatchSaysWhatItCosts) {
  RF_TINY_SHAKESPEARE_OR_SKIP(shakespeare);
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  const std::string train = concat("train --config ", cfg, " --set train.out_dir=", dir,
                                   "/out --set data.format=text --set data.train=", shakespeare,
                                   " --set model.vocab_size=256 --set data.order=streams",
                                   " --no-report --resume auto --stop-at-step ");
  ASSERT_EQ(run(train + "2").exit_code, 0);
  const Result same = run(train + "3");
  ASSERT_EQ(same.exit_code, 0) << same.out;
  EXPECT_EQ(same.out.find("streams (its global batch)"), std::string::npos) << same.out;
  const Result other = run(train + "4 --set train.batch_size=4");
  ASSERT_EQ(other.exit_code, 0) << other.out;
  EXPECT_NE(other.out.find("step-00000003.h5 read the data in 2 streams (its global batch), this "
                           "run in 4: until the epoch ends some windows are read twice"),
            std::string::npos)
      << other.out;
  // Shuffled, the steps' size changes (resumed on more ranks, say): said too.
  const std::string shuffled = concat("train --config ", cfg, " --set train.out_dir=", dir,
                                      "/shuffled --no-report --resume auto --stop-at-step ");
  ASSERT_EQ(run(shuffled + "2").exit_code, 0);
  const Result larger = run(shuffled + "3 --set train.grad_accum=2");
  ASSERT_EQ(larger.exit_code, 0) << larger.out;
  EXPECT_NE(larger.out.find("step-00000002.h5 was trained on 2 windows per step, this run takes 4 "
                            "(batch_size x grad_accum x ranks)"),
            std::string::npos)
      << larger.out;
  EXPECT_EQ(larger.out.find("streams"), std::string::npos) << larger.out;
}

// Under mpirun or srun every rank ran eval, generate, export, import or prepare whole: N copies
// of a result, or N-1 failures after one rank's output. They refuse, said once (by rank 0).
TEST(CommandLine, CommandsOtherThanTrainRefuseToRunAsRanksOfAJob) {
  const std::string dir = test::fresh_dir("ranks");
  const std::string input = write_file(dir, "input.txt", std::string(4000, 'a'));
  const std::string prepare = "prepare --input " + input + " --output " + dir + "/shards";
  const std::string as_rank = concat("env OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=");
  const Result first =
      test::run_command(concat(as_rank, "0 ", RF_BINARY_DIR, "/reformer ", prepare));
  EXPECT_EQ(first.exit_code, 1) << first.out;
  EXPECT_EQ(first.out,
            "error: rank 0: reformer prepare runs as one process, but was started as one of 2 "
            "ranks (OMPI_COMM_WORLD_SIZE=2); run it without mpirun or srun: only train runs as a "
            "job of ranks\n");
  const Result second =
      test::run_command(concat(as_rank, "1 ", RF_BINARY_DIR, "/reformer ", prepare));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_EQ(second.out, "");
  EXPECT_FALSE(std::filesystem::exists(dir + "/shards"));
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  EXPECT_EQ(
      test::run_command(concat(as_rank, "1 ", RF_BINARY_DIR, "/reformer config --config ", cfg))
          .exit_code,
      0);
  // prepare's options of the generated task, given with --input files, were ignored.
  for (const std::string option : {"--sequences", "--seed"}) {
    const Result r = run(prepare + " " + option + " 5");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("error: prepare: " + option + " is for"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("is for --synthetic"), std::string::npos) << r.out;
  }
  EXPECT_EQ(run(prepare).exit_code, 0);
}

// Relative-position settings on a model without relative positions did nothing, without a word.
TEST(CommandLine, SettingsThatDoNothingForThisModelAreNoted) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);  // (learned positions)
  const std::string train = "train --config " + cfg + " --no-report --stop-at-step 0 --set ";
  const Result noted = run(train + "train.out_dir=" + dir +
                           "/a --set model.clamp_len=5 --set model.same_length=true");
  ASSERT_EQ(noted.exit_code, 0) << noted.out;
  EXPECT_NE(noted.out.find("note: model.clamp_len (5) has no effect: it caps relative positions, "
                           "and this model's are learned\n"),
            std::string::npos)
      << noted.out;
  EXPECT_NE(noted.out.find("note: model.same_length has no effect"), std::string::npos)
      << noted.out;
  // data.val_fraction where no tail is cut (the synthetic task here).
  const Result fraction = run(train + "train.out_dir=" + dir + "/c --set data.val_fraction=0.2");
  ASSERT_EQ(fraction.exit_code, 0) << fraction.out;
  EXPECT_NE(fraction.out.find("note: data.val_fraction (0.2) has no effect: the synthetic task "
                              "draws its own validation windows\n"),
            std::string::npos)
      << fraction.out;
  const Result relative = run(train + "train.out_dir=" + dir +
                              "/b --set model.position=relative --set model.clamp_len=5 --set "
                              "model.same_length=true");
  ASSERT_EQ(relative.exit_code, 0) << relative.out;
  EXPECT_EQ(relative.out.find("has no effect"), std::string::npos) << relative.out;
  // Kinds past the layers, LSH's view of a memory there is none of, axial tables of a model
  // without axial positions: each was ignored without a word.
  const Result parts = run(train + "train.out_dir=" + dir +
                           "/d --set model.n_layers=1 --set model.attention=[lsh,dense] " +
                           "--set lsh.sees_memory=true --set model.axial_shape=[4,8]");
  ASSERT_EQ(parts.exit_code, 0) << parts.out;
  for (const char* note :
       {"note: model.attention lists 2 kinds, and model.n_layers = 1 takes the first 1\n",
        "note: lsh.sees_memory has no effect: model.memory_len is 0 (no memory)\n",
        "note: model.axial_shape and model.axial_dims have no effect: this model's positions are "
        "learned\n"})
    EXPECT_NE(parts.out.find(note), std::string::npos) << note << " in " << parts.out;
}

// A checkpoint records the arithmetic it was trained with (Executor::arithmetic); a run resumed
// where it differs (another OpenBLAS kernel here: OPENBLAS_CORETYPE) says its bits will not be
// those of the uninterrupted run. Resumed where it is the same, it says nothing.
// (With runtime.step_graphs on a CPU the executor is wrapped in a LaunchRecorder, which recorded
// nothing until it passed the arithmetic on.)
class ResumingWhereTheArithmeticDiffers : public ::testing::TestWithParam<const char*> {};

TEST_P(ResumingWhereTheArithmeticDiffers, SaysSo) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  const std::string train = concat("train --config ", cfg, " --set train.out_dir=", dir,
                                   "/out --set runtime.step_graphs=", GetParam(),
                                   " --no-report --resume auto --stop-at-step ");
  ASSERT_EQ(run(train + "2").exit_code, 0);
  const Result same = run(train + "3");
  ASSERT_EQ(same.exit_code, 0) << same.out;
  EXPECT_EQ(same.out.find("arithmetic"), std::string::npos) << same.out;
  const Hdf5File checkpoint = Hdf5File::open_read(dir + "/out/checkpoints/step-00000003.h5");
  ASSERT_TRUE(checkpoint.has_attribute("arithmetic"));
  const std::string recorded = checkpoint.get_string("arithmetic");
  EXPECT_EQ(recorded.rfind("cpu code for ", 0), 0u) << recorded;
  if (recorded.find("DYNAMIC_ARCH") == std::string::npos)
    GTEST_SKIP() << "this OpenBLAS has one kernel: OPENBLAS_CORETYPE cannot change it";
  // (Sandybridge runs on every x86-64 CPU with AVX; a machine whose own kernel it is takes
  // Haswell's instead.)
  const std::string other =
      recorded.find(" kernel Sandybridge") == std::string::npos ? "Sandybridge" : "Haswell";
  const Result elsewhere = test::run_command(
      "OPENBLAS_CORETYPE=" + other + " " + std::string(RF_BINARY_DIR) + "/reformer " + train + "4");
  ASSERT_EQ(elsewhere.exit_code, 0) << elsewhere.out;
  EXPECT_NE(elsewhere.out.find("step-00000003.h5 was trained where the arithmetic was '" +
                               recorded + "'; here it is '"),
            std::string::npos)
      << elsewhere.out;
  EXPECT_NE(elsewhere.out.find(" kernel " + other), std::string::npos) << elsewhere.out;
}

INSTANTIATE_TEST_SUITE_P(CommandLine, ResumingWhereTheArithmeticDiffers,
                         ::testing::Values("false", "true"));

// The commit of the sources, as cmake/build_info.cmake reads it: 12 hex digits, "+changes" when
// tracked files differ from it; "unknown" outside a git checkout of these sources.
std::string source_commit() {
  const std::string git = std::string("git -C ") + RF_SOURCE_DIR;
  const Result head = test::run_command(git + " rev-parse --short=12 HEAD 2>/dev/null");
  const Result top =
      test::run_command(std::string("test \"$(") + git +
                        " rev-parse --show-toplevel 2>/dev/null)\" -ef " + RF_SOURCE_DIR);
  if (head.exit_code != 0 || top.exit_code != 0) return "unknown";  // (not the sources' own)
  std::string commit = head.out.substr(0, head.out.find('\n'));
  const Result status = test::run_command(git + " status --porcelain --untracked-files=no");
  if (status.exit_code == 0 && !status.out.empty()) commit += "+changes";
  return commit;
}

// `selftest --json` on a device it cannot test printed nothing on stdout, so a JSON reader got
// empty input; it now gets an object that says why (and exit 77, "skipped").
TEST(CommandLine, SelftestOfAMissingDeviceSaysSoInItsJson) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "this machine has a GPU to test";
  const Result r = run("selftest --device cuda --json");
  EXPECT_EQ(r.exit_code, 77) << r.out;
  EXPECT_NE(r.out.find("{\"device\": \"cuda\", \"precision\": \"fp32\", \"skipped\": \""),
            std::string::npos)
      << r.out;
}

TEST(CommandLine, VersionNamesTheCommitAndTheLibraries) {
  const Result v = run("--version");
  ASSERT_EQ(v.exit_code, 0) << v.out;
  // (a binary built before the last commit or edit names the older sources: rebuild first)
  EXPECT_EQ(v.out.rfind("reformer " + source_commit() + " (", 0), 0u) << v.out;
  for (const char* part :
       {" build, ", "CUDA ", "\n  cpu: OpenBLAS ", "; oneDNN ", "\n  data: HDF5 ", "\n  comms: "})
    EXPECT_NE(v.out.find(part), std::string::npos) << part << " in " << v.out;
  EXPECT_EQ(v.out.find("unknown"), v.out.find("reformer unknown")) << v.out;  // libraries known
}

TEST(CommandLine, TrainEvalGenerateEndToEnd) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  const std::string out = dir + "/out";
  const Result t = run("train --config " + cfg + " --set train.out_dir=" + out);
  ASSERT_EQ(t.exit_code, 0) << t.out;
  EXPECT_NE(t.out.find("step      5/5"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("ETA"), std::string::npos);
  EXPECT_NE(t.out.find("\n  build: reformer " + source_commit() + " ("), std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("report: evaluating 64 sequences x 4 hash counts"), std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("copy accuracy"), std::string::npos) << t.out;
  // The tiny run keeps the default warmup of 1000 steps: valid, but rarely meant, so said.
  EXPECT_NE(t.out.find("note: train.warmup (1000) is not below train.steps (5): the learning rate "
                       "ends at 0.5% of train.lr\n"),
            std::string::npos)
      << t.out;
  EXPECT_EQ(t.out.find("note: train.eval_every"), std::string::npos) << t.out;  // 5 of 5 steps
  EXPECT_TRUE(std::filesystem::exists(out + "/metrics.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(out + "/config.yaml"));
  EXPECT_FALSE(std::filesystem::is_empty(out + "/tb"));  // TensorBoard event files
  // Resumed at its end: nothing is saved, and it does not say "saved".
  const Result again =
      run("train --config " + cfg + " --set train.out_dir=" + out + " --resume auto --no-report");
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("no step to run: "), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("saved "), std::string::npos) << again.out;
  // Stopped where a periodic checkpoint was just written: it ran steps and says where they are
  // (it said "no step to run").
  const Result stopped = run("train --config " + cfg + " --set train.out_dir=" + dir +
                             "/stopped --set train.checkpoint_every=2 --stop-at-step 2");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.out;
  EXPECT_NE(stopped.out.find("saved " + dir + "/stopped/checkpoints/step-00000002.h5 after "),
            std::string::npos)
      << stopped.out;
  EXPECT_EQ(stopped.out.find("no step to run"), std::string::npos) << stopped.out;

  const Result e = run("eval --config " + cfg + " --checkpoint " + out + " --json");
  ASSERT_EQ(e.exit_code, 0) << e.out;
  // The duplication task is scored on the second copy of w, as training's validation scored it
  // (all 128 positions gave half the accuracy the log showed); no bits per byte without text.
  for (const char* key : {"\"loss\"", "\"bits_per_token\"", "\"accuracy\"", "\"tokens\": 60",
                          "\"positions\": \"17:32\""})
    EXPECT_NE(e.out.find(key), std::string::npos) << key << " in " << e.out;
  EXPECT_EQ(e.out.find("bits_per_byte"), std::string::npos) << e.out;
  const std::string validated = test::read_text(out + "/metrics.jsonl");
  const size_t last_val = validated.rfind("\"split\": \"val_copy\", \"loss\": ");
  ASSERT_NE(last_val, std::string::npos) << validated;
  const size_t loss_at = e.out.find("\"loss\": ");
  ASSERT_NE(loss_at, std::string::npos) << e.out;
  EXPECT_NEAR(std::stod(e.out.substr(loss_at + 8)),
              std::stod(validated.substr(
                  last_val + std::string("\"split\": \"val_copy\", \"loss\": ").size())),
              1e-6)
      << e.out << validated;
  const Result all = run("eval --checkpoint " + out + " --json --positions 0:");
  EXPECT_NE(all.out.find("\"tokens\": 128"), std::string::npos) << all.out;
  const Result part =
      run("eval --checkpoint " + out + " --json --positions 10:20 --set lsh.n_hashes=4");
  ASSERT_EQ(part.exit_code, 0) << part.out;
  EXPECT_NE(part.out.find("\"tokens\": 40"), std::string::npos) << part.out;
  EXPECT_NE(part.out.find("\"n_hashes\": 4"), std::string::npos) << part.out;
  expect_one_line_error(run("eval --checkpoint " + out + " --positions 20:10"), {"--positions"});
  // Not read as far as a number goes (1x:2 was scored as 1:2).
  const std::string eval_positions = "eval --checkpoint " + out + " --positions ";
  for (const std::string bad : {"1x:2", "1:2x", "0x10:20", "1e1:20", "1.5:3", "1:2:3", "-1:3"}) {
    const std::string quoted = "--positions '" + bad;
    expect_one_line_error(run(eval_positions + bad), {quoted + "' is not A:B"});
  }
  expect_one_line_error(run("eval --checkpoint " + out + " --positions 0:999999"),
                        {"--positions: B = 999999 is past train.seq_len"});

  // The synthetic task's tokens are not text: the prompt and the sample are token ids (they were
  // read and printed as bytes, control characters on a terminal).
  const Result g = run("generate --checkpoint " + out + " --prompt abc --tokens 5");
  EXPECT_NE(g.exit_code, 0);
  EXPECT_NE(g.out.find("--prompt: 'abc' is not a token id in [0, 16)"), std::string::npos) << g.out;
  EXPECT_NE(run("generate --checkpoint " + out + " --prompt '0 16' --tokens 5")
                .out.find("'16' is not a token id"),
            std::string::npos);
  const std::string ids = dir + "/ids.txt";
  ASSERT_EQ(test::run_command(concat("{ ", RF_BINARY_DIR, "/reformer generate --checkpoint ", out,
                                     " --prompt '0 3 5 0' --tokens 3 > ", ids, "; }"))
                .exit_code,
            0);
  std::istringstream printed(test::read_text(ids));
  std::vector<int> tokens;
  for (int id = 0; printed >> id;) tokens.push_back(id);
  ASSERT_EQ(tokens.size(), 7u) << test::read_text(ids);
  EXPECT_EQ(std::vector<int>(tokens.begin(), tokens.begin() + 4), (std::vector<int>{0, 3, 5, 0}));
  for (int id : tokens) EXPECT_TRUE(id >= 0 && id < 16) << id;
  // [lsh, local]: the window re-run per token, or with --lsh-cache the key/value cache.
  const Result exact = run("generate --checkpoint " + out + " --tokens 5");
  ASSERT_EQ(exact.exit_code, 0) << exact.out;
  EXPECT_NE(exact.out.find("no cache (LSH layers; --lsh-cache caches them"), std::string::npos)
      << exact.out;
  // Without --prompt, generation starts from token 0, which is not printed (it was a NUL byte
  // before the sample): one token's id and the newline.
  const std::string sample = dir + "/sample.txt";
  ASSERT_EQ(
      test::run_command("{ " + std::string(RF_BINARY_DIR) + "/reformer generate --checkpoint " +
                        out + " --tokens 1 > " + sample + "; }")
          .exit_code,
      0);
  const std::string one = test::read_text(sample);
  EXPECT_TRUE(one.size() >= 2 && one.size() <= 3 && one.back() == '\n' &&
              std::all_of(one.begin(), one.end() - 1, ::isdigit))
      << one;
  // A sample or a result that does not reach stdout (a full disk: /dev/full) is an error that
  // says so, not exit 0 with the output cut short.
  for (const std::string& command :
       {"generate --checkpoint " + out + " --tokens 5", "eval --checkpoint " + out + " --json",
        "config --config " + cfg}) {
    const Result full = test::run_command("{ " + std::string(RF_BINARY_DIR) + "/reformer " +
                                          command + " > /dev/full; }");
    EXPECT_EQ(full.exit_code, 1) << command << ": " << full.out;
    // (The cause is named where the failed write was the last flush: config's.)
    EXPECT_NE(full.out.find("error: cannot write to standard output"), std::string::npos)
        << command << ": " << full.out;
    EXPECT_NE(full.out.find("what the command printed is incomplete"), std::string::npos)
        << command << ": " << full.out;
  }
  const Result cached = run("generate --checkpoint " + out + " --tokens 5 --lsh-cache");
  ASSERT_EQ(cached.exit_code, 0) << cached.out;
  EXPECT_NE(cached.out.find("key/value cache (--lsh-cache"), std::string::npos) << cached.out;
  // Without LSH layers --lsh-cache changes nothing, and the line does not claim it did.
  const std::string local = dir + "/local";
  ASSERT_EQ(run("train --config " + cfg + " --no-report --set model.attention=[local] " +
                "--set train.out_dir=" + local)
                .exit_code,
            0);
  const Result plain = run("generate --checkpoint " + local + " --tokens 5 --lsh-cache");
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_NE(plain.out.find("key/value cache"), std::string::npos) << plain.out;
  EXPECT_EQ(plain.out.find("--lsh-cache:"), std::string::npos) << plain.out;
}

// A requeued job whose checkpoints are all damaged stops instead of training from step 0;
// auto-or-new starts over and keeps the damaged file; --help says so.
TEST(CommandLine, ResumeAutoWithOnlyDamagedCheckpointsIsAnErrorUnlessAutoOrNew) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  const std::string train = "train --config " + cfg + " --set train.out_dir=" + dir + "/out";
  ASSERT_EQ(run(train).exit_code, 0);
  const std::string damaged = dir + "/out/checkpoints/step-00000005.h5";
  std::filesystem::resize_file(damaged, 1000);
  expect_one_line_error(run(train + " --resume auto"),
                        {"--resume auto: no intact checkpoint", "step-00000005.h5",
                         "--resume auto-or-new", "nothing was changed"});
  EXPECT_EQ(std::filesystem::file_size(damaged), 1000u);

  const Result again = run(train + " --resume auto-or-new");
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_NE(again.out.find("starting over from step 0"), std::string::npos) << again.out;
  EXPECT_EQ(std::filesystem::file_size(dir + "/out/checkpoints/damaged/step-00000005.h5"), 1000u);
  EXPECT_TRUE(std::filesystem::exists(damaged)) << "no new checkpoint of step 5";

  const Result help = run("train --help");
  EXPECT_NE(help.out.find("auto-or-new"), std::string::npos) << help.out;
  expect_one_line_error(run(train + " --resume " + dir + "/nothing.h5"),
                        {"--resume '" + dir + "/nothing.h5'"});
}

TEST(CommandLine, NoReportFlagAndTrainReportFalseSkipTheReport) {
  const std::string dir = test::fresh_dir("run");
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  for (const std::string skip : {"--no-report", "--set train.report=false"}) {
    const Result t = run(concat("train --config ", cfg, " --set train.out_dir=", dir, "/out",
                                skip.size(), " ", skip));
    ASSERT_EQ(t.exit_code, 0) << skip << ":\n" << t.out;
    EXPECT_NE(t.out.find("step      5/5"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("saved "), std::string::npos) << t.out;
    EXPECT_EQ(t.out.find("report:"), std::string::npos) << skip << ":\n" << t.out;
    EXPECT_EQ(t.out.find("What the model learned"), std::string::npos) << skip << ":\n" << t.out;
  }
}

TEST(CommandLine, PrepareShardsThenTrainFromThem) {
  RF_TINY_SHAKESPEARE_OR_SKIP(text);
  const std::string dir = test::fresh_dir("run");
  const Result p = run("prepare --input " + text + " --output " + dir + "/shards --shards 3");
  ASSERT_EQ(p.exit_code, 0) << p.out;
  ASSERT_TRUE(std::filesystem::exists(dir + "/shards/manifest.yaml"));
  const Result again = run("prepare --input " + text + " --output " + dir + "/shards");
  expect_one_line_error(again, {"manifest.yaml"});  // never overwrites
  const std::string cfg = write_file(dir, "tiny.yaml", kTinyYaml);
  const Result t =
      run("train --config " + cfg + " --set data.format=hdf5 --set model.vocab_size=256" +
          " --set data.train=" + dir + "/shards/manifest.yaml --set train.out_dir=" + dir + "/out");
  ASSERT_EQ(t.exit_code, 0) << t.out;
  EXPECT_NE(t.out.find("3 shards"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("bits per byte"), std::string::npos) << t.out;
  expect_one_line_error(
      run("train --config " + cfg + " --set data.format=hdf5 " + "--set data.train=" + dir +
          "/shards/manifest.yaml --set train.out_dir=" + dir + "/out2"),
      {"vocab"});  // the model's 16 tokens cannot hold bytes
  // The duplication task prepared as shards: generate gives its prompt and sample as token ids,
  // as for the task generated on the fly (the config says data.format: hdf5; the checkpoint
  // records what the tokens were).
  ASSERT_EQ(run("prepare --synthetic duplication --sequences 64 --seq-len 32 --vocab-size 16 "
                "--output " +
                dir + "/dup")
                .exit_code,
            0);
  ASSERT_EQ(run("train --config " + cfg + " --no-report --set data.format=hdf5 --set data.train=" +
                dir + "/dup/manifest.yaml --set train.out_dir=" + dir + "/dup_run")
                .exit_code,
            0);
  const Result g = run("generate --checkpoint " + dir + "/dup_run --prompt '0 3 5 0' --tokens 2");
  ASSERT_EQ(g.exit_code, 0) << g.out;
  EXPECT_NE(g.out.find("0 3 5 0 "), std::string::npos) << g.out;
  // Validation data of another vocabulary (the task prepared again with 32 tokens) trained
  // without a word; so did a text file named as both data.train and data.val.
  ASSERT_EQ(run("prepare --synthetic duplication --sequences 64 --seq-len 32 --vocab-size 32 "
                "--output " +
                dir + "/dup32")
                .exit_code,
            0);
  expect_one_line_error(
      run("train --config " + cfg + " --set model.vocab_size=32 --set data.format=hdf5 " +
          "--set data.train=" + dir + "/dup/manifest.yaml --set data.val=" + dir +
          "/dup32/manifest.yaml --set train.out_dir=" + dir + "/mixed"),
      {"has a vocabulary of 32, data.train", "of 16: they were prepared differently"});
  expect_one_line_error(
      run("train --config " + cfg + " --set model.vocab_size=256 --set data.format=text " +
          "--set data.train=" + text + " --set data.val=" + text + " --set train.out_dir=" + dir +
          "/same"),
      {"is data.train's file", "validation would score the bytes training trains on"});
}

}  // namespace
}  // namespace rf
