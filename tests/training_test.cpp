// Tests of whole training runs in-process: exact resume from a checkpoint, checkpoint retention,
// refusal to overwrite a run, what --resume auto and auto-or-new do with damaged checkpoints, and
// mismatch errors; and the optimizer step they are made of.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "comms/communicator.h"
#include "data/hdf5_io.h"
#include "tests/model_fixture.h"
#include "tests/run_fixture.h"
#include "trainer/checkpoint.h"
#include "trainer/optimizer.h"
#include "trainer/run_directory_lock.h"
#include "trainer/train_loop.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

Config run_config(const std::string& out_dir, const std::vector<std::string>& extra = {}) {
  return test::short_run_config(out_dir, 8, 2, extra);
}

TrainSummary train(const Config& cfg, const std::string& resume = "", int64_t stop_at = -1) {
  return test::train_quietly(cfg, resume, stop_at);
}

// Two tensors, one with weight decay; gradients g. The fused update must equal AdamW written
// out per tensor with the clip factor min(1, clip / |g|).
struct TwoTensors {
  ParamStore store;
  int w = 0, b = 0;
  TwoTensors() {
    store.begin_group("g");
    w = store.add("w", {3, 4}, {InitKind::kNormal, 1.0f}, true);
    b = store.add("b", {5}, {InitKind::kNormal, 1.0f}, false);
    store.allocate(test::cpu());
    store.initialize(test::cpu(), 7);
  }
  std::vector<float> params() {
    std::vector<float> host(store.size());
    test::cpu().download(host.data(), store.params(), host.size() * sizeof(float));
    return host;
  }
  void set_grads(const std::vector<float>& g) {
    test::cpu().upload(store.grads(), g.data(), g.size() * sizeof(float));
  }
};

TEST(Optimizer, FusedUpdateEqualsAdamWPerTensorWithTheClipFactor) {
  TwoTensors t;
  TrainConfig cfg;
  cfg.grad_clip = 1.5;
  cfg.weight_decay = 0.1;
  AdamW adam(test::cpu(), t.store, cfg);
  std::vector<float> p = t.params(), m(p.size(), 0.0f), v(p.size(), 0.0f);
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> g(p.size());
    double squares = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] = 0.3f * static_cast<float>(step) * (static_cast<float>(i % 5) - 2.0f);
      squares += double{g[i]} * g[i];
    }
    t.set_grads(g);
    const GradNorm got = adam.step(1e-2);
    EXPECT_TRUE(got.finite);
    EXPECT_DOUBLE_EQ(got.norm, std::sqrt(squares));
    const float scale = std::sqrt(squares) > 1.5 ? static_cast<float>(1.5 / std::sqrt(squares)) : 1;
    const float c1 = static_cast<float>(1 - std::pow(cfg.adam_beta1, step));
    const float c2 = static_cast<float>(1 - std::pow(cfg.adam_beta2, step));
    const float b1 = static_cast<float>(cfg.adam_beta1), b2 = static_cast<float>(cfg.adam_beta2);
    for (size_t i = 0; i < p.size(); ++i) {
      const bool decayed = i < t.store.tensor(t.w).count;
      const float gi = g[i] * scale;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      p[i] -= 1e-2f * ((m[i] / c1) / (std::sqrt(v[i] / c2) + static_cast<float>(cfg.adam_eps)) +
                       (decayed ? 0.1f : 0.0f) * p[i]);
    }
    const std::vector<float> now = t.params();
    for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(now[i], p[i], 1e-6f) << step << " " << i;
  }
  EXPECT_EQ(adam.steps_taken(), 3);
}

TEST(Optimizer, NonFiniteGradientsLeaveEverythingUnchangedOnTheDevice) {
  TwoTensors t;
  TrainConfig cfg;
  AdamW adam(test::cpu(), t.store, cfg);
  std::vector<float> g(t.store.size(), 0.5f);
  t.set_grads(g);
  ASSERT_TRUE(adam.step(1e-2).finite);
  const std::vector<float> before = t.params();
  const std::vector<float> m = adam.first_moment().download(), v = adam.second_moment().download();
  for (float bad : {std::nanf(""), INFINITY}) {
    g[2] = bad;
    t.set_grads(g);
    const GradNorm got = adam.step(1e-2);
    EXPECT_FALSE(got.finite);
    EXPECT_FALSE(std::isfinite(got.norm));
    EXPECT_EQ(t.params(), before);
    EXPECT_EQ(adam.first_moment().download(), m);
    EXPECT_EQ(adam.second_moment().download(), v);
    EXPECT_EQ(adam.steps_taken(), 1);  // a skipped step does not count for the bias corrections
  }
}

