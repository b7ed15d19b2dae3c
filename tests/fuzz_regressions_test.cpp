// The committed fuzz inputs in the normal suite: every seed (fuzz/corpus/<target>/) and every input
// that once found a bug (fuzz/regressions/<target>/) goes through its fuzz target's reader
// (fuzz/targets.h), which aborts the test on anything but success or a user-facing rf::Error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>

#include "fuzz/targets.h"

namespace rf {
namespace fuzz {

// Names the target in test listings ("Targets/FuzzInputs.../config"). Without it GoogleTest
// prints the struct's bytes, pointers included, and ctest's names for these tests changed from
// build to build.
// (static rather than in an unnamed namespace: GoogleTest finds PrintTo by argument-dependent
// lookup in the type's namespace, which does not look into an unnamed one)
// NOLINTNEXTLINE(misc-use-anonymous-namespace)
static void PrintTo(const Target& target, std::ostream* out) {
  *out << target.name;
}

}  // namespace fuzz
namespace {
namespace fs = std::filesystem;

// Reads every file of `dir` (none when it does not exist) through `target`; returns the count.
int replay(const fuzz::Target& target, const fs::path& dir) {
  int inputs = 0;
  if (!fs::is_directory(dir)) return 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    target.read(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++inputs;
  }
  return inputs;
}

class FuzzInputs : public ::testing::TestWithParam<fuzz::Target> {};

TEST_P(FuzzInputs, EverySeedAndRegressionInputEndsInSuccessOrAnError) {
  const fs::path fuzz_dir = fs::path(RF_SOURCE_DIR) / "fuzz";
  EXPECT_GT(replay(GetParam(), fuzz_dir / "corpus" / GetParam().name), 0)
      << "no seeds in fuzz/corpus/" << GetParam().name;
  replay(GetParam(), fuzz_dir / "regressions" / GetParam().name);
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzInputs, ::testing::ValuesIn(fuzz::targets()));

}  // namespace
}  // namespace rf
