// Helpers for tests that run whole trainings: a fresh temporary run directory, a tiny training
// config, and reading back a checkpoint's parameters.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/hdf5_io.h"
#include "tests/test_util.h"
#include "trainer/config.h"

namespace rf::test {

// A new empty directory under the test temp dir, unique per test.
inline std::string fresh_dir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "rf_tests" /
                                    (std::string(info->test_suite_name()) + "." + info->name()) /
                                    name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::vector<float> checkpoint_params(const std::string& path) {
  const Hdf5File f = Hdf5File::open_read(path);
  std::vector<float> p(static_cast<size_t>(f.dataset_length("params")));
  f.read("params", H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(p.size()), p.data());
  return p;
}

}  // namespace rf::test
