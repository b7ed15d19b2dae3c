// The CUDA thread model on the CPU, for testing the project's own CUDA kernels (kernels/cuda/*.cuh)
// where there is no GPU: a header to include before them that makes them plain C++, and a launch
// policy (tuned_backend.cuh) that runs a grid block by block, each block's threads as fibers on
// the calling thread. A thread runs until it reaches __syncthreads, __syncwarp or a warp shuffle;
// when every thread of its block (or lane of its warp) waits at a barrier of that kind, they go on.
// Shared memory (__shared__) is one static per kernel, which the blocks use in turn.
//
// What it checks beyond the arithmetic, each a thrown rf::Error naming the block and thread:
//   - lanes of a warp at different kinds of warp operation (a shuffle and __syncwarp, two kinds or
//     widths of shuffle), or at a warp operation while others wait at __syncthreads or have
//     exited; threads of a block that pass different numbers of __syncthreads (some exit while
//     others wait);
//   - a shuffle with a partial mask or in a partial warp (a block size that is not a multiple of
//     32), a block over 1024 threads or over CUDA's limits per dimension, a launch from a kernel.
// Which barrier of the source a thread waits at is not compared (the compiler may copy a barrier
// call into both arms of a branch). It cannot see: timing, memory coalescing, bank conflicts,
// the limits of registers and shared memory, and races between threads that the order of the
// fibers happens to hide. Shared memory is one static per kernel, which the blocks use in turn;
// each variable the kernel marks RF_SHARED_UNDEFINED_AT_BLOCK_START (kernels/cuda/
// emulation_checks.cuh) is filled with 0xFF bytes (NaN floats) as each block starts, so that what
// a block reads before it writes spreads NaN into the results. The order is a setting
// (set_thread_order): threads that read what others write without a barrier between see other
// values in different orders, so a test can run them and compare.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

#include "base/error.h"

// --- the CUDA vocabulary, for the host compiler ------------------------------------------------
// (The kernels' `#pragma unroll` is nvcc's: files that include this one build with
// -Wno-unknown-pragmas, tests/CMakeLists.txt.) CUDA's names are reserved identifiers in C++;
// defining them is the point here.
// NOLINTBEGIN(clang-diagnostic-reserved-identifier, clang-diagnostic-reserved-macro-identifier)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define RF_SHARED_UNDEFINED_AT_BLOCK_START(name) \
  ::rf::emulated_cuda::shared_undefined_at_block_start(&(name), sizeof(name))

// (In namespace rf, where the kernels are: CUDA's own dim3 and uint3, which the tests also link
// with, are other types of the same names.)
namespace rf {
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) noexcept
      : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

// The running fiber's coordinates (set by the emulator before it resumes a fiber).
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;
}  // namespace rf

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);

namespace rf::emulated_cuda {

enum class ShuffleKind { kIndex, kDown, kXor };
// One lane's part in a warp shuffle of 8 bytes: returns the bits of the value it reads.
uint64_t shuffle_bits(unsigned mask, uint64_t bits, int operand, int width, ShuffleKind kind);

template <class T>
T shuffle(unsigned mask, T value, int operand, int width, ShuffleKind kind) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "a shuffle moves 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = shuffle_bits(mask, bits, operand, width, kind);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace rf::emulated_cuda

template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = rf::warpSize) {
  return rf::emulated_cuda::shuffle(mask, value, src_lane, width,
                                    rf::emulated_cuda::ShuffleKind::kIndex);
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = rf::warpSize) {
  return rf::emulated_cuda::shuffle(mask, value, static_cast<int>(delta), width,
                                    rf::emulated_cuda::ShuffleKind::kDown);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = rf::warpSize) {
  return rf::emulated_cuda::shuffle(mask, value, lane_mask, width,
                                    rf::emulated_cuda::ShuffleKind::kXor);
}
// NOLINTEND(clang-diagnostic-reserved-identifier, clang-diagnostic-reserved-macro-identifier)

namespace rf::emulated_cuda {

// Fills a __shared__ variable with 0xFF bytes the first time a thread of a block reaches its
// mark, once per block (RF_SHARED_UNDEFINED_AT_BLOCK_START).
void shared_undefined_at_block_start(void* at, size_t bytes);

// The order in which a block's fibers run between barriers. kAscending and kDescending run
// every warp's lanes to their next warp barrier or shuffle in turn, so a block's warps go nearly
// in step; kWarpByWarp runs each warp alone (in ascending order) up to its next __syncthreads, so
// that a warp which should wait for another at a missing block barrier reads or overwrites what
// the other has not yet written or read. kDescending and kWarpByWarp also run a grid's blocks last
// to first: a GPU runs them in no set order, so a block that reads what another block of the same
// launch writes sees other values than in ascending order.
enum class ThreadOrder { kAscending, kDescending, kWarpByWarp };
void set_thread_order(ThreadOrder order);

// Runs `thread` once per thread of each block of the grid, a block at a time; throws rf::Error on
// any of the faults above.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread);

// The number of blocks and thread switches run so far (for the tests' own checks).
struct Counters {
  int64_t blocks = 0, switches = 0;
};
Counters counters();

// Launches of each kernel so far on this thread, by its address.
int64_t launches_of(const void* kernel);
void count_launch_of(const void* kernel);

// The launch policy of kernels/cuda/tuned_backend.cuh.
struct Launch {
  template <class... Params, class... Args>
  static void kernel(void (*k)(Params...), dim3 grid, dim3 block, const Args&... args) {
    count_launch_of(reinterpret_cast<const void*>(k));
    // Each launch takes its arguments by value, as a kernel launch does.
    const std::tuple<std::decay_t<Params>...> values(args...);
    run_grid(grid, block, [&] { std::apply(k, values); });
  }
  static int multiprocessors() { return 132; }  // an H100 SXM's
};

}  // namespace rf::emulated_cuda
