// The project's CUDA kernels run on the CPU (tests/emulated_cuda/): first the emulation's own
// rules (shuffles as CUDA defines them, barriers, the faults it must report, shared memory that
// starts each block undefined), then every op of `reformer selftest` and the training micro-step
// on the emulated CUDA executor against the CPU reference, in three orders of the threads, and
// the reductions bit for bit; the tensor cores' emulated product against the PTX fragment layout.
#include "tests/emulated_cuda/emulated_cuda.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "kernels/executor.h"
#include "kernels/kernel_ops.h"
#include "kernels/reductions.h"
#include "kernels/selftest/op_checks.h"
#include "tests/device_matches_cpu.h"
#include "tests/emulated_cuda/emulated_cuda_executor.h"
#include "tests/test_util.h"
#include "trainer/selftest.h"

// (As in emulated_cuda_executor.cpp: the CUDA library's build has its own rf::cuda.)
#define cuda cuda_on_cpu
#include "kernels/cuda/warp_mma.cuh"
#undef cuda

namespace rf {
namespace {

using emulated_cuda::Launch;
using emulated_cuda::ThreadOrder;

// Restores the ascending order when a test ends.
struct OrderScope {
  explicit OrderScope(ThreadOrder order) { emulated_cuda::set_thread_order(order); }
  ~OrderScope() { emulated_cuda::set_thread_order(ThreadOrder::kAscending); }
};

// --- the emulation's rules, on small kernels of the tests' own -----------------------------------

constexpr size_t kShuffles = 8;

// Each lane's reads of its warp: index (a fixed lane, and modulo the width), down and xor, over
// the whole warp and over segments of 8.
__global__ void shuffle_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const int value = 100 * warp + lane;
  int* o = out + threadIdx.x * kShuffles;
  o[0] = __shfl_sync(0xffffffffu, value, 3);
  o[1] = __shfl_sync(0xffffffffu, value, 35);  // modulo 32: lane 3
  o[2] = __shfl_down_sync(0xffffffffu, value, 5);
  o[3] = __shfl_xor_sync(0xffffffffu, value, 6);
  o[4] = __shfl_down_sync(0xffffffffu, value, 3, 8);
  o[5] = __shfl_sync(0xffffffffu, value, 9, 8);      // modulo 8: lane 1 of its segment
  o[6] = __shfl_xor_sync(0xffffffffu, value, 8, 8);  // an earlier segment's lane, or its own
  o[7] = __shfl_down_sync(0xffffffffu, value, 33);   // 5 bits of the delta: 1
}

TEST(EmulatedCuda, ShufflesReadTheLanesCudaDefines) {
  std::vector<int> out(64 * kShuffles, -1);
  Launch::kernel(shuffle_kernel, dim3(1), dim3(64), out.data());
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, base = 100 * (t / 32), seg = lane / 8 * 8, within = lane % 8;
    const int* o = out.data() + t * kShuffles;
    EXPECT_EQ(o[0], base + 3) << t;
    EXPECT_EQ(o[1], base + 3) << t;
    EXPECT_EQ(o[2], base + (lane + 5 < 32 ? lane + 5 : lane)) << t;
    EXPECT_EQ(o[3], base + (lane ^ 6)) << t;
    EXPECT_EQ(o[4], base + seg + (within + 3 < 8 ? within + 3 : within)) << t;
    EXPECT_EQ(o[5], base + seg + 1) << t;
    EXPECT_EQ(o[6], base + ((lane ^ 8) < seg + 8 ? lane ^ 8 : lane)) << t;
    EXPECT_EQ(o[7], base + (lane + 1 < 32 ? lane + 1 : lane)) << t;
  }
}

// Thread t writes slot t of shared memory and reads slot t + 1 (of another warp at t = 31, of
// itself never): with the barrier every read sees the write; without it, what a read sees
// depends on which thread ran first, which the two orders show.
template <bool kBarrier>
__global__ void neighbour_kernel(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) + 1000 * static_cast<int>(blockIdx.x);
  if (kBarrier) __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 1) % 64];
  if (kBarrier) __syncthreads();  // (the next block writes the same static)
}

std::vector<int> neighbours(bool barrier, ThreadOrder order) {
  const OrderScope scope(order);
  std::vector<int> out(size_t{2} * 64, -1);
  Launch::kernel(barrier ? neighbour_kernel<true> : neighbour_kernel<false>, dim3(2), dim3(64),
                 out.data());
  return out;
}