// A copy of checkpoint `from` at `to` with parameter 0 set to NaN (a run that went bad).
void write_poisoned_checkpoint(const std::string& from, const std::string& to) {
  const Hdf5File in = Hdf5File::open_read(from);
  Hdf5File out = Hdf5File::create(to);
  for (const char* attr : {"format_version", "step", "samples_seen", "seed", "world_size"})
    out.set_int(attr, in.get_int(attr));
  for (const char* attr : {"config", "layout"}) out.set_string(attr, in.get_string(attr));
  for (const char* name : {"params", "adam_m", "adam_v"}) {
    std::vector<float> values(static_cast<size_t>(in.dataset_length(name)));
    in.read(name, H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(values.size()), values.data());
    if (std::string(name) == "params") values[0] = std::nanf("");
    out.write(name, H5T_NATIVE_FLOAT, values.data(), static_cast<int64_t>(values.size()));
  }
  out.close();
}

// Non-finite gradients: the device skips each update (the parameters stay as they were) and the
// run stops with a clear error after 5 such steps in a row, instead of training on NaNs.
TEST(Divergence, NonFiniteGradientsSkipUpdatesAndEndTheRun) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary first = train(run_config(dir, {"train.steps=2"}));
  const std::string poisoned = (fs::path(dir) / "poisoned.h5").string();
  write_poisoned_checkpoint(first.final_checkpoint, poisoned);
  // Two bad steps, then a stop: the checkpoint holds the parameters it started from.
  const std::string paused = test::fresh_dir("paused");
  const TrainSummary two = train(run_config(paused, {"train.steps=20"}), poisoned, 4);
  ASSERT_EQ(two.steps_done, 4);
  const auto before = test::checkpoint_params(poisoned);
  const auto after = test::checkpoint_params(two.final_checkpoint);
  ASSERT_EQ(before.size(), after.size());
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0);
  const std::string out = test::fresh_dir("resumed");
  try {
    train(run_config(out, {"train.steps=20"}), poisoned);
    FAIL() << "a run whose gradients are all NaN trained to the end";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training diverged: 5 consecutive steps"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("at step 7"), std::string::npos) << e.what();
  }
}

TEST(Resume, StoppedAndResumedRunEqualsUninterruptedRunBitForBit) {
  const std::string a = test::fresh_dir("whole"), b = test::fresh_dir("resumed");
  const TrainSummary whole = train(run_config(a));
  const TrainSummary first = train(run_config(b), "", 3);
  EXPECT_EQ(first.steps_done, 3);
  const TrainSummary rest = train(run_config(b), "auto");
  EXPECT_EQ(rest.steps_done, 8);
  const auto pa = test::checkpoint_params(whole.final_checkpoint);
  const auto pb = test::checkpoint_params(rest.final_checkpoint);
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
  EXPECT_EQ(whole.final_loss, rest.final_loss);
  // And the comparison can fail: a different seed ends elsewhere.
  const std::string c = test::fresh_dir("other_seed");
  const auto pc = test::checkpoint_params(train(run_config(c, {"train.seed=4"})).final_checkpoint);
  EXPECT_NE(std::memcmp(pa.data(), pc.data(), pa.size() * sizeof(float)), 0);
}

// A run resumed with another train.seed continues under its checkpoint's seed (it said so, but
// the synthetic task's windows, validation and the config it recorded took the new one).
TEST(Resume, AnotherSeedOnResumeIsTheCheckpointsInEverythingTheRunDoesAndRecords) {
  const std::string a = test::fresh_dir("whole"), b = test::fresh_dir("resumed");
  const TrainSummary whole = train(run_config(a));
  train(run_config(b), "", 3);
  const TrainSummary rest = train(run_config(b, {"train.seed=4"}), "auto");
  const auto pa = test::checkpoint_params(whole.final_checkpoint);
  const auto pb = test::checkpoint_params(rest.final_checkpoint);
  ASSERT_EQ(pa.size(), pb.size());
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), pa.size() * sizeof(float)), 0);
  const std::string seed = "  seed: " + std::to_string(run_config(a).train.seed) + "\n";
  ASSERT_NE(seed, "  seed: 4\n");
  std::ifstream recorded(b + "/config.yaml");
  std::ostringstream config_yaml;
  config_yaml << recorded.rdbuf();
  for (const std::string& text : {checkpoint_config_text(rest.final_checkpoint), config_yaml.str()})
    EXPECT_NE(text.find(seed), std::string::npos) << text;
}

