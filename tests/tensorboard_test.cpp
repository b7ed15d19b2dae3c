// TensorBoard event files: CRC-32C against its published check values, the record framing, write
// failures, and training runs whose event files the tensorboard package itself reads back
// (tests/read_tensorboard.py) holding exactly what metrics.jsonl holds.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "base/crc32c.h"
#include "base/error.h"
#include "tests/run_fixture.h"
#include "tests/test_python.h"
#include "trainer/run_metrics.h"
#include "trainer/tensorboard_events.h"

namespace rf {
namespace {

namespace fs = std::filesystem;

uint32_t crc_of(const std::string& s) {
  return crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

uint32_t little_endian_u32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

TEST(Crc32c, MatchesThePublishedCheckValues) {
  EXPECT_EQ(crc_of("123456789"), 0xE3069283u);  // the CRC catalogue's check value
  EXPECT_EQ(crc_of(""), 0u);
  // RFC 3720 (iSCSI), appendix B.4: 32 zero bytes and the bytes 0, 1, ..., 31.
  std::string zeros(32, '\0'), ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(crc_of(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc_of(ascending), 0x46DD794Eu);
}

TEST(Crc32c, ContinuesAcrossPiecesAndMasksAsTensorFlowDoes) {
  const std::string a = "12345", b = "6789";
  EXPECT_EQ(crc32c(reinterpret_cast<const uint8_t*>(b.data()), b.size(), crc_of(a)), crc_of(a + b));
  // tensorboard's own masked_crc32c(b"123456789") (its compat record reader's checksum).
  EXPECT_EQ(masked_crc32c(crc_of("123456789")), 0xC78AB0E5u);
}

TEST(TensorBoardEvents, FrameHoldsLengthDataAndTheirMaskedCrcs) {
  const std::string data = "an event";
  const std::string frame = frame_record(data);
  ASSERT_EQ(frame.size(), 8 + 4 + data.size() + 4);
  EXPECT_EQ(frame.substr(0, 8), std::string("\x08\0\0\0\0\0\0\0", 8));  // uint64 length, LE
  EXPECT_EQ(little_endian_u32(frame, 8), masked_crc32c(crc_of(frame.substr(0, 8))));
  EXPECT_EQ(frame.substr(12, data.size()), data);
  EXPECT_EQ(little_endian_u32(frame, 12 + data.size()), masked_crc32c(crc_of(data)));
}

TEST(TensorBoardEvents, ScalarEventEncodesStepTagAndFloat) {
  // Hand-assembled protobuf: wall_time (field 1, fixed64) 1.5, step (2, varint) 300,
  // summary (5) { value (1) { tag (1) "a", simple_value (2, fixed32) 0.25f } }.
  const std::string expected(
      "\x09\0\0\0\0\0\0\xF8\x3F"
      "\x10\xAC\x02"
      "\x2A\x0A\x0A\x08\x0A\x01"
      "a"
      "\x15\0\0\x80\x3E",
      24);
  EXPECT_EQ(scalars_event(1.5, 300, {{"a", 0.25f}}), expected);
}

TEST(TensorBoardEvents, WriteFailureWarnsOnceAndStopsWriting) {
  testing::internal::CaptureStderr();
  TensorBoardWriter writer("/dev/full");  // every write fails with ENOSPC
  writer.write_scalars(1, {{"train/loss", 1.0f}});
  writer.write_scalars(2, {{"train/loss", 1.0f}});
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(writer.is_open());
  EXPECT_EQ(err.rfind("warning: cannot write TensorBoard event file '/dev/full'", 0), 0u) << err;
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(TensorBoardEvents, MetricsJsonlWriteFailureWarnsOnce) {
  testing::internal::CaptureStderr();
  MetricsLog log("/dev/full", true);
  log.write(JsonLine().add("step", int64_t{1}));
  log.write(JsonLine().add("step", int64_t{2}));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.rfind("warning: cannot write metrics file '/dev/full'", 0), 0u) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// A metrics.jsonl cut short inside a line (a crash): the resumed run's first line was appended to
// the partial one, and neither parsed. The partial line is ended first.
TEST(TensorBoardEvents, MetricsJsonlThatEndsInsideALineIsEndedBeforeMoreLines) {
  const std::string path = test::fresh_dir("cut") + "/metrics.jsonl";
  const std::string kept = "{\"step\": 1}\n{\"step\": 2, \"lo";
  std::ofstream(path, std::ios::binary) << kept;
  JsonLine line;
  line.add("step", int64_t{3});
  {
    MetricsLog log(path, true);
    EXPECT_TRUE(log.write(line));
  }
  EXPECT_EQ(test::read_text(path), kept + "\n" + line.str() + "\n");
  {
    MetricsLog log(path, true);  // (a whole last line: nothing added)
    EXPECT_TRUE(log.write(line));
  }
  EXPECT_EQ(test::read_text(path), kept + "\n" + line.str() + "\n" + line.str() + "\n");
}

TEST(TensorBoardEvents, UncreatableFolderIsAnErrorNamingIt) {
  try {
    TensorBoardWriter::create_in("/dev/null/tb");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'/dev/null/tb'"), std::string::npos) << e.what();
  }
}

// --- read back by the tensorboard package ---------------------------------------------------

// What tests/read_tensorboard.py prints for `folder` (its last line: the JSON object).
YAML::Node read_with_tensorboard(const std::string& python, const std::string& folder) {
  const test::CommandResult r =
      test::run_command(python + " " + RF_SOURCE_DIR + "/tests/read_tensorboard.py " + folder);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty()) last = line;
  return YAML::Load(last);  // JSON is YAML
}

// tag -> step -> value of every scalar in metrics.jsonl as TensorBoard tags it: a later line for
// the same step (a run resumed from an earlier checkpoint) replaces an earlier one.
using Scalars = std::map<std::string, std::map<int64_t, double>>;

Scalars scalars_of_metrics_jsonl(const std::string& out_dir) {
  Scalars s;
  std::ifstream in(out_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const YAML::Node object = YAML::Load(line);
    const int64_t step = object["step"].as<int64_t>();
    const std::string split = object["split"] ? object["split"].as<std::string>() : "train";
    for (const auto& kv : object) {
      const std::string key = kv.first.as<std::string>();
      if (key != "step" && key != "split")
        s[concat(split, "/", key)][step] = kv.second.as<double>();
    }
  }
  return s;
}

// Every scalar TensorBoard loaded; a step loaded twice is a failure.
Scalars scalars_of_tensorboard(const YAML::Node& read) {
  Scalars s;
  for (const YAML::Node& entry : read["scalars"]) {
    const std::string tag = entry[0].as<std::string>();
    const int64_t step = entry[1].as<int64_t>();
    EXPECT_EQ(s[tag].count(step), 0u) << tag << " loaded twice at step " << step;
    s[tag][step] = entry[2].as<double>();
  }
  return s;
}

// The same tags at the same steps, values equal to float precision.
void expect_same_scalars(const Scalars& tensorboard, const Scalars& jsonl) {
  ASSERT_FALSE(jsonl.empty());
  for (const auto& [tag, steps] : jsonl) {
    ASSERT_TRUE(tensorboard.count(tag)) << "TensorBoard has no tag " << tag;
    const auto& got = tensorboard.at(tag);
    EXPECT_EQ(got.size(), steps.size()) << tag;
    for (const auto& [step, value] : steps) {
      ASSERT_TRUE(got.count(step)) << tag << " has no step " << step;
      // metrics.jsonl prints 8 significant digits; the event holds a float.
      EXPECT_NEAR(got.at(step), value, 2e-7 * std::fabs(value)) << tag << " at step " << step;
    }
  }
  for (const auto& entry : tensorboard)
    EXPECT_TRUE(jsonl.count(entry.first)) << "tag " << entry.first << " is not in metrics.jsonl";
}

void expect_intact_files(const YAML::Node& read, size_t files) {
  ASSERT_EQ(read["files"].size(), files);
  for (const YAML::Node& f : read["files"]) {
    EXPECT_EQ(f["file_version"].as<std::string>(), "brain.Event:2");
    EXPECT_TRUE(f["error"].IsNull()) << f["error"].as<std::string>();
    EXPECT_TRUE(f["canonical"].as<bool>()) << "bytes differ from protobuf's own encoding";
    EXPECT_EQ(f["name"].as<std::string>().rfind("events.out.tfevents.", 0), 0u);
  }
}

TEST(TensorBoard, TrainingRunEventsHoldEveryMetricOfMetricsJsonl) {
  RF_TEST_PYTHON_OR_SKIP(python);
  const std::string out = test::fresh_dir("run");
  test::train_quietly(test::short_run_config(
      out, 6, 2, {"train.log_every=2", "train.eval_every=3", "train.eval_batches=1"}));
  const YAML::Node read = read_with_tensorboard(python, tensorboard_dir(out));
  expect_intact_files(read, 1);
  const Scalars jsonl = scalars_of_metrics_jsonl(out);
  EXPECT_EQ(jsonl.at("train/loss").size(), 4u);       // steps 1 (the first), 2, 4, 6
  EXPECT_EQ(jsonl.at("val_copy/tokens").size(), 2u);  // steps 3, 6
  expect_same_scalars(scalars_of_tensorboard(read), jsonl);
}

TEST(TensorBoard, ResumedRunReplacesTheStepsAfterItsCheckpoint) {
  RF_TEST_PYTHON_OR_SKIP(python);
  const std::string out = test::fresh_dir("run");
  const Config cfg = test::short_run_config(
      out, 6, 2, {"train.log_every=1", "train.checkpoint_every=3", "train.keep_checkpoints=5"});
  const TrainSummary first = test::train_quietly(cfg);
  // As if killed after logging step 6 but before its checkpoint: steps 4..6 run and log again.
  fs::remove(first.final_checkpoint);
  test::train_quietly(cfg, "auto");
  const YAML::Node read = read_with_tensorboard(python, tensorboard_dir(out));
  expect_intact_files(read, 2);
  const Scalars jsonl = scalars_of_metrics_jsonl(out);
  EXPECT_EQ(jsonl.at("train/loss").size(), 6u);
  expect_same_scalars(scalars_of_tensorboard(read), jsonl);  // the second run's values of 4..6
}

TEST(TensorBoard, ReaderRejectsACorruptedCrc) {
  RF_TEST_PYTHON_OR_SKIP(python);
  const std::string dir = test::fresh_dir("tb");
  const std::string path = dir + "/" + event_file_name(1, "host");
  {
    TensorBoardWriter writer(path);
    for (int64_t step = 1; step <= 3; ++step)
      writer.write_scalars(step, {{"train/loss", 1.0f / static_cast<float>(step)}});
  }
  const YAML::Node intact = read_with_tensorboard(python, dir);
  expect_intact_files(intact, 1);
  EXPECT_EQ(intact["files"][0]["records"].as<int>(), 4);
  EXPECT_EQ(intact["scalars"].size(), 3u);

  // Flip one bit of the last record's data: its CRC no longer matches.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[bytes.size() - 6] ^= 0x01;  // a byte of the float, before the 4-byte data CRC
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  const YAML::Node corrupted = read_with_tensorboard(python, dir);
  const YAML::Node f = corrupted["files"][0];
  ASSERT_FALSE(f["error"].IsNull());
  EXPECT_NE(f["error"].as<std::string>().find("crc32"), std::string::npos);
  EXPECT_EQ(f["records"].as<int>(), 3);
  EXPECT_EQ(corrupted["scalars"].size(), 2u);
}

}  // namespace
}  // namespace rf
