// A source of training or validation windows: window i is seq_len + 1 consecutive tokens (the
// inputs are the first seq_len, the targets the last seq_len). Sources know nothing of the model.
#pragma once

#include <cstdint>
#include <string>

namespace rf {

class WindowSource {
 public:
  virtual ~WindowSource() = default;
  // Windows per epoch; 0 means an unbounded stream (synthetic tasks).
  virtual int64_t num_windows() const = 0;
  virtual int64_t window_length() const = 0;  // seq_len + 1
  // Writes window `index` (< num_windows when bounded) to out[0 .. window_length).
  virtual void read(int64_t index, int32_t* out) const = 0;
  virtual std::string describe() const = 0;
  // Whether window i + 1 continues the text of window i (stride seq_len), so that consecutive
  // windows are consecutive segments of a stream (Transformer-XL's recurrence needs this).
  virtual bool consecutive() const = 0;
};

}  // namespace rf
