// The Tiny Shakespeare text (about 1 MB) that the tests on real text read: RF_TINYSHAKESPEARE
// names the file; without it, the copy in the data folder next to the repository. A test that
// finds neither is skipped with how to provide the file, except in CI, where it fails.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/test_python.h"

namespace rf::test {

constexpr const char* kCorpusVariable = "RF_TINYSHAKESPEARE";

// Where the corpus should be: RF_TINYSHAKESPEARE when set, else the default location.
inline std::string tiny_shakespeare_path() {
  const char* named = std::getenv(kCorpusVariable);
  if (named && *named) return named;
  return RF_SOURCE_DIR "/../shared/data/tinyshakespeare.txt";
}

// Why the corpus cannot be used ("" when it can).
inline std::string tiny_shakespeare_problem() {
  const std::string path = tiny_shakespeare_path();
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return "";
  return std::string("Tiny Shakespeare not found at '") + path +
         "': download it (https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
         "tinyshakespeare/input.txt) and export " +
         kCorpusVariable + "=/path/to/input.txt";
}

// Whether a missing corpus fails the test rather than skipping it: in CI, and when the variable
// names a file that is not there (a mistyped path should not pass as a skip).
inline bool missing_tiny_shakespeare_is_a_failure() {
  const char* named = std::getenv(kCorpusVariable);
  return running_in_ci() || (named && *named);
}

}  // namespace rf::test

// Declares `const std::string var`, the corpus path; skips the test (fails it in CI, or when
// RF_TINYSHAKESPEARE names a missing file) when there is no corpus there.
#define RF_TINY_SHAKESPEARE_OR_SKIP(var)                                                      \
  const std::string var = ::rf::test::tiny_shakespeare_path();                                \
  if (const std::string problem = ::rf::test::tiny_shakespeare_problem(); !problem.empty()) { \
    if (::rf::test::missing_tiny_shakespeare_is_a_failure()) FAIL() << problem;               \
    GTEST_SKIP() << problem;                                                                  \
  }
