// Error type and check macros. User-facing problems (bad config, data, checkpoint, command line)
// throw rf::Error with a one-line message; the command catches it, prints it, and exits non-zero.
// RF_CHECK is for internal invariants and adds file:line so a bug report points at the code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace rf {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A string of stream-able parts: concat("bad value ", x, " in ", file).
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// Throws Error with the message of those parts: fail("bad value ", x, " in ", file).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(concat(parts...));
}

// `message` as one printable line: control characters (a newline from a --set value, bytes of a
// binary file quoted in a YAML error) written as \n, \t or \xNN; UTF-8 text kept.
inline std::string one_line(const std::string& message) {
  std::string out;
  out.reserve(message.size());
  for (const char c : message) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

}  // namespace rf

#define RF_CHECK(cond, ...)                                                           \
  do {                                                                                \
    if (!(cond))                                                                      \
      ::rf::fail("internal check failed: " #cond " (", __FILE__, ":", __LINE__, ") ", \
                 ##__VA_ARGS__);                                                      \
  } while (0)
