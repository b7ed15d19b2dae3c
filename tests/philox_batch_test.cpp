// The host's runs of Philox numbers drawn side by side in SIMD registers (base/philox_batch.h)
// against the same numbers drawn one at a time (RngStream::bits), bit for bit. Built once with the
// project's -march and, so that every path is tested on any machine that runs the tests, once for
// AVX2 and once for plain x86-64 (tests/CMakeLists.txt; RF_EXPECTED_ISA names the path such a
// build must take).
#include "base/philox_batch.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/philox.h"

namespace rf {
namespace {

// Whether this CPU can run this build (the AVX2 build on a CPU without AVX2 cannot).
bool cpu_runs_this_build() {
#if defined(RF_EXPECTED_ISA)
  if (std::string(RF_EXPECTED_ISA) == "avx2") return __builtin_cpu_supports("avx2");
#endif
  return true;
}

#if defined(RF_EXPECTED_ISA)
TEST(PhiloxBatch, ThisBuildTakesTheExpectedPath) {
  EXPECT_EQ(std::string(philox_batch_isa()), RF_EXPECTED_ISA);
}
#endif

// Runs drawn side by side in SIMD registers (philox_stream_words) equal the same elements drawn one
// at a time, bit for bit: from every alignment within a block and a pass, for lengths around a
// pass's 16 (AVX-512) or 8 (AVX2) blocks, across the block index's 32-bit and 48-bit wraps, for
// every counter word (head, example, step, the step read through step_source), and nothing is
// written past the run.
TEST(PhiloxBatch, RunsDrawnSideBySideEqualTheElementsDrawnOneAtATime) {
  if (!cpu_runs_this_build()) GTEST_SKIP() << "this CPU has no AVX2";
  SCOPED_TRACE(std::string("philox_stream_words path: ") + philox_batch_isa());
  const uint32_t step_in_memory = 77;
  std::vector<RngStream> streams = {
      make_rng_stream(1, RngPurpose::kAttentionDropout, 0, 0, 0, 0),
      make_rng_stream(9, RngPurpose::kFeedForwardDropout, 5, 123, 4, 3),
      make_rng_stream(2, RngPurpose::kRotation, 1, 7, 0xFFFFFFFFu, 0xFFFF)};
  streams.push_back(streams[1]);
  streams.back().step_source = &step_in_memory;
  const uint64_t wrap32 = (uint64_t{1} << 32) * 4, wrap48 = (uint64_t{1} << 48) * 4;
  int64_t compared = 0;
  for (const RngStream& stream : streams) {
    for (uint64_t base : {uint64_t{0}, uint64_t{4096}, wrap32 - 130, wrap48 - 70}) {
      for (uint64_t offset = 0; offset < 9; ++offset) {
        for (int64_t n : {0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 127, 128, 129, 300}) {
          const uint64_t first = base + offset;
          std::vector<uint32_t> words(static_cast<size_t>(n) + 2, 0xDEADBEEFu);
          philox_stream_words(stream, first, n, words.data() + 1);
          ASSERT_EQ(words.front(), 0xDEADBEEFu) << "written before the run";
          ASSERT_EQ(words.back(), 0xDEADBEEFu) << "written past the run, n " << n;
          for (int64_t k = 0; k < n; ++k, ++compared)
            ASSERT_EQ(words[static_cast<size_t>(k) + 1], stream.bits(first + k))
                << "element " << first + k << " (run from " << first << ", n " << n << ", head "
                << stream.head << ", step " << stream.step_word() << ")";
        }
      }
    }
  }
  EXPECT_GT(compared, 100000);
}

}  // namespace
}  // namespace rf
