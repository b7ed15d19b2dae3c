// The CPU executor's host memory: its limit (what the machine had free, shared by the ranks on
// the host) and where its buffers start (huge pages for large ones).
#include "kernels/cpu/host_memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/executor.h"
#include "tests/test_python.h"

// Declares `const size_t var`, the memory this machine has free; without /proc/meminfo (not
// Linux) the test is skipped, except in CI, which runs on Linux, where that fails.
#define RF_HOST_MEMORY_OR_SKIP(var)                                                  \
  const size_t var = ::rf::cpu::host_memory_available();                             \
  if (var == std::numeric_limits<size_t>::max()) {                                   \
    if (::rf::test::running_in_ci()) FAIL() << "/proc/meminfo cannot be read in CI"; \
    GTEST_SKIP() << "no /proc/meminfo here";                                         \
  }

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

}  // namespace
}  // namespace rf