// The training lines of a run's metrics.jsonl up to their speed fields (step, loss, bits,
// accuracy, lr, grad_norm), which a resumed run must log as the uninterrupted one did.
std::vector<std::string> logged_losses(const std::string& out_dir) {
  std::ifstream in(out_dir + "/metrics.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"split\"") == std::string::npos)
      lines.push_back(line.substr(0, line.find(", \"tokens_per_s\"")));
  return lines;
}

// A log line is the mean of the steps since the one before: a run stopped between two lines
// logged the resumed steps' mean alone, and an extra line for its first step.
TEST(Resume, AResumedRunLogsTheLinesOfTheUninterruptedRun) {
  const std::string a = test::fresh_dir("whole"), b = test::fresh_dir("resumed");
  train(run_config(a, {"train.log_every=4"}));
  train(run_config(b, {"train.log_every=4"}), "", 2);
  train(run_config(b, {"train.log_every=4"}), "auto");
  const std::vector<std::string> whole = logged_losses(a);
  ASSERT_EQ(whole.size(), 3u);  // steps 1, 4 and 8
  EXPECT_EQ(whole[1].rfind("{\"step\": 4, ", 0), 0u) << whole[1];
  EXPECT_EQ(logged_losses(b), whole);
  // Started from another run's checkpoint, a run's first line holds its own steps alone.
  const std::string c = test::fresh_dir("other");
  train(run_config(c, {"train.log_every=4"}), checkpoint_dir(b) + "/" + checkpoint_file_name(2));
  const std::vector<std::string> other = logged_losses(c);
  ASSERT_EQ(other.size(), 2u) << "steps 4 and 8";
  EXPECT_EQ(other[0].rfind("{\"step\": 4, ", 0), 0u) << other[0];
  EXPECT_NE(other[0], whole[1]);
  EXPECT_EQ(other[1], whole[2]);
  // This run's own checkpoint moved to checkpoints/superseded/ (by a resume from an earlier
  // step) is still this run's: resumed from it, the next line is the uninterrupted run's.
  const std::string d = test::fresh_dir("superseded");
  const Config every_2 =
      run_config(d, {"train.log_every=4", "train.checkpoint_every=2", "train.keep_checkpoints=5"});
  train(every_2);
  train(every_2, checkpoint_dir(d) + "/" + checkpoint_file_name(4));
  const std::string moved = checkpoint_dir(d) + "/superseded/" + checkpoint_file_name(6);
  ASSERT_TRUE(fs::exists(moved));
  train(every_2, moved);
  EXPECT_EQ(logged_losses(d).back(), whole[2]);
}

// Checkpoint names carry the step in 8 digits or more: from step 10^8 on (train.steps goes to
// 2^40) their 9 or more digits were not read back, so such checkpoints were never found.
TEST(Checkpoints, FileNamesGiveBackTheirStepAtEveryScale) {
  for (const int64_t step :
       {int64_t{0}, int64_t{42}, int64_t{99999999}, int64_t{100000000}, int64_t{1} << 40})
    EXPECT_EQ(checkpoint_step_of_file("/runs/x/checkpoints/" + checkpoint_file_name(step)), step);
  for (const char* other : {"step-1234567.h5", "step-0000000x.h5", "step-00000001.h5.tmp",
                            "steps-00000001.h5", "step-00000001.hdf5", "step-12345678901234.h5"})
    EXPECT_EQ(checkpoint_step_of_file(other), -1) << other;
}

TEST(Checkpoints, KeepsOnlyTheNewestK) {
  const std::string dir = test::fresh_dir("run");
  train(run_config(dir, {"train.checkpoint_every=2", "train.keep_checkpoints=2"}));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(checkpoint_dir(dir)))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step-00000006.h5", "step-00000008.h5"}));
}

TEST(Checkpoints, FreshRunRefusesToOverwriteAnExistingRun) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary s = train(run_config(dir, {"train.steps=2"}));
  const auto before = test::checkpoint_params(s.final_checkpoint);
  try {
    train(run_config(dir, {"train.steps=2", "train.seed=9"}));
    FAIL() << "a second fresh run into the same out_dir must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume auto"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::checkpoint_params(s.final_checkpoint), before);
}

