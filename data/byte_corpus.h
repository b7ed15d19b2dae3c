// A file of bytes (text or binary) as token windows: every byte is a token (vocabulary 256).
// The file is split into a training part and a validation part (the tail, or a separate file);
// windows of seq_len + 1 tokens start every seq_len bytes of a part.
#pragma once

#include <memory>
#include <vector>

#include "data/window_source.h"

namespace rf {

class ByteCorpus final : public WindowSource {
 public:
  // The part [begin_fraction, end_fraction) of `path`, e.g. [0, 0.9) for training. `role` names
  // the config key the file came from, for error messages.
  ByteCorpus(const std::string& path, const std::string& role, int64_t seq_len,
             double begin_fraction, double end_fraction);

  int64_t num_windows() const override { return num_windows_; }
  int64_t window_length() const override { return seq_len_ + 1; }
  void read(int64_t index, int32_t* out) const override;
  std::string describe() const override;
  bool consecutive() const override { return true; }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::string path_;
  int64_t seq_len_;
  std::vector<uint8_t> bytes_;  // the part in use
  int64_t num_windows_;
};

// Reads a whole file; fails with a message naming the file and the config key.
std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& role);

}  // namespace rf
