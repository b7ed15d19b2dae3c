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

}  // namespace rf

#define RF_CHECK(cond, ...)                                                           \
  do {                                                                                \
    if (!(cond))                                                                      \
      ::rf::fail("internal check failed: " #cond " (", __FILE__, ":", __LINE__, ") ", \
                 ##__VA_ARGS__);                                                      \
  } while (0)
