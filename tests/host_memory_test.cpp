// The CPU executor's host memory: its limit (what the machine had free, shared by the ranks on
// the host), where its buffers start (huge pages for large ones), and its copies and zero fills
// (split over the threads when large).
#include "kernels/cpu/host_memory.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/parallel_memory.h"
#include "kernels/executor.h"
#include "tests/test_python.h"

// Declares `const size_t var`, the memory this machine has free; without /proc/meminfo (not
// Linux) the test is skipped, except in CI, which runs on Linux, where that fails.
// (`var` is the name declared: it cannot take parentheses.)
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RF_HOST_MEMORY_OR_SKIP(var)                                                  \
  const size_t var = ::rf::cpu::host_memory_available();                             \
  if (var == std::numeric_limits<size_t>::max()) {                                   \
    if (::rf::test::running_in_ci()) FAIL() << "/proc/meminfo cannot be read in CI"; \
    GTEST_SKIP() << "no /proc/meminfo here";                                         \
  }
// NOLINTEND(bugprone-macro-parentheses)

namespace rf {
namespace {

// What asking an executor for `count` buffers of `bytes` each (never touched) gave: how many it
// granted before refusing one, and the refusal's message. Releases them all.
struct Allocations {
  size_t granted = 0;
  std::string error;
};
Allocations try_allocations(Executor& ex, size_t bytes, int count) {
  std::vector<void*> held;
  Allocations result;
  try {
    for (int i = 0; i < count; ++i) held.push_back(ex.allocate(bytes));
  } catch (const Error& e) {
    result.error = e.what();
  }
  for (void* p : held) ex.release(p, bytes);
  result.granted = held.size();
  return result;
}

// Linux grants more memory than it has and kills the process when it touches the pages (exit 137,
// no message). The CPU executor refuses buffers beyond what the machine had instead, with an
// error that says what to change.
TEST(CpuExecutor, RefusesBuffersBeyondTheMachinesMemoryWithAMessage) {
  RF_HOST_MEMORY_OR_SKIP(available);
  const std::unique_ptr<Executor> ex = make_cpu_executor(1);
  const size_t piece = available / 4 + (size_t{1} << 20);
  const Allocations got = try_allocations(*ex, piece, 5);
  EXPECT_NE(got.error.find("out of host memory: this process's buffers would take"),
            std::string::npos)
      << "got: '" << got.error << "' after " << got.granted << " pieces of " << piece << " bytes";
  EXPECT_LE(got.granted, 4u);
  EXPECT_EQ(ex->bytes_in_use(), 0u);
}

// Ranks on one host each see the whole machine free when they start; each takes an equal share,
// so that together they cannot pass what it has.
TEST(CpuExecutor, RanksOnOneHostEachTakeAShareOfItsMemory) {
  RF_HOST_MEMORY_OR_SKIP(available);
  const size_t piece = available / 5;  // one fits a quarter of 7/8 of it, two do not
  const Allocations alone =
      try_allocations(*make_cpu_executor(1, GemmPrecision::kFp32, 1), piece, 2);
  EXPECT_EQ(alone.granted, 2u) << alone.error;
  const Allocations shared =
      try_allocations(*make_cpu_executor(1, GemmPrecision::kFp32, 4), piece, 2);
  EXPECT_EQ(shared.granted, 1u);
  EXPECT_NE(shared.error.find("shared by the 4 ranks on this host"), std::string::npos)
      << "got: '" << shared.error << "'";
}

// Buffers from 2 MiB on start on a huge-page boundary (and ask for huge pages), so that the
// attention's scattered gathers do not miss the TLB on most rows; smaller ones are 64-byte
// aligned for the vector loads.
TEST(CpuExecutor, LargeBuffersStartOnHugePageBoundaries) {
  const std::unique_ptr<Executor> ex = make_cpu_executor(1);
  constexpr size_t kHugePage = cpu::kHugePageBytes;
  for (const size_t bytes : {kHugePage, 3 * kHugePage + 12345}) {
    void* p = ex->allocate(bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePage, 0u) << bytes << " bytes";
    std::memset(p, 1, bytes);  // (the whole buffer is usable)
    ex->release(p, bytes);
  }
  for (const size_t bytes : {size_t{0}, size_t{1}, size_t{1000}, kHugePage - 1}) {
    void* p = ex->allocate(bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes << " bytes";
    ex->release(p, bytes);
  }
}

// Copies and zero fills split over the threads write what memmove and memset write, for sizes
// around the split's threshold and odd ones, on 1 to 8 threads, and regions that overlap (either
// way) still copy as memmove does.
TEST(ParallelMemory, CopiesAndFillsEqualMemmoveAndMemset) {
  const int threads_before = omp_get_max_threads();
  const size_t t = cpu::kParallelMemoryBytes;
  for (int threads : {1, 2, 3, 8}) {
    omp_set_num_threads(threads);
    for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, t - 1, t, t + 13, 3 * t + 5}) {
      std::vector<unsigned char> src(bytes + 64), dst(bytes + 64, 0xAB), want(bytes + 64, 0xAB);
      std::iota(src.begin(), src.end(), static_cast<unsigned char>(bytes));
      cpu::copy_bytes(dst.data() + 3, src.data() + 1, bytes);
      std::memmove(want.data() + 3, src.data() + 1, bytes);
      EXPECT_EQ(dst, want) << bytes << " bytes copied, " << threads << " threads";
      cpu::zero_bytes(dst.data() + 5, bytes);
      std::memset(want.data() + 5, 0, bytes);
      EXPECT_EQ(dst, want) << bytes << " bytes zeroed, " << threads << " threads";
      for (size_t shift : {size_t{1}, size_t{4096}}) {  // overlapping: forward, then backward
        std::vector<unsigned char> a(src.begin(), src.end());
        a.resize(bytes + 64 + shift);
        std::vector<unsigned char> b(a);
        cpu::copy_bytes(a.data() + shift, a.data(), bytes);
        std::memmove(b.data() + shift, b.data(), bytes);
        cpu::copy_bytes(a.data(), a.data() + shift, bytes);
        std::memmove(b.data(), b.data() + shift, bytes);
        EXPECT_EQ(a, b) << bytes << " bytes overlapping by " << shift << ", " << threads;
      }
    }
  }
  omp_set_num_threads(threads_before);
}

}  // namespace
}  // namespace rf
