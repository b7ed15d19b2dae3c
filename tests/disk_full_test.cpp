// Tests of writes on a full disk (a small tmpfs, tests/small_tmpfs.h): a checkpoint that does not
// fit is a clear error naming the file and the reason, leaves no partial file and the previous
// checkpoint intact; metrics lines are whole or absent; a training run on a full disk warns,
// keeps going, fails at its final checkpoint, and `--resume auto` continues from the last good
// one once there is space.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "data/hdf5_io.h"
#include "tests/model_fixture.h"
#include "tests/run_fixture.h"
#include "tests/small_tmpfs.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kTmpfsBytes = 2 << 20;  // several checkpoints of the tiny model

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// Frees `bytes` of a filled filesystem by shortening its filler file.
void free_space(const std::string& filler, uintmax_t bytes) {
  fs::resize_file(filler, fs::file_size(filler) - bytes);
}

// A checkpoint that does not fit, with no space at all (creating the file fails) and with room for
// parts of it (the file exists; writing a dataset or closing the file fails).
TEST(DiskFull, CheckpointThatDoesNotFitIsAClearErrorAndLeavesThePreviousOne) {
  RF_SMALL_TMPFS_OR_SKIP(disk, kTmpfsBytes);
  const Config cfg = test::tiny_config();
  ReformerModel model(cfg, test::cpu());
  AdamW optimizer(test::cpu(), model.params(), cfg.train);
  const std::string dir = disk.path() + "/checkpoints";
  TrainingState state;
  state.step = 2;
  const std::string previous = save_checkpoint(dir, model, optimizer, state, 5);
  const std::string previous_bytes = test::read_text(previous);
  const uintmax_t checkpoint_bytes = fs::file_size(previous), page = 4096;
  std::string filler;
  for (const uintmax_t room : {uintmax_t{0}, 2 * page, checkpoint_bytes / 4, checkpoint_bytes / 2,
                               checkpoint_bytes - 2 * page}) {
    SCOPED_TRACE("free bytes: " + std::to_string(room));
    if (!filler.empty()) fs::remove(filler);
    filler = disk.fill();
    free_space(filler, room);
    state.step += 2;
    const std::string name = checkpoint_file_name(state.step);
    try {
      save_checkpoint(dir, model, optimizer, state, 5);
      ADD_FAILURE() << "a checkpoint was written to a full disk";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_NE(m.find(concat("cannot write checkpoint '", dir, "/", name, "'")), std::string::npos)
          << m;
      EXPECT_NE(m.find("No space left on device"), std::string::npos) << m;
    }
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"step-00000002.h5"}) << "a partial file left";
    EXPECT_EQ(test::read_text(previous), previous_bytes);
    EXPECT_EQ(find_latest_checkpoint(dir), previous);
  }

  // The failed tries hold no space (no descriptor keeps a removed file): with the filler gone
  // the same checkpoint is written.
  fs::remove(filler);
  const std::string written = dir + "/" + checkpoint_file_name(state.step);
  EXPECT_EQ(save_checkpoint(dir, model, optimizer, state, 5), written);
  EXPECT_EQ(find_latest_checkpoint(dir), written);
}

// HDF5 writes a chunk of up to 1 MB when the dataset is closed, not in H5Dwrite: the write is
// reported there, not found later as a short file that closed without an error.
TEST(DiskFull, Hdf5DatasetThatDoesNotFitFailsItsWrite) {
  RF_SMALL_TMPFS_OR_SKIP(disk, kTmpfsBytes);
  const std::string filler = disk.fill();
  free_space(filler, uintmax_t{2} * 4096);
  const std::string path = disk.path() + "/data.h5";
  Hdf5File file = Hdf5File::create(path);
  const std::vector<float> values(20000, 1.0f);
  try {
    file.write("values", H5T_NATIVE_FLOAT, values.data(), static_cast<int64_t>(values.size()));
    file.close();
    FAIL() << "80 KB were written into 8 KB of free space";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'" + path +
                     "': HDF5 could not write dataset 'values': No space left on "
                     "device"),
              std::string::npos)
        << m;
  }
}

