// TensorBoard event files, written without TensorFlow or protobuf: the few Event fields a scalar
// log needs are encoded by hand, each in a TFRecord frame (length, masked CRC-32C of the length,
// data, masked CRC-32C of the data). TensorBoard reads every such file in a folder, in name order.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace rf {

// One value of a Summary: TensorBoard plots it under `tag` ("train/loss") at the event's step.
struct TaggedScalar {
  std::string tag;
  float value = 0.0f;
};

// The TFRecord frame around one serialized record.
std::string frame_record(const std::string& data);

// Event{wall_time, file_version: "brain.Event:2"}: the first record of every event file.
std::string file_version_event(double wall_time);
// Event{wall_time, step, summary: {value: [{tag, simple_value}, ...]}}.
std::string scalars_event(double wall_time, int64_t step, const std::vector<TaggedScalar>& values);
// Event{wall_time, step, session_log: {status: START}}: TensorBoard drops what files read before
// this one logged at `step` or later (a run restarted from a checkpoint logs those steps again).
std::string session_start_event(double wall_time, int64_t step);

// "events.out.tfevents.<unix time>.<host>", the name TensorBoard looks for.
std::string event_file_name(int64_t unix_time, const std::string& host);

// Appends framed events to one file, flushed after each so a killed run leaves a readable file.
// A failed write prints one warning and ends the writing (training goes on).
class TensorBoardWriter {
 public:
  TensorBoardWriter() = default;  // writes nothing (ranks other than 0, tensorboard off)
  // Creates `path` (an error if it cannot) and writes the file_version record.
  explicit TensorBoardWriter(const std::string& path);
  // A new event file in `dir` (created if missing), named for now and this host; a name already
  // taken (a restart within the same second) gets a suffix that sorts after it.
  static TensorBoardWriter create_in(const std::string& dir);

  void write_scalars(int64_t step, const std::vector<TaggedScalar>& values);
  void write_session_start(int64_t step);
  bool is_open() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);

  struct CloseFile {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, CloseFile> file_;
  std::string path_;
};

}  // namespace rf
