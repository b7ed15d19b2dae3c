// A warp's bf16 tensor-core product, D = A B + C with A 16 x 16, B 16 x 8 and C, D 16 x 8 in fp32:
// PTX's mma.sync.m16n8k16 (sm_80 and later), with its register layout spelled out, and the same
// product computed lane by lane from that layout where the kernels run on the CPU (the tests'
// emulation of the CUDA thread model), so that the emulation checks the layouts the kernels
// assume.
//
// The fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), for lane
// l of the warp, group g = l / 4 and thread-in-group q = l % 4; a .b32 register holds two bf16, the
// lower index in the lower 16 bits:
//   A (row-major 16 x 16): a[0] = A[g][2q, 2q+1], a[1] = A[g+8][2q, 2q+1],
//                          a[2] = A[g][2q+8, 2q+9], a[3] = A[g+8][2q+8, 2q+9];
//   B (16 x 8, "col"):     b[0] = B[2q, 2q+1][g], b[1] = B[2q+8, 2q+9][g];
//   C, D (16 x 8 fp32):    c[0], c[1] = C[g][2q, 2q+1], c[2], c[3] = C[g+8][2q, 2q+1].
// So an accumulator tile of S = Q K^T (rows: queries, columns: keys) is, two n-tiles at a time,
// the A fragment of the next product P V, FlashAttention-2's register reuse.
#pragma once

#include <cstdint>

#include "kernels/cuda/emulation_checks.cuh"
#include "kernels/cuda/thread_index.cuh"
#include "kernels/ops/bf16_round.h"

namespace rf::cuda {

// Two floats rounded to bf16 (nearest, ties to even, as bf16_bits), lo in the lower half. On
// sm_80 and later one conversion instruction does both (PTX cvt.rn.bf16x2.f32: the first source
// goes to the upper half), where bf16_bits takes about eight integer operations per value: the
// tensor-core kernels round every probability and dS this way. The same bits as bf16_bits for
// every float but NaNs, which it makes the canonical NaN rather than keep their sign and payload
// (PTX ISA: round to nearest even, subnormals kept without .ftz).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t packed;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(hi), "f"(lo));
  return packed;
#else
  return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
#endif
}

// The B fragment of a k-step whose column (this lane's group's) is stored along k at `at`
// (4-byte aligned, the lane's k = 2q): b[0] holds k = 2q, 2q + 1 and b[1] k = 2q + 8, 2q + 9.
struct BFragment {
  uint32_t r[2];
};
__device__ __forceinline__ BFragment load_b_fragment(const uint16_t* at) {
  require_gpu_alignment<sizeof(uint32_t)>(at);
  require_gpu_alignment<sizeof(uint32_t)>(at + 8);
  return {{*reinterpret_cast<const uint32_t*>(at), *reinterpret_cast<const uint32_t*>(at + 8)}};
}

#ifndef __CUDA_ARCH__
namespace mma_emulation {
// Each lane's fragments and accumulators during an emulated product, by warp of the block and
// lane: the emulation runs a block's threads as fibers of one host thread, so one lane can read
// the others' registers between two warp barriers (two barriers per product instead of 16
// shuffles).
struct Fragments {
  const uint32_t* a;
  const uint32_t* b;
  float* c;
};
inline thread_local Fragments lanes[32][32];

// c += A B for every lane of the warp from its published fragments, run by one lane: lane (g, q)
// holds rows g and g + 8 of A at k = 2q, 2q + 1, 2q + 8, 2q + 9, and column g of B at the same k;
// its c holds rows g and g + 8, columns 2q and 2q + 1 of the product. Each element is summed in
// k order from its lane's c, as one lane summing its own would. The tile's A and B are unpacked
// from bf16 once (each lane unpacking what it needs read rows 4 times and columns 8 times: a
// quarter of the bf16 sweep of every op under ASan). Outside the sanitizers' instrumentation,
// with no calls (bf16 to float is the shift bf16_value does): it reads only the lanes'
// registers, never memory that a kernel indexes, and instrumented it was most of that sweep.
__attribute__((no_sanitize("address", "undefined"))) inline void multiply_published(
    const Fragments* warp) {
  // (no helper, not even a lambda: GCC does not inline an instrumented function into this one)
  float a[16][16], b[8][16];  // A by row, B by column, each along k
  for (int g = 0; g < 8; ++g)
    for (int q = 0; q < 4; ++q) {
      const int k = 2 * q;
      const uint32_t* from_a = warp[4 * g + q].a;
      for (int r = 0; r < 2; ++r)
        for (int half = 0; half < 2; ++half) {
          a[g + 8 * r][k + 8 * half] = __builtin_bit_cast(float, from_a[r + 2 * half] << 16);
          a[g + 8 * r][k + 8 * half + 1] =
              __builtin_bit_cast(float, from_a[r + 2 * half] & 0xFFFF0000u);
        }
      const uint32_t* from_b = warp[4 * g + q].b;
      for (int half = 0; half < 2; ++half) {
        b[g][k + 8 * half] = __builtin_bit_cast(float, from_b[half] << 16);
        b[g][k + 8 * half + 1] = __builtin_bit_cast(float, from_b[half] & 0xFFFF0000u);
      }
    }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, q = lane % 4;
    float* c = warp[lane].c;
    for (int r = 0; r < 2; ++r)
      for (int n = 0; n < 2; ++n) {
        float sum = c[2 * r + n];
        for (int k = 0; k < 16; ++k) sum += a[g + 8 * r][k] * b[2 * q + n][k];
        c[2 * r + n] = sum;
      }
  }
}
}  // namespace mma_emulation
#endif

// c += A B for the warp's fragments (every lane of the warp must call it, converged).
__device__ __forceinline__ void mma_bf16_16x8x16(float (&c)[4], const uint32_t (&a)[4],
                                                 const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  __trap();  // (the launchers use these kernels on compute capability 8.0 and later only)
#else
  using namespace mma_emulation;
  const int lane = lane_in_warp();
  Fragments* warp = lanes[warp_in_block()];
  warp[lane] = {a, b, c};
  __syncwarp();  // every lane's fragments and accumulators are published
  if (lane == 0) multiply_published(warp);
  __syncwarp();  // every lane's c is summed (the fragments may change after)
#endif
}

}  // namespace rf::cuda