// Two runs into one out_dir at once (a requeued job while the first still runs) interleaved
// their metrics and pruned each other's checkpoints. While a run holds the directory, another,
// even with --resume auto, is refused naming the holder and writes nothing; once the holder is
// gone, it trains.
TEST(Checkpoints, RunIntoADirectoryAnotherRunHoldsIsRefused) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = run_config(dir, {"train.steps=2"});
  train(cfg);
  const std::string metrics = test::read_text(dir + "/metrics.jsonl");
  {
    const RunDirectoryLock other_run(dir);
    for (const std::string resume : {"auto", ""}) {
      try {
        train(run_config(dir, {"train.steps=4"}), resume);
        FAIL() << "a second run started into a directory held by another";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("train.out_dir '" + dir +
                                                  "' is in use by another training run (pid " +
                                                  std::to_string(getpid()) + " on host ",
                                              0),
                  0u)
            << e.what();
      }
    }
    EXPECT_EQ(test::read_text(dir + "/metrics.jsonl"), metrics);
  }
  EXPECT_EQ(train(run_config(dir, {"train.steps=4"}), "auto").steps_done, 4);
  // A start that fails leaves no directory behind (nor its lock), nor the folders above it that
  // it made.
  const std::string parent = test::fresh_dir("parent");
  const std::string never = parent + "/made/by/the/run";
  try {
    train(run_config(
        never, {"model.vocab_size=256", "data.format=text", "data.train=/nonexistent/x.txt"}));
    FAIL() << "trained on a file that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.txt"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(parent));
  EXPECT_FALSE(fs::exists(parent + "/made"));
}

// What stands where the run must write is found at the start, not after the whole run: a file
// named checkpoints (each interval warned, then the end failed), an out_dir that is a dangling
// symbolic link (it said "File exists").
TEST(Checkpoints, AnOutDirThatCannotHoldTheRunIsRefusedBeforeTheFirstStep) {
  const std::string dir = test::fresh_dir("run");
  std::ofstream(dir + "/checkpoints") << "a file";
  try {
    train(run_config(dir, {"train.steps=2"}));
    FAIL() << "trained with a file where its checkpoints go";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "'" + checkpoint_dir(dir) + "' is not a directory; checkpoints go there (move it away)");
  }
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl"));
  const std::string link = test::fresh_dir("links") + "/dangling";
  fs::create_symlink("nowhere/x", link);
  try {
    train(run_config(link, {"train.steps=2"}));
    FAIL() << "trained into a dangling symbolic link";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "train.out_dir '" + link + "' is a symbolic link to 'nowhere/x', which does not exist");
  }
}