// What neighbour_kernel writes with its barriers.
std::vector<int> neighbours_seen() {
  std::vector<int> want(size_t{2} * 64);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) want[b * 64 + t] = (t + 1) % 64 + 1000 * b;
  return want;
}

TEST(EmulatedCuda, BarriersOrderSharedMemoryAndTheOrdersExposeAMissingOne) {
  const std::vector<int> want = neighbours_seen();
  EXPECT_EQ(neighbours(true, ThreadOrder::kAscending), want);
  EXPECT_EQ(neighbours(true, ThreadOrder::kDescending), want);
  EXPECT_NE(neighbours(false, ThreadOrder::kAscending),
            neighbours(false, ThreadOrder::kDescending));
}

// Thread t writes slot t, meets its warp (a __syncwarp, as the kernels' shuffles and tensor-core
// products do) and reads the other warp's slot t + 32: without __syncthreads, warps that go in
// step hide the race, and warps run one at a time show it.
template <bool kBarrier>
__global__ void other_warp_kernel(int* out) {
  __shared__ int slots[64];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) + 1000 * static_cast<int>(blockIdx.x);
  __syncwarp();
  if (kBarrier) __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 32) % 64];
  __syncthreads();  // (the next block writes the same static)
}

std::vector<int> other_warps(bool barrier, ThreadOrder order) {
  const OrderScope scope(order);
  std::vector<int> out(size_t{2} * 64, -1);
  Launch::kernel(barrier ? other_warp_kernel<true> : other_warp_kernel<false>, dim3(2), dim3(64),
                 out.data());
  return out;
}

TEST(EmulatedCuda, WarpsRunOneAtATimeExposeAMissingBarrierBetweenWarps) {
  std::vector<int> want(size_t{2} * 64);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) want[b * 64 + t] = (t + 32) % 64 + 1000 * b;
  for (ThreadOrder order :
       {ThreadOrder::kAscending, ThreadOrder::kDescending, ThreadOrder::kWarpByWarp})
    EXPECT_EQ(other_warps(true, order), want);
  EXPECT_EQ(other_warps(false, ThreadOrder::kAscending), want);  // (hidden)
  EXPECT_EQ(other_warps(false, ThreadOrder::kDescending), want);
  EXPECT_NE(other_warps(false, ThreadOrder::kWarpByWarp), want);  // (shown)
}

// Block b reads the flag block b - 1 sets (no order between blocks on a GPU), then sets its own.
__global__ void previous_block_kernel(int* flags, int* seen) {
  const unsigned b = blockIdx.x;
  if (threadIdx.x != 0) return;
  seen[b] = b == 0 ? -1 : flags[b - 1];
  flags[b] = 1;
}

TEST(EmulatedCuda, OrdersButTheAscendingOneRunTheBlocksLastToFirst) {
  auto seen_in = [](ThreadOrder order) {
    const OrderScope scope(order);
    std::vector<int> flags(4, 0), seen(4, 0);
    Launch::kernel(previous_block_kernel, dim3(4), dim3(32), flags.data(), seen.data());
    return seen;
  };
  EXPECT_EQ(seen_in(ThreadOrder::kAscending), std::vector<int>({-1, 1, 1, 1}));
  EXPECT_EQ(seen_in(ThreadOrder::kDescending), std::vector<int>({-1, 0, 0, 0}));
  EXPECT_EQ(seen_in(ThreadOrder::kWarpByWarp), std::vector<int>({-1, 0, 0, 0}));
}

