// The Python interpreter of the interoperability tests (transformers, tensorboard): the virtual
// environment launch/python_env.sh sets up, named by RF_TEST_PYTHON (launch/test.sh exports it).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace rf::test {

inline std::string test_python() {
  const char* python = std::getenv("RF_TEST_PYTHON");
  return python ? python : "";
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) != "" && std::string(ci) != "false" && std::string(ci) != "0";
}

}  // namespace rf::test

// Declares `const std::string var`, the interpreter; without one the test is skipped with how to
// provide it, except in CI (CI=true), where it fails: there launch/test.sh must have set it up.
// (`var` is the name declared: it cannot take parentheses.)
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RF_TEST_PYTHON_OR_SKIP(var)                                               \
  const std::string var = ::rf::test::test_python();                              \
  if (var.empty()) {                                                              \
    if (::rf::test::running_in_ci()) FAIL() << "RF_TEST_PYTHON is not set in CI"; \
    GTEST_SKIP() << "RF_TEST_PYTHON is not set: run launch/test.sh, or export "   \
                    "RF_TEST_PYTHON=$(launch/python_env.sh) before ctest";        \
  }
// NOLINTEND(bugprone-macro-parentheses)
