#include "tests/emulated_cuda/emulated_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tests/emulated_cuda/fiber_switch.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define RF_EMULATION_ASAN 1
#endif

namespace rf {
thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;
}  // namespace rf

namespace rf::emulated_cuda {
namespace {

// Fibers' stacks: the kernels keep a few arrays of 32 floats per thread; a sanitizer's red zones
// make frames several times larger.
constexpr size_t kStackBytes = size_t{256} * 1024;

enum class Wait { kNone, kWarp, kBlock };

// A fiber's stack, kept from launch to launch (a launch of 1024 threads needs 1024), and under
// ASan what its last fiber left poisoned there.
struct PooledStack {
  std::unique_ptr<char[]> memory{new char[kStackBytes]};  // (pages touched as a fiber grows)
  // A fiber started here and did not end (abandoned after a fault, waiting at a barrier): its
  // frames' red zones may be anywhere on the stack.
  bool unfinished = false;
  // Where the last fiber that ended here was when it switched away for good: the red zones of
  // the frames it never returned from (fiber_main's, switch_to_scheduler's) lie above this.
  const char* last_frame = nullptr;
};

// Bytes below last_frame that those frames may reach: switch_to_scheduler's is under its frame
// address, and both frames hold a pointer or two and their red zones.
constexpr size_t kLastFramesBytes = 4096;

struct Fiber {
  FiberContext context;
  PooledStack* stack = nullptr;  // from the thread's pool
  uint3 index;
  bool started = false, done = false;
  Wait wait = Wait::kNone;
  // A shuffle in progress (or a __syncwarp): this lane's value, what it asked for, and what it
  // reads.
  bool is_shuffle = false;
  ShuffleKind kind = ShuffleKind::kIndex;
  int operand = 0, width = 32;
  uint64_t value = 0, result = 0;
};

// One block in progress on this thread.
struct Block {
  std::vector<Fiber>* fibers = nullptr;
  int current = -1;
  FiberContext scheduler;
  const std::function<void()>* body = nullptr;
  std::string error;             // the first fault found (then the block stops)
  std::exception_ptr exception;  // one a thread threw
#if defined(RF_EMULATION_ASAN)
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_size = 0;
#endif
};

thread_local Block* g_block = nullptr;
thread_local ThreadOrder g_order = ThreadOrder::kAscending;
thread_local Counters g_counters;
thread_local std::vector<std::unique_ptr<PooledStack>> g_stacks;
thread_local std::map<const void*, int64_t> g_launches;

std::string where(const Fiber& f) {
  return "block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
         std::to_string(blockIdx.z) + ") thread (" + std::to_string(f.index.x) + "," +
         std::to_string(f.index.y) + "," + std::to_string(f.index.z) + ")";
}

// From a fiber back to the scheduler (`dying`: it will not be resumed).
void switch_to_scheduler(Fiber& f, bool dying) {
#if defined(RF_EMULATION_ASAN)
  if (dying) {
    f.stack->last_frame = static_cast<const char*>(__builtin_frame_address(0));
    f.stack->unfinished = false;
  }
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(dying ? nullptr : &fake_stack, g_block->scheduler_stack,
                                 g_block->scheduler_stack_size);
  switch_fiber(f.context, g_block->scheduler);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  (void)dying;
  switch_fiber(f.context, g_block->scheduler);
#endif
}

void fiber_main() {
  Block& b = *g_block;
  Fiber& f = (*b.fibers)[static_cast<size_t>(b.current)];
#if defined(RF_EMULATION_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);
#endif
  try {
    (*b.body)();
  } catch (...) {
    if (!b.exception) b.exception = std::current_exception();
  }
  f.done = true;
  switch_to_scheduler(f, true);
  std::abort();  // (a fiber that is done is never resumed; there is nothing to return to)
}

// Resumes fiber i until it waits or ends.
void resume(Block& b, int i) {
  Fiber& f = (*b.fibers)[static_cast<size_t>(i)];
  b.current = i;
  threadIdx = f.index;
  ++g_counters.switches;
  char* const stack = f.stack->memory.get();
  if (!f.started) {
    f.started = true;
#if defined(RF_EMULATION_ASAN)
    // The poison the stack's last fiber left: the frames it never returned from (the frames it
    // returned from cleared their red zones, and ASan clears those an exception unwinds), or,
    // where it did not end, anything. (Clearing all 256 KB for every fiber cost 5% of the fp32
    // selftest sweep's time under ASan: 100 -> 95 s on a Zen 1 EPYC, 2026-12-06.)
    PooledStack& pooled = *f.stack;
    if (pooled.unfinished) {
      __asan_unpoison_memory_region(stack, kStackBytes);
    } else if (pooled.last_frame) {
      const size_t above = static_cast<size_t>(stack + kStackBytes - pooled.last_frame);
      const size_t bytes = std::min(kStackBytes, above + kLastFramesBytes);
      __asan_unpoison_memory_region(stack + kStackBytes - bytes, bytes);
    }
    pooled.unfinished = true;
    pooled.last_frame = nullptr;
#endif
    prepare_fiber(f.context, stack, kStackBytes, fiber_main);
  }
#if defined(RF_EMULATION_ASAN)
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, stack, kStackBytes);
  switch_fiber(b.scheduler, f.context);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  switch_fiber(b.scheduler, f.context);
#endif
}

Fiber& current_fiber() {
  RF_CHECK(g_block != nullptr, "a CUDA barrier or shuffle outside an emulated kernel");
  return (*g_block->fibers)[static_cast<size_t>(g_block->current)];
}

// The calling fiber waits for its warp or block. (Which barrier is not compared: GCC may copy one
// barrier call into both arms of a branch, so that threads at the same barrier of the source
// return to different addresses. Threads that pass different numbers of barriers end up waiting
// at one while others have exited, which is reported.)
void wait_here(Wait kind) {
  Fiber& f = current_fiber();
  f.wait = kind;
  switch_to_scheduler(f, false);
}

// The lane whose value lane `lane` (0-31) of a warp reads in its shuffle f, as CUDA defines it
// for a warp cut into segments of `width` lanes: index reads lane operand modulo width of its own
// segment; down reads lane + delta, or its own value past its segment's end; xor reads
// lane ^ mask, or its own value when that is past its segment's end (an earlier segment's lane is
// read). Operands count modulo 32, as the instruction takes 5 bits of them.
int shuffle_source(const Fiber& f, int lane) {
  const int width = f.width, segment_end = lane / width * width + width;
  const int operand = f.operand & 31;
  switch (f.kind) {
    case ShuffleKind::kIndex:
      return lane / width * width + operand % width;
    case ShuffleKind::kDown:
      return lane + operand < segment_end ? lane + operand : lane;
    case ShuffleKind::kXor:
      return (lane ^ operand) < segment_end ? lane ^ operand : lane;
  }
  return lane;
}

// Releases the warp of lanes w0 .. w0 + 31 if its live lanes all wait at the same warp barrier or
// shuffle, each lane reading its shuffle's source; returns whether it did (false with b.error set
// on a fault).
bool release_warp(Block& b, std::vector<Fiber>& fibers, int w0) {
  const int w1 = std::min(static_cast<int>(fibers.size()), w0 + 32);
  bool any = false;
  for (int i = w0; i < w1; ++i) any |= !fibers[i].done && fibers[i].wait == Wait::kWarp;
  if (!any) return false;
  const Fiber& first = fibers[w0];
  for (int i = w0; i < w1; ++i) {
    const Fiber& f = fibers[i];
    if (w1 - w0 < 32)
      b.error = where(f) + " is in a warp of " + std::to_string(w1 - w0) +
                " threads (the block is not a whole number of warps) at a warp barrier";
    else if (f.done)
      b.error = where(f) + " has exited while its warp waits at a warp barrier or shuffle";
    else if (f.wait != Wait::kWarp)
      b.error = where(f) + " waits at __syncthreads while its warp waits at a warp barrier";
    else if (f.is_shuffle != first.is_shuffle || f.kind != first.kind || f.width != first.width)
      b.error = where(f) + " and " + where(first) +
                " wait at different kinds of warp barrier or shuffle (a divergent warp)";
    if (!b.error.empty()) return false;
  }
  for (int i = w0; i < w1; ++i) {
    Fiber& f = fibers[i];
    f.result = fibers[w0 + shuffle_source(f, i - w0)].value;
  }
  for (int i = w0; i < w1; ++i) fibers[i].wait = Wait::kNone;
  return true;
}

// Releases every warp that can go on (release_warp); returns how many.
int release_warps(Block& b, std::vector<Fiber>& fibers) {
  int released = 0;
  for (int w0 = 0; w0 < static_cast<int>(fibers.size()) && b.error.empty(); w0 += 32)
    released += release_warp(b, fibers, w0) ? 1 : 0;
  return released;
}

// kWarpByWarp: runs each warp, in order, through its warp barriers and shuffles until its lanes
// wait at __syncthreads or have exited, before the next warp starts.
void run_warps_alone(Block& b, std::vector<Fiber>& fibers) {
  const int n = static_cast<int>(fibers.size());
  for (int w0 = 0; w0 < n && b.error.empty() && !b.exception; w0 += 32) {
    do {
      for (int i = w0; i < std::min(n, w0 + 32) && !b.exception; ++i)
        if (!fibers[i].done && fibers[i].wait == Wait::kNone) resume(b, i);
    } while (!b.exception && release_warp(b, fibers, w0));
  }
}

// Releases the block when every live thread waits at the same block barrier.
bool release_block(Block& b, std::vector<Fiber>& fibers) {
  bool any = false;
  for (const Fiber& f : fibers) {
    if (f.done) continue;
    if (f.wait != Wait::kBlock) return false;
    any = true;
  }
  if (!any) return false;
  for (const Fiber& f : fibers)
    if (f.done) {
      b.error = where(f) + " has exited while the rest of its block waits at __syncthreads";
      return false;
    }
  for (Fiber& f : fibers) f.wait = Wait::kNone;
  return true;
}

void run_block(std::vector<Fiber>& fibers, const std::function<void()>& thread) {
  Block b;
  b.fibers = &fibers;
  b.body = &thread;
  Block* const outer = g_block;
  g_block = &b;
  const int n = static_cast<int>(fibers.size());
  while (b.error.empty() && !b.exception) {
    bool all_done = true;
    if (g_order == ThreadOrder::kWarpByWarp) {
      run_warps_alone(b, fibers);
    } else {
      for (int k = 0; k < n && !b.exception; ++k) {
        const int i = g_order == ThreadOrder::kAscending ? k : n - 1 - k;
        if (!fibers[i].done && fibers[i].wait == Wait::kNone) resume(b, i);
      }
    }
    for (const Fiber& f : fibers) all_done &= f.done;
    if (all_done || b.exception) break;
    if (release_warps(b, fibers) > 0 || !b.error.empty()) continue;
    if (release_block(b, fibers) || !b.error.empty()) continue;
    // (Unreachable: every live thread waits, and a warp or block that waits is released or
    // reported above.)
    b.error = "no thread can go on, and no fault was found (an emulator bug)";
  }
  g_block = outer;
  if (b.exception) std::rethrow_exception(b.exception);
  RF_CHECK(b.error.empty(), "emulated CUDA: ", b.error);
}

}  // namespace