// Each warp w multiplies its A (16 x 16, row-major, at a + 256 w) by its B (16 x 8, row-major, at
// b + 128 w) and adds C (16 x 8 at c + 128 w) with the emulated mma.sync, each lane holding the
// elements the PTX ISA's fragment layout gives it (written out here, apart from the emulation's).
__global__ void mma_kernel(const float* a, const float* b, float* c) {
  const int64_t w = threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int g = lane / 4, q = lane % 4;
  const float* A = a + 256 * w;
  const float* B = b + 128 * w;
  float* C = c + 128 * w;
  const uint32_t fa[4] = {
      cuda_on_cpu::pack_bf16x2(A[g * 16 + 2 * q], A[g * 16 + 2 * q + 1]),
      cuda_on_cpu::pack_bf16x2(A[(g + 8) * 16 + 2 * q], A[(g + 8) * 16 + 2 * q + 1]),
      cuda_on_cpu::pack_bf16x2(A[g * 16 + 2 * q + 8], A[g * 16 + 2 * q + 9]),
      cuda_on_cpu::pack_bf16x2(A[(g + 8) * 16 + 2 * q + 8], A[(g + 8) * 16 + 2 * q + 9])};
  const uint32_t fb[2] = {cuda_on_cpu::pack_bf16x2(B[(2 * q) * 8 + g], B[(2 * q + 1) * 8 + g]),
                          cuda_on_cpu::pack_bf16x2(B[(2 * q + 8) * 8 + g], B[(2 * q + 9) * 8 + g])};
  float fc[4] = {C[g * 8 + 2 * q], C[g * 8 + 2 * q + 1], C[(g + 8) * 8 + 2 * q],
                 C[(g + 8) * 8 + 2 * q + 1]};
  cuda_on_cpu::mma_bf16_16x8x16(fc, fa, fb);
  C[g * 8 + 2 * q] = fc[0];
  C[g * 8 + 2 * q + 1] = fc[1];
  C[(g + 8) * 8 + 2 * q] = fc[2];
  C[(g + 8) * 8 + 2 * q + 1] = fc[3];
}

// Small integers: every product and sum is exact in bf16 and fp32, so any order gives the same
// bits.
TEST(EmulatedCuda, TensorCoreProductsFollowThePtxFragmentLayout) {
  std::vector<float> a(size_t{2} * 256), b(size_t{2} * 128), c(size_t{2} * 128),
      want(size_t{2} * 128);
  uint32_t state = 12345;
  auto small = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int>(state >> 28) - 8);  // -8 .. 7
  };
  for (float& x : a) x = small();
  for (float& x : b) x = small();
  for (float& x : c) x = small();
  for (int w = 0; w < 2; ++w)
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        float sum = c[128 * w + m * 8 + n];
        for (int k = 0; k < 16; ++k) sum += a[256 * w + m * 16 + k] * b[128 * w + k * 8 + n];
        want[128 * w + m * 8 + n] = sum;
      }
  for (ThreadOrder order :
       {ThreadOrder::kAscending, ThreadOrder::kDescending, ThreadOrder::kWarpByWarp}) {
    const OrderScope scope(order);
    std::vector<float> got = c;
    Launch::kernel(mma_kernel, dim3(1), dim3(64), a.data(), b.data(), got.data());
    EXPECT_EQ(got, want);
  }
}

// Even threads pass two barriers, odd ones one.
__global__ void divergent_barrier_kernel() {
  __syncthreads();
  if (threadIdx.x % 2 == 0) __syncthreads();
}

__global__ void exited_lane_kernel(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void mixed_wait_kernel(float* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  else
    __syncthreads();
}

__global__ void partial_warp_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void partial_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, 1.0f, 1);
}

__global__ void mixed_shuffles_kernel(float* out) {
  out[threadIdx.x] = threadIdx.x < 16 ? __shfl_xor_sync(0xffffffffu, 1.0f, 1)
                                      : __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

__global__ void bad_width_kernel(float* out) {
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1, 12);
}

__global__ void empty_kernel() {}

__global__ void nested_launch_kernel() {
  Launch::kernel(empty_kernel, dim3(1), dim3(32));
}

// A tensor-core B fragment (two 32-bit loads on a GPU) read one bf16 past a 4-byte boundary.
__global__ void misaligned_fragment_kernel(const uint16_t* tile, float* out) {
  const cuda_on_cpu::BFragment b = cuda_on_cpu::load_b_fragment(tile + 1);
  out[threadIdx.x] = static_cast<float>(b.r[0]);
}

__global__ void throwing_kernel() {
  if (threadIdx.x == 7) fail("thread 7 of a test kernel gave up");
  __syncthreads();
}

// Launches `kernel` on a grid of `grid` blocks of `block` threads with `args`, and expects an
// rf::Error whose message contains `fault`.
template <class... Params, class... Args>
void expect_fault(const std::string& fault, void (*kernel)(Params...), dim3 grid, dim3 block,
                  const Args&... args) {
  std::string message;
  try {
    Launch::kernel(kernel, grid, block, args...);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(fault), std::string::npos) << "wanted: " << fault << "\ngot: " << message;
}

