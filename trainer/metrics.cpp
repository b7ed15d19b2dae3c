#include "trainer/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <utility>

#include "base/error.h"

namespace rf {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

void JsonLine::key(const std::string& k) {
  if (!body_.empty()) body_ += ", ";
  body_ += "\"" + json_escape(k) + "\": ";
}

JsonLine& JsonLine::add(const std::string& k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";  // JSON has no NaN or infinity
  } else {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.8g", value);
    body_ += buf;
  }
  return *this;
}

JsonLine& JsonLine::add(const std::string& k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

JsonLine& JsonLine::add_flag(const std::string& k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

JsonLine& JsonLine::add(const Metric& metric) {
  if (metric.is_count) return add(metric.name, static_cast<int64_t>(metric.value));
  return add(metric.name, metric.value);
}

JsonLine& JsonLine::add(const std::string& k, const std::string& value) {
  key(k);
  body_ += "\"" + json_escape(value) + "\"";
  return *this;
}

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  fd_ =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
  if (fd_ < 0) fail("cannot write metrics file '", path, "': ", std::strerror(errno));
  struct stat info;
  if (::fstat(fd_, &info) != 0) {
    const int stat_errno = errno;
    ::close(fd_);
    fd_ = -1;
    fail("cannot read the size of metrics file '", path, "': ", std::strerror(stat_errno));
  }
  size_ = static_cast<int64_t>(info.st_size);
  // A file that ends inside a line (a crash or a full disk cut it short) gets its newline first:
  // the next line was appended to the partial one, and neither parsed.
  char last = '\n';
  if (append && size_ > 0 && ::pread(fd_, &last, 1, size_ - 1) == 1 && last != '\n') {
    ends_inside_a_line_ = true;  // (ended by the first write: it may fail now, the disk full)
    std::cerr << "note: metrics file '" << path << "' ends inside a line (cut short by a "
              << "crash?); it is ended there, and the next lines start on their own" << std::endl;
  }
}

MetricsLog::MetricsLog(MetricsLog&& other) noexcept {
  *this = std::move(other);
}

MetricsLog& MetricsLog::operator=(MetricsLog&& other) noexcept {
  std::swap(fd_, other.fd_);
  std::swap(path_, other.path_);
  std::swap(size_, other.size_);
  std::swap(dropped_, other.dropped_);
  std::swap(warned_, other.warned_);
  std::swap(ends_inside_a_line_, other.ends_inside_a_line_);
  return *this;
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::warn_once(const std::string& what) {
  if (warned_) return;
  warned_ = true;
  std::cerr << "warning: " << what << "; metrics lines are dropped while writing fails (the "
            << "lines already written are intact); training continues" << std::endl;
}

bool MetricsLog::write(const JsonLine& line) {
  if (fd_ < 0) return false;
  const std::string text = (ends_inside_a_line_ ? "\n" : "") + line.str() + '\n';
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + written, text.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const std::string reason = n < 0 ? std::strerror(errno) : "the write made no progress";
    ++dropped_;
    // Cut a part-written line back off, so the next line starts on a line of its own. Shrinking a
    // file needs no space.
    if (written > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      // The partial line stays at the end; appending more would bury it mid-file.
      std::cerr << "warning: cannot write metrics file '" << path_ << "': " << reason
                << ", nor cut off its partial last line: " << std::strerror(errno)
                << "; no more metrics are written in this run" << std::endl;
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    warn_once("cannot write metrics file '" + path_ + "': " + reason);
    return false;
  }
  size_ += static_cast<int64_t>(text.size());
  ends_inside_a_line_ = false;
  return true;
}

}  // namespace rf