uint64_t shuffle_bits(unsigned mask, uint64_t bits, int operand, int width, ShuffleKind kind) {
  Fiber& f = current_fiber();
  RF_CHECK(mask == 0xffffffffu, "emulated CUDA: ", where(f),
           " shuffles with a partial mask (only full warps are emulated)");
  RF_CHECK(width > 0 && width <= 32 && (width & (width - 1)) == 0, "emulated CUDA: ", where(f),
           " shuffles with width ", width);
  f.is_shuffle = true;
  f.kind = kind;
  f.operand = operand;
  f.width = width;
  f.value = bits;
  wait_here(Wait::kWarp);
  return f.result;
}

int64_t launches_of(const void* kernel) {
  const auto it = g_launches.find(kernel);
  return it == g_launches.end() ? 0 : it->second;
}

void count_launch_of(const void* kernel) {
  ++g_launches[kernel];
}

void set_thread_order(ThreadOrder order) {
  g_order = order;
}

Counters counters() {
  return g_counters;
}

void shared_undefined_at_block_start(void* at, size_t bytes) {
  RF_CHECK(g_block != nullptr, "emulated CUDA: shared memory marked outside a kernel");
  // The block each variable was last filled for, as its serial number + 1 (0: never).
  static thread_local std::unordered_map<const void*, int64_t> filled_for;
  int64_t& block = filled_for[at];
  if (block == g_counters.blocks + 1) return;
  block = g_counters.blocks + 1;
  std::memset(at, 0xFF, bytes);
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& thread) {
  RF_CHECK(g_block == nullptr, "emulated CUDA: a launch from inside a kernel (not emulated)");
  const int64_t n = int64_t{block.x} * block.y * block.z;
  RF_CHECK(n >= 1 && n <= 1024, "emulated CUDA: a block of ", n, " threads (at most 1024)");
  RF_CHECK(block.x <= 1024 && block.y <= 1024 && block.z <= 64, "emulated CUDA: a block of (",
           block.x, ", ", block.y, ", ", block.z, ") threads (at most 1024, 1024, 64)");
  RF_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1, "emulated CUDA: an empty grid");
  RF_CHECK(grid.y <= 65535 && grid.z <= 65535, "emulated CUDA: a grid of (", grid.x, ", ", grid.y,
           ", ", grid.z, ") blocks (y and z at most 65535)");
  gridDim = grid;
  blockDim = block;
  std::vector<Fiber> fibers(static_cast<size_t>(n));
  while (static_cast<int64_t>(g_stacks.size()) < n)
    g_stacks.push_back(std::make_unique<PooledStack>());
  for (int64_t i = 0; i < n; ++i) fibers[static_cast<size_t>(i)].stack = g_stacks[i].get();
  // (Every order but kAscending runs the blocks last to first.)
  const bool reversed = g_order != ThreadOrder::kAscending;
  auto nth = [reversed](unsigned i, unsigned n) { return reversed ? n - 1 - i : i; };
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {nth(x, grid.x), nth(y, grid.y), nth(z, grid.z)};
        for (int64_t i = 0; i < n; ++i) {
          Fiber& f = fibers[static_cast<size_t>(i)];
          f.index = {static_cast<unsigned>(i % block.x),
                     static_cast<unsigned>(i / block.x % block.y),
                     static_cast<unsigned>(i / (int64_t{block.x} * block.y))};
          f.started = f.done = false;
          f.wait = Wait::kNone;
        }
        run_block(fibers, thread);
        ++g_counters.blocks;
      }
}

}  // namespace rf::emulated_cuda

void __syncthreads() {
  rf::emulated_cuda::wait_here(rf::emulated_cuda::Wait::kBlock);
}

void __syncwarp(unsigned mask) {
  RF_CHECK(mask == 0xffffffffu, "emulated CUDA: __syncwarp with a partial mask");
  rf::emulated_cuda::current_fiber().is_shuffle = false;
  rf::emulated_cuda::wait_here(rf::emulated_cuda::Wait::kWarp);
}
