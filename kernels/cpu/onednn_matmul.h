// One product C = alpha op(A) op(B) + beta C (column-major, as GemmDesc says) through oneDNN's
// matmul with both operands in one type, fp32 or bf16, and fp32 accumulation and output. The CPU
// executor's single fp32 products (on AVX-512 CPUs) and Bf16Gemm's products run here.
//
// Products deeper than thread_independent_depth() run as slices of that depth added into C one
// after another: oneDNN 2.6 splits a deeper sum across threads in a way that depends on the
// thread count, and the training step's bits must not (tests/gemm_precision_test.cpp checks 1 to
// 8 threads). The loss head's largest and thin deep bf16 products (block_plan) run instead in
// blocks of the shape's own cuts, each on one thread (multiply_in_blocks).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "kernels/gemm_desc.h"

namespace rf {

// The deepest product handed to oneDNN in one call, by operand type. Measured over 928 shapes
// (m 16-1024, n 16-4096, k 64-4096 with ragged depths, every transpose, with and without
// accumulation, 1 to 16 threads; 2026-12-02): in slices of 512 every bf16 product gave the same
// bits with any thread count, but fp32 products with a small output (m or n <= 64) and a depth of
// 1500 differed at 8 threads; in slices of 256 none did. Unsliced, k = 1024 and 4096 differed
// between 1 and 2 threads at bf16.
constexpr int64_t thread_independent_depth(OperandType operands) {
  return operands == OperandType::kBf16 ? 512 : 256;
}

// How multiply_in_blocks cuts a product: depth slices of slice_depth (deeper where that would
// make more than 16), each summed from zero (into its own partial sum when there are several,
// which are then added to C in slice order), and
// output blocks of at least `block` along the larger of m and n; each (slice, block) runs on one
// thread with a primitive planned for one thread. The cuts depend on the shape only, so the bits
// do not depend on the thread count, at any depth.
struct BlockPlan {
  int64_t slice_depth = 4096, block = 512;
};

// The cuts a plan makes of d: `slices` depth slices of `slice_depth` (the last shorter), times
// `blocks` output blocks of `block` (the last shorter) along C's columns (cut_columns) or rows,
// of which C has `extent`.
struct BlockCuts {
  int64_t slice_depth = 0, slices = 0, block = 0, blocks = 0, extent = 0;
  bool cut_columns = true;
};
BlockCuts block_cuts(const GemmDesc& d, BlockPlan plan);

// The loss head's large fp32 products: fp32 products deeper than thread_independent_depth, both
// output sides at least 512, a side of 8192 or more and 2^32 multiply-adds or more (the head's at
// a vocabulary of 8K and up). Measured in the reference model's 4K-token step (2026-12-04,
// --profile-ops): at a vocabulary of 32,768 the head's three products took 1,318 ms a step in
// 256-deep slices on all threads and 1,085 ms in blocks, at 8,192 296 -> 266 ms. The model's own
// fp32 products (at most 2^28 multiply-adds, and 64K tokens' 256 x 256 x 65,536 weight
// gradients) gained nothing, and a 2048^3 product (the GEMM rate's probe) lost 4%.
constexpr BlockPlan kLargeProductPlan{};

// Thin deep bf16 products: deeper than thread_independent_depth with an output side of at most
// 256, either cut into several 256-wide blocks of the whole depth (up to 1024, B untransposed: the
// reference model's products over d_ff = 1024, the feed-forward's second and the input gradient of
// its first) or, as one block, into several 1024-deep slices (the weight gradients over 4K rows
// and more). oneDNN 2.6 ran them as 512-deep slices on all threads at about one thread's pace (its
// split of a 256-wide output kept the second thread waiting). Measured on this project's Xeon VM
// (AMX, two threads, 2026-12-04), alone (medians of 15-21): 256 x 1024 x 1024 NN and TN 0.62 ->
// 0.33-0.39 ms, 256 x 256 x 4096 NT 0.72 -> 0.47 ms; in the 4K-token step (--profile-ops, 3
// alternated pairs) those three shapes 54.7-55.1 -> 41.3-45.6 ms. A sweep of thin shapes alone
// (sides 64-256 against 1024-4096, alternated): NN and TN in blocks of depth 1024 0.98-1.52x the
// slices' pace; one block in slices (256 x 256 x 4096) 1.10-1.41x in every transpose. Not in
// this plan, as they measured slower: transposed B operands cut into blocks (NT and TT 0.79-1.43x,
// mostly slower; in the step 1024 x 256 x 1024 NT 12.4 -> 14.5-15.2 ms), blocks of more than one
// slice (the partial sums cost more than they gain: 256 x 1024 x 4096 NN 0.82-0.87x, 256 x 1024 x
// 2048 TN 0.78-0.84x), products with both output sides 512 or more (2048^3: 1,200 against 840
// GFLOP/s in 256-wide blocks), and fp32 products (no gain in the fp32 step).
constexpr BlockPlan kThinBf16Plan{1024, 256};

// The plan OnednnMatmul::multiply runs d in: one of the two above, or none (then oneDNN runs it
// on all threads, in slices of thread_independent_depth added into C one after another).
std::optional<BlockPlan> block_plan(const GemmDesc& d, OperandType operands);

// The instruction set oneDNN runs on this CPU, for logs ("avx512_core_amx", ...).
std::string onednn_isa_name();
// "<major>.<minor>.<patch>" of the oneDNN this process runs.
std::string onednn_version();
// Whether that instruction set includes AVX-512 (avx512_core or above).
bool onednn_has_avx512();
// Whether it includes bf16 dot products (AVX512-BF16 or AMX).
bool onednn_has_bf16_dot_products();

class OnednnMatmul {
 public:
  // operands: the type of A and B in memory (OperandType::kFp32 or kBf16).
  explicit OnednnMatmul(OperandType operands);
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  // One product (d.batch must be 1, d.k > 0); a and b hold the operand type. Throws rf::Error
  // naming the shape if oneDNN fails.
  void multiply(const GemmDesc& d, const void* a, const void* b, float* c);
  // The same product in blocks (see BlockPlan); multiply uses it where block_plan gives a plan.
  void multiply_in_blocks(const GemmDesc& d, const void* a, const void* b, float* c,
                          BlockPlan plan);
  // For logs: "oneDNN <version> <fp32|bf16> (<isa>)".
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf
