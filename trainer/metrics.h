// Metrics as JSON lines (one object per logged step or evaluation) in <out_dir>/metrics.jsonl,
// written by rank 0 only.
#pragma once

#include <cstdint>
#include <string>

namespace rf {

// A named value of one logged step or evaluation.
struct Metric {
  std::string name;
  double value = 0.0;
  bool is_count = false;  // an integer (a token count): JSON prints it exactly
};

inline Metric count_metric(const std::string& name, int64_t count) {
  return {name, static_cast<double>(count), true};
}

// Builds one flat JSON object.
class JsonLine {
 public:
  JsonLine& add(const std::string& key, double value);
  JsonLine& add(const std::string& key, int64_t value);
  JsonLine& add(const std::string& key, const std::string& value);
  JsonLine& add(const Metric& metric);
  JsonLine& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  // true or false (named apart: an overload for bool would make add(key, an int) ambiguous).
  JsonLine& add_flag(const std::string& key, bool value);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

std::string json_escape(const std::string& s);

// Appends whole lines or nothing: a write that fails part-way (a full disk) is cut back to the
// end of the last complete line, so what was written stays valid JSON lines. Training does not
// stop for metrics: the first failure is one warning on stderr, later lines are tried again.
class MetricsLog {
 public:
  MetricsLog() = default;
  // Truncates unless `append` (a resumed run continues its file).
  MetricsLog(const std::string& path, bool append);
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog();

  // Returns whether the line was written.
  bool write(const JsonLine& line);
  bool is_open() const { return fd_ >= 0; }
  int64_t lines_dropped() const { return dropped_; }

 private:
  void warn_once(const std::string& what);
  int fd_ = -1;
  std::string path_;
  int64_t size_ = 0;  // bytes of complete lines in the file
  int64_t dropped_ = 0;
  bool warned_ = false;
  bool ends_inside_a_line_ = false;  // the file's last line is partial: the next write ends it
};

}  // namespace rf