TEST(DiskFull, MetricsLinesAreWholeOrAbsentAndTheFailureIsReportedOnce) {
  RF_SMALL_TMPFS_OR_SKIP(disk, kTmpfsBytes);
  const std::string path = disk.path() + "/metrics.jsonl";
  MetricsLog log(path, false);
  std::string expected;
  for (int64_t step = 1; step <= 3; ++step) {
    const JsonLine line = JsonLine().add("step", step).add("loss", 1.0 / static_cast<double>(step));
    ASSERT_TRUE(log.write(line));
    expected += line.str() + "\n";
  }
  const std::string filler = disk.fill();
  // Free one page less than a long line needs, so the write gets part-way before it fails.
  const int64_t page = 4096;
  free_space(filler, page);
  const JsonLine long_line = JsonLine().add("note", std::string(3 * page, 'n'));
  testing::internal::CaptureStderr();
  EXPECT_FALSE(log.write(long_line));
  EXPECT_FALSE(log.write(long_line));
  const std::string warnings = testing::internal::GetCapturedStderr();
  EXPECT_EQ(test::read_text(path), expected) << "a part-written line was left in the file";
  EXPECT_EQ(log.lines_dropped(), 2);
  EXPECT_EQ(count_of(warnings, "warning: cannot write metrics file '" + path + "'"), 1u)
      << warnings;
  EXPECT_NE(warnings.find("No space left on device"), std::string::npos) << warnings;

  // Writes that fit go on after the failure, on lines of their own.
  const JsonLine short_line = JsonLine().add("step", int64_t{4});
  EXPECT_TRUE(log.write(short_line));
  EXPECT_EQ(test::read_text(path), expected + short_line.str() + "\n");
}

// The resolved config of a short run with checkpoints every 2 of 8 steps into out_dir, as a file
// for the command line.
std::string write_run_config(const std::string& dir, const std::string& out_dir) {
  const Config cfg = test::short_run_config(
      out_dir, 8, 2, {"train.checkpoint_every=2", "train.log_every=1", "train.keep_checkpoints=5"});
  std::string path = dir + "/run.yaml";
  std::ofstream(path) << cfg.source_text;
  return path;
}

bool every_line_is_a_json_object(const std::string& text) {
  if (text.empty() || text.back() != '\n') return false;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.size() < 2 || line.front() != '{' || line.back() != '}') return false;
  return true;
}

TEST(DiskFull, TrainingWarnsAtEachCheckpointFailsAtTheEndAndResumesFromTheLastGoodOne) {
  RF_SMALL_TMPFS_OR_SKIP(disk, kTmpfsBytes);
  const std::string out = disk.path() + "/run", ckpt = out + "/checkpoints";
  const std::string config = write_run_config(test::fresh_dir("config"), out);
  const std::string reformer = std::string(RF_BINARY_DIR) + "/reformer train --config " + config;
  const test::CommandResult first = test::run_command(reformer + " --stop-at-step 2");
  ASSERT_EQ(first.exit_code, 0) << first.out;
  const std::string metrics_before = test::read_text(out + "/metrics.jsonl");
  // Room for half a checkpoint: each try creates its file and fails in a dataset's write.
  const std::string filler = disk.fill();
  free_space(filler, fs::file_size(ckpt + "/step-00000002.h5") / 2);

  const test::CommandResult full = test::run_command(reformer + " --resume auto");
  // 1, not a crash: HDF5's exit handler crashed on the half-closed file of such a write (139).
  EXPECT_EQ(full.exit_code, 1) << full.out;
  EXPECT_NE(full.out.find("resumed from " + ckpt + "/step-00000002.h5 at step 2"),
            std::string::npos)
      << full.out;
  for (const auto& [step, next] : {std::pair{"4", "6"}, std::pair{"6", "8"}})
    EXPECT_NE(full.out.find(std::string("warning: cannot write checkpoint '") + ckpt +
                            "/step-0000000" + step + ".h5'"),
              std::string::npos)
        << "no warning for step " << step << ":\n"
        << full.out;
  EXPECT_EQ(count_of(full.out, "tries again at step"), 2u) << full.out;
  EXPECT_NE(full.out.find("step      8/8"), std::string::npos) << "training stopped:\n" << full.out;
  const std::string last_line = full.out.substr(full.out.rfind('\n', full.out.size() - 2) + 1);
  for (const std::string& part : {"error: cannot write checkpoint '" + ckpt + "/step-00000008.h5'",
                                  std::string("No space left on device"),
                                  "the newest checkpoint is still " + ckpt + "/step-00000002.h5",
                                  std::string("--resume auto")})
    EXPECT_NE(last_line.find(part), std::string::npos) << part << " not in: " << last_line;
  EXPECT_LE(count_of(full.out, "warning: cannot write metrics file"), 1u) << full.out;
  EXPECT_EQ(names_in(ckpt), std::vector<std::string>{"step-00000002.h5"});
  const std::string metrics = test::read_text(out + "/metrics.jsonl");
  EXPECT_EQ(metrics.substr(0, metrics_before.size()), metrics_before);
  EXPECT_TRUE(every_line_is_a_json_object(metrics)) << metrics;

  fs::remove(filler);
  const test::CommandResult resumed =
      test::run_command(reformer + " --resume auto --stop-at-step 4");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from " + ckpt + "/step-00000002.h5 at step 2"),
            std::string::npos)
      << resumed.out;
  EXPECT_EQ(find_latest_checkpoint(ckpt), ckpt + "/step-00000004.h5");
}

}  // namespace
}  // namespace rf
