// Metrics as JSON lines (one object per logged step or evaluation) in <out_dir>/metrics.jsonl,
// written by rank 0 only.
#pragma once

#include <cstdint>
#include <fstream>
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
  JsonLine& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonLine& add(const Metric& metric);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

std::string json_escape(const std::string& s);

class MetricsLog {
 public:
  MetricsLog() = default;
  // Truncates unless `append` (a resumed run continues its file).
  MetricsLog(const std::string& path, bool append);
  // Flushed per line; a failed write prints one warning and ends the writing (training goes on).
  void write(const JsonLine& line);
  bool is_open() const { return out_.is_open(); }

 private:
  std::ofstream out_;
  std::string path_;
};

}  // namespace rf