TEST(EmulatedCuda, ReportsWhatIsUndefinedOnAGpu) {
  std::vector<float> out(64);
  float* o = out.data();
  expect_fault("thread (1,0,0) has exited while the rest of its block waits at __syncthreads",
               divergent_barrier_kernel, dim3(1), dim3(64));
  expect_fault("thread (5,0,0) has exited while its warp waits", exited_lane_kernel, dim3(1),
               dim3(32), o);
  expect_fault("waits at __syncthreads while its warp waits at a warp barrier", mixed_wait_kernel,
               dim3(1), dim3(32), o);
  expect_fault("in a warp of 8 threads", partial_warp_kernel, dim3(1), dim3(40), o);
  expect_fault("at most 1024", divergent_barrier_kernel, dim3(1), dim3(1025));
  expect_fault("partial mask", partial_mask_kernel, dim3(1), dim3(32), o);
  expect_fault("different kinds of warp barrier or shuffle", mixed_shuffles_kernel, dim3(1),
               dim3(32), o);
  expect_fault("width 12", bad_width_kernel, dim3(1), dim3(32), o);
  expect_fault("a launch from inside a kernel", nested_launch_kernel, dim3(1), dim3(32));
  expect_fault("y and z at most 65535", empty_kernel, dim3(1, 70000), dim3(32));
  expect_fault("at most 1024, 1024, 64", empty_kernel, dim3(1), dim3(1, 1, 65));
  expect_fault("thread 7 of a test kernel gave up", throwing_kernel, dim3(2), dim3(32));
  alignas(4) const uint16_t tile[32] = {};
  expect_fault("a GPU faults on it (misaligned address)", misaligned_fragment_kernel, dim3(1),
               dim3(32), tile, o);
  // (The same read where a GPU can make it: no fault.)
  EXPECT_NO_THROW(Launch::kernel(misaligned_fragment_kernel, dim3(1), dim3(32), tile + 1, o));
  // After a fault the next launch starts clean.
  EXPECT_EQ(neighbours(true, ThreadOrder::kAscending), neighbours_seen());
}

// Thread 0 of block 0 writes a shared value (after its other threads reached the mark, since the
// first thread runs to the barrier before the others start); every block reads it after a barrier.
__global__ void stale_shared_kernel(float* out) {
  __shared__ float value;
  RF_SHARED_UNDEFINED_AT_BLOCK_START(value);
  if (blockIdx.x == 0 && threadIdx.x == 0) value = 1.0f;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

TEST(EmulatedCuda, MarkedSharedMemoryStartsEachBlockAsNaN) {
  std::vector<float> out(size_t{2} * 64);
  Launch::kernel(stale_shared_kernel, dim3(2), dim3(64), out.data());
  // Block 0 reads what it wrote (its later threads' marks did not fill it again); block 1, which
  // wrote nothing, reads NaN, not block 0's 1.
  for (int t = 0; t < 64; ++t) {
    EXPECT_EQ(out[t], 1.0f) << "block 0, thread " << t;
    EXPECT_TRUE(std::isnan(out[64 + t])) << "block 1, thread " << t << ": " << out[64 + t];
  }
}

// The rule above reaches only marked variables, so every __shared__ declaration of the kernels
// (kernels/cuda/) must be followed within a few lines by its mark.
TEST(EmulatedCuda, EverySharedVariableOfTheKernelsIsMarkedUndefinedAtBlockStart) {
  const std::regex declaration(R"(__shared__\s+[^;(]*?\b(\w+)\s*(\[[^;\]]*\]\s*)*;)");
  int declarations = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(RF_SOURCE_DIR) + "/kernels/cuda")) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".cuh" && ext != ".cu") continue;
    std::ifstream in(entry.path());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    for (size_t i = 0; i < lines.size(); ++i) {
      std::smatch m;
      if (lines[i].find("//") < lines[i].find("__shared__") ||
          !std::regex_search(lines[i], m, declaration))
        continue;
      ++declarations;
      const std::string mark = "RF_SHARED_UNDEFINED_AT_BLOCK_START(" + m[1].str() + ");";
      bool marked = false;
      for (size_t j = i + 1; j < std::min(lines.size(), i + 9) && !marked; ++j)
        marked = lines[j].find(mark) != std::string::npos;
      EXPECT_TRUE(marked) << entry.path().filename().string() << ":" << i + 1 << ": " << m[1].str()
                          << " is not followed by " << mark;
    }
  }
  EXPECT_GE(declarations, 11);  // (the sources were found and read)
}

// --- the project's CUDA kernels ---------------------------------------------------------------