// Without checkpoints a fresh run still refuses an out_dir whose metrics.jsonl it would truncate
// or whose config.yaml (the user's --config file, say) it would replace; both were overwritten.
TEST(Checkpoints, FreshRunRefusesToReplaceARunsMetricsOrAnotherConfig) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = run_config(dir, {"train.steps=2"});
  train(cfg);
  fs::remove_all(checkpoint_dir(dir));  // a run stopped before its first checkpoint
  const std::string metrics = test::read_text(dir + "/metrics.jsonl");
  ASSERT_FALSE(metrics.empty());
  try {
    train(cfg);
    FAIL() << "a fresh run truncated the metrics.jsonl of another";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run's metrics.jsonl"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(test::read_text(dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(train(cfg, "auto-or-new").steps_done, 2);  // what the message offers
  EXPECT_EQ(test::read_text(dir + "/metrics.jsonl").rfind(metrics, 0), 0u);  // added to

  const std::string mine = test::fresh_dir("mine");
  const std::string notes = "# my notes\n" + cfg.source_text;
  std::ofstream(mine + "/config.yaml") << notes;
  try {
    train(run_config(mine, {"train.steps=2"}));
    FAIL() << "a fresh run replaced a config.yaml unlike its own";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a config.yaml unlike"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(test::read_text(mine + "/config.yaml"), notes);
  // The resolved config of a run that failed before its first step (no checkpoint, no metrics)
  // is said to be one (it was blamed on the user's --config file); auto-or-new starts over.
  const std::string failed = test::fresh_dir("failed");
  const Config earlier = run_config(failed, {"train.steps=3"});
  std::ofstream(failed + "/config.yaml") << earlier.source_text;
  try {
    train(run_config(failed, {"train.steps=2"}));
    FAIL() << "a fresh run replaced another run's config.yaml";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("with no checkpoint and no metrics beside it: a run that "
                                         "failed before its first step (then pass --resume "
                                         "auto-or-new to start over there, replacing it), or your "
                                         "--config file"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(test::read_text(failed + "/config.yaml"), earlier.source_text);
  EXPECT_EQ(train(run_config(failed, {"train.steps=2"}), "auto-or-new").steps_done, 2);
  // Other files where its checkpoints go: refused, and said so (not "holds checkpoints").
  const std::string notes_dir = test::fresh_dir("notes");
  fs::create_directories(checkpoint_dir(notes_dir));
  std::ofstream(checkpoint_dir(notes_dir) + "/notes.txt") << "mine";
  try {
    train(run_config(notes_dir, {"train.steps=2"}));
    FAIL() << "a fresh run wrote beside another's files";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds other files in"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("('notes.txt')"), std::string::npos) << e.what();
  }
  // The same text as the run's resolved config is no loss: the run goes on.
  const Config same = run_config(mine, {"train.steps=2"});
  std::ofstream(mine + "/config.yaml", std::ios::trunc) << same.source_text;
  EXPECT_EQ(train(same).steps_done, 2);
}

// --resume rewrites config.yaml with its resolved config: the user's own --config file kept in
// the run directory lost its comments (under auto-or-new and auto alike). A config.yaml the
// trainer wrote (another train.lr, say) is its to rewrite.
TEST(Checkpoints, ResumeRefusesToReplaceAConfigYamlTheUserWrote) {
  const std::string dir = test::fresh_dir("run");
  const std::string mine = "# my notes\ntrain:\n  steps: 2\n";
  std::ofstream(dir + "/config.yaml") << mine;
  for (const char* resume : {"auto-or-new", "auto"}) {
    try {
      train(run_config(dir, {"train.steps=2"}), resume);
      FAIL() << "--resume " << resume << " replaced the user's config.yaml";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("holds a config.yaml this program did not write"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(test::read_text(dir + "/config.yaml"), mine);
  }
  const std::string run = test::fresh_dir("resolved");
  train(run_config(run, {"train.steps=4"}), "", 2);
  EXPECT_EQ(train(run_config(run, {"train.steps=4", "train.lr=0.001"}), "auto").steps_done, 4);
  EXPECT_NE(test::read_text(run + "/config.yaml").find("  lr: 0.001\n"), std::string::npos);
}

TEST(Checkpoints, ResumeAutoSkipsADamagedNewestCheckpoint) {
  const std::string dir = test::fresh_dir("run");
  train(run_config(dir, {"train.checkpoint_every=2", "train.steps=8"}), "", 4);
  // A newer checkpoint that was cut short (e.g. the disk filled up).
  const std::string good = (fs::path(checkpoint_dir(dir)) / checkpoint_file_name(4)).string();
  const std::string bad = (fs::path(checkpoint_dir(dir)) / checkpoint_file_name(6)).string();
  fs::copy_file(good, bad);
  fs::resize_file(bad, fs::file_size(bad) / 2);
  EXPECT_EQ(find_latest_checkpoint(checkpoint_dir(dir)), good);
  const TrainSummary s =
      train(run_config(dir, {"train.checkpoint_every=2", "train.steps=8"}), "auto");
  EXPECT_EQ(s.steps_done, 8);
  // Kept with the damaged ones, not with the intact checkpoints a run sets aside.
  EXPECT_TRUE(fs::exists(fs::path(checkpoint_dir(dir)) / "damaged" / checkpoint_file_name(6)));
  EXPECT_FALSE(fs::exists(fs::path(checkpoint_dir(dir)) / "superseded"));
}

// Every file under `dir` with its bytes: what "nothing was changed" compares.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[e.path().string()] = test::read_text(e.path().string());
  return files;
}

// A checkpoint of `source` at `to` without its second moments: it loads the parameters and the
// first moments before it fails, so a run that skips it must not keep what it loaded.
void write_checkpoint_without_second_moments(const std::string& source, const std::string& to) {
  const Hdf5File in = Hdf5File::open_read(source);
  Hdf5File out = Hdf5File::create(to);
  for (const char* attr : {"format_version", "step", "samples_seen", "seed", "world_size"})
    out.set_int(attr, in.get_int(attr));
  for (const char* attr : {"config", "layout"}) out.set_string(attr, in.get_string(attr));
  for (const char* name : {"params", "adam_m"}) {
    std::vector<float> values(static_cast<size_t>(in.dataset_length(name)));
    in.read(name, H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(values.size()), values.data());
    out.write(name, H5T_NATIVE_FLOAT, values.data(), static_cast<int64_t>(values.size()));
  }
  out.close();
}

// A run directory whose two checkpoints (steps 2 and 4) are both damaged: step 4 cut short,
// step 2 lacking its second moments (it holds another seed's parameters).
std::string run_with_only_damaged_checkpoints(const std::vector<std::string>& settings) {
  std::string dir = test::fresh_dir("run");
  train(run_config(dir, settings), "", 4);
  const std::string other = test::fresh_dir("other_seed");
  train(run_config(other, {"train.seed=11", "train.checkpoint_every=2"}), "", 2);
  const fs::path ckpt = checkpoint_dir(dir);
  fs::remove(ckpt / checkpoint_file_name(2));
  write_checkpoint_without_second_moments(
      (fs::path(checkpoint_dir(other)) / checkpoint_file_name(2)).string(),
      (ckpt / checkpoint_file_name(2)).string());
  const fs::path newest = ckpt / checkpoint_file_name(4);
  fs::resize_file(newest, fs::file_size(newest) / 2);
  return dir;
}

TEST(Checkpoints, ResumeAutoStopsWhenEveryCheckpointIsDamagedAndChangesNothing) {
  const std::vector<std::string> settings = {"train.checkpoint_every=2",
                                             "train.keep_checkpoints=2"};
  const std::string dir = run_with_only_damaged_checkpoints(settings);
  const auto before = snapshot(dir);
  ASSERT_EQ(before.count((fs::path(checkpoint_dir(dir)) / checkpoint_file_name(4)).string()), 1u);
  try {
    train(run_config(dir, settings), "auto");
    FAIL() << "--resume auto started over although the run had checkpoints";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    for (const std::string& part : {"no intact checkpoint in '" + checkpoint_dir(dir) + "'",
                                    std::string("step-00000004.h5 (it"),
                                    std::string("step-00000002.h5 (it has no dataset 'adam_v')"),
                                    std::string("--resume auto-or-new")})
      EXPECT_NE(m.find(part), std::string::npos) << part << " not in: " << m;
  }
  EXPECT_EQ(snapshot(dir), before);
}

TEST(Checkpoints, ResumeAutoOrNewStartsOverAndKeepsTheDamagedFiles) {
  const std::vector<std::string> settings = {"train.checkpoint_every=2",
                                             "train.keep_checkpoints=1"};
  const std::string dir = run_with_only_damaged_checkpoints(settings);
  const auto before = snapshot(dir);
  const std::string metrics = (fs::path(dir) / "metrics.jsonl").string();
  const std::string old_metrics = test::read_text(metrics);
  const TrainSummary s = train(run_config(dir, settings), "auto-or-new");
  EXPECT_EQ(s.steps_done, 8);
  // Moved, not deleted or overwritten; and kept out of the way of pruning (keep 1).
  const fs::path ckpt = checkpoint_dir(dir);
  for (int64_t step : {2, 4})
    EXPECT_EQ(test::read_text((ckpt / "damaged" / checkpoint_file_name(step)).string()),
              before.at((ckpt / checkpoint_file_name(step)).string()))
        << step;
  EXPECT_EQ(find_latest_checkpoint(ckpt.string()), s.final_checkpoint);
  EXPECT_EQ(test::read_text(metrics).substr(0, old_metrics.size()), old_metrics);
  // From step 0 with fresh values: what the damaged step-2 file had loaded was put back.
  const TrainSummary fresh = train(run_config(test::fresh_dir("fresh"), settings));
  test::expect_same_final_params(s, fresh);
}

// --stop-at-step 0 ran one step (the check came after it); it saves the initial model instead.
TEST(Checkpoints, StopAtStepZeroRunsNoStepAndSavesTheInitialModel) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary none = train(run_config(dir), "", 0);
  EXPECT_EQ(none.steps_done, 0);
  EXPECT_EQ(fs::path(none.final_checkpoint).filename(), checkpoint_file_name(0));
  EXPECT_EQ(train(run_config(dir), "auto", 3).steps_done, 3);
  EXPECT_EQ(train(run_config(dir), "auto", 2).steps_done, 3);  // already past: no step
  test::expect_same_final_params(train(run_config(dir), "auto"),
                                 train(run_config(test::fresh_dir("whole"))));
}

TEST(Checkpoints, ResumeAutoWithoutCheckpointsStartsFresh) {
  const TrainSummary fresh = train(run_config(test::fresh_dir("fresh")));
  const std::string never_run = test::fresh_dir("never_run");
  const TrainSummary first = train(run_config(never_run + "/out"), "auto");
  EXPECT_EQ(first.steps_done, 8);
  test::expect_same_final_params(first, fresh);
  // A checkpoints folder without checkpoints (a job stopped before its first one) is the same.
  const std::string empty = test::fresh_dir("empty");
  fs::create_directories(checkpoint_dir(empty));
  test::expect_same_final_params(train(run_config(empty), "auto"), fresh);
}

TEST(Checkpoints, MovingAsideNeverReplacesAFile) {
  const std::string dir = test::fresh_dir("run");
  const std::string aside = dir + "/aside";
  fs::create_directories(aside);
  std::ofstream(aside + "/step-00000002.h5") << "first";
  std::ofstream(aside + "/step-00000002.h5.1") << "second";
  std::ofstream(dir + "/step-00000002.h5") << "third";
  EXPECT_EQ(move_into_folder_keeping_both(dir + "/step-00000002.h5", aside),
            aside + "/step-00000002.h5.2");
  EXPECT_EQ(test::read_text(aside + "/step-00000002.h5"), "first");
  EXPECT_EQ(test::read_text(aside + "/step-00000002.h5.1"), "second");
  EXPECT_EQ(test::read_text(aside + "/step-00000002.h5.2"), "third");
  EXPECT_FALSE(fs::exists(dir + "/step-00000002.h5"));
}

TEST(Checkpoints, SavingNeverReplacesAnExistingCheckpoint) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = run_config(dir);
  ReformerModel model(cfg, test::cpu());
  AdamW optimizer(test::cpu(), model.params(), cfg.train);
  TrainingState state;
  state.step = 3;
  const std::string path = save_checkpoint(checkpoint_dir(dir), model, optimizer, state, 5);
  const std::string bytes = test::read_text(path);
  state.samples_seen = 99;
  try {
    save_checkpoint(checkpoint_dir(dir), model, optimizer, state, 5);
    FAIL() << "a checkpoint was replaced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::read_text(path), bytes);
}

TEST(Checkpoints, CorruptedValuesAreDetectedByChecksums) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary s = train(run_config(dir, {"train.steps=2"}));
  // Flip bytes in the middle of the file (inside the parameter data).
  std::fstream f(s.final_checkpoint, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(f.tellg());
  for (std::streamoff pos = size / 3; pos < size / 3 + 64; ++pos) {
    f.seekp(pos);
    f.put(static_cast<char>(0x5a));
  }
  f.close();
  EXPECT_EQ(find_latest_checkpoint(checkpoint_dir(dir)), "");
}

// A checkpoint cut short by its seal's trailer, in part or whole, or by its seal and damaged, was
// read unchecked (an unsealed file, as before seals); checkpoints now say inside that they were
// sealed, and one that lost its seal is refused, also by a search for the newest intact one.
TEST(Checkpoints, OneThatLostItsSealIsRefused) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary s = train(run_config(dir, {"train.steps=2"}));
  ReformerModel model(run_config(dir), test::cpu());
  EXPECT_NO_THROW(load_checkpoint(s.final_checkpoint, model, nullptr));
  const uintmax_t size = fs::file_size(s.final_checkpoint);
  for (const uintmax_t cut : {10, 32}) {
    SCOPED_TRACE("cut by " + std::to_string(cut) + " bytes");
    const std::string copy = dir + "/cut.h5";
    fs::copy_file(s.final_checkpoint, copy, fs::copy_options::overwrite_existing);
    fs::resize_file(copy, size - cut);
    try {
      load_checkpoint(copy, model, nullptr);
      FAIL() << "a checkpoint without its seal was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("has lost the checksum seal it was written with"),
                std::string::npos)
          << e.what();
    }
  }
  fs::resize_file(s.final_checkpoint, size - 32);
  EXPECT_EQ(find_latest_checkpoint(checkpoint_dir(dir)), "");
}

TEST(Checkpoints, MismatchedModelIsAClearError) {
  const std::string dir = test::fresh_dir("run");
  const TrainSummary s = train(run_config(dir, {"train.steps=2"}));
  const Config other = run_config(dir, {"model.d_ff=32"});
  ReformerModel model(other, test::cpu());
  try {
    load_checkpoint(s.final_checkpoint, model, nullptr);
    FAIL() << "loading into a different model must fail";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("does not match the config"), std::string::npos) << m;
    EXPECT_NE(m.find("w1 16x32"), std::string::npos) << m;
  }
  // Another number of layers: the counts, not two unrelated tensors paired.
  ReformerModel deeper(run_config(dir, {"model.n_layers=3"}), test::cpu());
  try {
    load_checkpoint(s.final_checkpoint, deeper, nullptr);
    FAIL() << "loading into a deeper model must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the checkpoint's"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(different model.n_layers"), std::string::npos)
        << e.what();
  }
  // The same tensors with another activation: loaded without a word before.
  ReformerModel relu(run_config(dir, {"model.activation=relu"}), test::cpu());
  try {
    load_checkpoint(s.final_checkpoint, relu, nullptr);
    FAIL() << "a GELU model's weights were loaded to run as ReLU";
  } catch (const CheckpointMismatch& e) {
    EXPECT_NE(std::string(e.what()).find("was trained with model.activation = gelu, not relu"),
              std::string::npos)
        << e.what();
  }
  // The same projection widths split into twice the heads of half the width: every tensor keeps
  // its shape, and eval, generate and resume ran the weights as another function.
  const Config trained = run_config(dir);
  const int64_t heads = trained.model.n_heads, width = trained.model.d_head;
  ASSERT_EQ(width % 2, 0);
  ReformerModel split(run_config(dir, {"model.n_heads=" + std::to_string(2 * heads),
                                       "model.d_head=" + std::to_string(width / 2)}),
                      test::cpu());
  try {
    load_checkpoint(s.final_checkpoint, split, nullptr);
    FAIL() << "the weights of " << heads << " heads were loaded as " << 2 * heads;
  } catch (const CheckpointMismatch& e) {
    EXPECT_NE(
        std::string(e.what()).find(concat("was trained with model.n_heads x model.d_head = ", heads,
                                          " x ", width, ", not ", 2 * heads, " x ", width / 2)),
        std::string::npos)
        << e.what();
  }
}

// A model of 256 layers has a parameter layout of more than 64 KiB, past what an HDF5 attribute
// of the original file format holds: its checkpoint failed to save ("cannot create attribute
// 'layout'") after the whole run. Files are now written in HDF5 1.8's format.
TEST(Checkpoints, AModelOf256LayersSavesAndLoads) {
  const std::string dir = test::fresh_dir("deep");
  const Config cfg = run_config(dir, {"model.n_layers=256", "train.steps=1"});
  const TrainSummary s = train(cfg);
  ReformerModel model(cfg, test::cpu());
  const TrainingState state = load_checkpoint(s.final_checkpoint, model, nullptr);
  EXPECT_EQ(state.step, 1);
  std::vector<float> loaded(model.params().size());
  test::cpu().download(loaded.data(), model.params().params(), loaded.size() * sizeof(float));
  EXPECT_EQ(loaded, test::checkpoint_params(s.final_checkpoint));
}

TEST(Checkpoints, ResumingFromAnOlderCheckpointSetsNewerOnesAside) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = run_config(dir, {"train.checkpoint_every=2", "train.keep_checkpoints=1"});
  train(cfg);  // leaves step 8 (keep 1)
  const std::string ckpt = checkpoint_dir(dir);
  // Roll back to an older checkpoint kept elsewhere: re-create step 4 by a second run.
  const std::string other = test::fresh_dir("other");
  train(run_config(other, {"train.checkpoint_every=2"}), "", 4);
  const std::string older = (fs::path(checkpoint_dir(other)) / checkpoint_file_name(4)).string();
  const TrainSummary s = train(cfg, older, 5);
  EXPECT_EQ(s.steps_done, 5);
  EXPECT_TRUE(fs::exists(s.final_checkpoint)) << "the checkpoint just written must be kept";
  EXPECT_TRUE(fs::exists(fs::path(ckpt) / "superseded" / "step-00000008.h5"));
  EXPECT_EQ(find_latest_checkpoint(ckpt), s.final_checkpoint);
}

}  // namespace
}  // namespace rf