std::unique_ptr<Executor> plain_cpu() {
  auto ex = make_cpu_executor(0);
  ex->set_kernel_variant(KernelVariant::kPlain);
  return ex;
}

// Every op of `reformer selftest` and the training micro-step: the emulated CUDA executor (the
// GPU's warp-per-row, reduction and attention kernels, and its grid-stride kernel for the rest)
// against the CPU's plain kernels, with the threads of each block run in one order; at bf16 the
// kernels write the products' operands in bf16 (held to selftest's bf16 tolerances).
// The tuned kernels' launches since `before`, as a list of the ones that did not run.
std::string kernels_not_run(const emulated_cuda::EmulatedLaunches& before, bool tensor_cores) {
  const emulated_cuda::EmulatedLaunches now = emulated_cuda::emulated_launches();
  std::string missing;
  auto check = [&](const char* name, int64_t was, int64_t is) {
    if (is == was) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  check("layer_norm_forward_rows", before.layer_norm_forward_rows, now.layer_norm_forward_rows);
  check("layer_norm_backward_rows", before.layer_norm_backward_rows, now.layer_norm_backward_rows);
  check("cross_entropy_rows", before.cross_entropy_rows, now.cross_entropy_rows);
  check("column_sum_partials_strips", before.column_strips, now.column_strips);
  check("sum_squares_blocks", before.sum_squares_blocks, now.sum_squares_blocks);
  check("gradient_norm_finalize_warp", before.norm_finalize_warp, now.norm_finalize_warp);
  check("row_elements<BiasActivationForward>", before.activation_elements, now.activation_elements);
  check("row_elements<ActivationBackward>", before.activation_backward_elements,
        now.activation_backward_elements);
  check("combine_rounds_rows", before.combine_rounds_rows, now.combine_rounds_rows);
  check("combine_rounds_backward_rows", before.combine_rounds_backward_rows,
        now.combine_rounds_backward_rows);
  check("ungather_attention_grads_rows", before.ungather_rows, now.ungather_rows);
  // Every variant of the tiles (width, score terms, dropout) that the sweep's precision runs:
  // the fp32 tiles at fp32, the tensor-core tiles at bf16.
  const char* widths[3] = {"d32", "d64", "d128"};
  const char* terms[2] = {"plain", "with score terms"};
  const char* dropout[2] = {"", " and dropout"};
  for (int w = 0; w < 3; ++w)
    for (int t = 0; t < 2; ++t) {
      if (!tensor_cores) {
        check((std::string("attention tiles ") + widths[w] + " " + terms[t]).c_str(),
              before.attention_tiles[w][t], now.attention_tiles[w][t]);
        continue;
      }
      for (int d = 0; d < 2; ++d)
        check((std::string("mma tiles ") + widths[w] + " " + terms[t] + dropout[d]).c_str(),
              before.mma_tiles[w][t][d], now.mma_tiles[w][t][d]);
    }
  return missing;
}

void expect_every_op_passes(ThreadOrder order, GemmPrecision precision) {
  const OrderScope scope(order);
  const bool bf16 = precision == GemmPrecision::kBf16;
  const std::unique_ptr<Executor> emulated = emulated_cuda::make_emulated_cuda_executor(bf16);
  const std::unique_ptr<Executor> reference = plain_cpu();
  selftest::Checker checker(*emulated, *reference);
  const emulated_cuda::EmulatedLaunches before = emulated_cuda::emulated_launches();
  selftest::SweepOptions sweep;
  sweep.precision = precision;
  selftest::check_all_ops(checker, sweep);
  std::ostringstream notes;
  check_training_micro_step(checker, precision, notes);
  std::cout << notes.str();  // (at bf16 on a CPU without bf16 products: the micro-step's skip)
  std::set<std::string> failed;
  for (const auto& c : checker.results())
    if (!c.passed()) failed.insert(c.op + " at " + c.shape + ": NMSE " + std::to_string(c.error));
  EXPECT_TRUE(failed.empty()) << failed.size() << " failed, the first: " << *failed.begin();
  EXPECT_GT(checker.results().size(), 200u);
  // Every tuned kernel ran; at bf16 the tensor-core attention too.
  EXPECT_EQ(kernels_not_run(before, bf16), "");
}

TEST(EmulatedCuda, TheCudaKernelsPassEverySelftestOp) {
  expect_every_op_passes(ThreadOrder::kAscending, GemmPrecision::kFp32);
}

TEST(EmulatedCuda, TheCudaKernelsPassEverySelftestOpWithTheThreadsAndBlocksReversed) {
  expect_every_op_passes(ThreadOrder::kDescending, GemmPrecision::kFp32);
}

TEST(EmulatedCuda, TheCudaKernelsPassEverySelftestOpWithBf16Operands) {
  expect_every_op_passes(ThreadOrder::kAscending, GemmPrecision::kBf16);
}

// Each warp alone up to its next block barrier: a barrier missing between warps shows (the
// tensor-core attention kernels, at bf16, too).
TEST(EmulatedCuda, TheCudaKernelsPassEverySelftestOpWithTheWarpsOneAtATime) {
  expect_every_op_passes(ThreadOrder::kWarpByWarp, GemmPrecision::kFp32);
}

TEST(EmulatedCuda, TheCudaKernelsPassEverySelftestOpWithBf16OperandsAndTheWarpsOneAtATime) {
  expect_every_op_passes(ThreadOrder::kWarpByWarp, GemmPrecision::kBf16);
}

// The GPU tests' whole-model checks (tests/device_matches_cpu.h) on the emulated kernels: the tiny
// model's micro-step, and Transformer-XL's memory with relative positions through the tiled
// attention kernels (head width 32).
TEST(EmulatedCuda, TrainingMicroStepMatchesTheCpu) {
  const std::unique_ptr<Executor> emulated = emulated_cuda::make_emulated_cuda_executor();
  test::expect_micro_step_matches(*emulated);
}

TEST(EmulatedCuda, TrainingWithMemoryAndRelativePositionsMatchesTheCpu) {
  const std::unique_ptr<Executor> emulated = emulated_cuda::make_emulated_cuda_executor();
  const int64_t tiles_before = emulated_cuda::emulated_launches().attention_tiles[0][1];
  test::expect_memory_training_matches(*emulated);
  // (width 32, relative scores)
  EXPECT_GT(emulated_cuda::emulated_launches().attention_tiles[0][1], tiles_before);
}

// The reduction kernels add in the CPU functors' order (reduce_kernels.cuh): column sums and the
// gradient norm equal the CPU's bit for bit.
TEST(EmulatedCuda, TheReductionKernelsEqualTheCpuBitForBit) {
  const std::unique_ptr<Executor> emulated = emulated_cuda::make_emulated_cuda_executor();
  Executor& cpu = test::cpu();
  auto upload = [](Executor& ex, const std::vector<float>& host) {
    DeviceBuffer<float> b(ex, host.size());
    b.upload(host);
    return b;
  };
  const emulated_cuda::EmulatedLaunches before = emulated_cuda::emulated_launches();
  for (int64_t cols : {1, 31, 32, 33, 257}) {
    const int64_t rows = 1000;  // 16 blocks of kReduceBlockRows, the last partial
    const std::vector<float> x = test::random_vector(static_cast<size_t>(rows * cols), 5);
    auto column_sums = [&](Executor& ex) {
      DeviceBuffer<float> in = upload(ex, x), out = upload(ex, std::vector<float>(cols, 0.5f));
      Workspace ws(ex);
      add_column_sums(ex, ws, in.data(), rows, cols, out.data());
      return out.download();
    };
    const std::vector<float> got = column_sums(*emulated), want = column_sums(cpu);
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << cols;
  }
  for (int64_t n : {1, 100, 10007}) {
    const std::vector<float> x = test::random_vector(static_cast<size_t>(n), 3);
    auto norm = [&](Executor& ex) {
      DeviceBuffer<float> in = upload(ex, x);
      DeviceBuffer<GradientNormResult> result(ex, 1);
      Workspace ws(ex);
      gradient_norm(ex, ws, in.data(), n, 1.0, result.data());
      return result.download()[0];
    };
    const GradientNormResult got = norm(*emulated), want = norm(cpu);
    EXPECT_EQ(got.norm, want.norm) << n;
    EXPECT_EQ(got.clip_scale, want.clip_scale) << n;
  }
  // (The reduction kernels, not the grid-stride functors, gave those bits.)
  const emulated_cuda::EmulatedLaunches after = emulated_cuda::emulated_launches();
  EXPECT_GT(after.column_strips, before.column_strips);
  EXPECT_GT(after.sum_squares_blocks, before.sum_squares_blocks);
  EXPECT_GT(after.norm_finalize_warp, before.norm_finalize_warp);
}

}  // namespace
}  // namespace rf
