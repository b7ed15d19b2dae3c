// bf16 products of attention tiles on Intel AMX (the tile matrix multiply units of Xeons since
// Sapphire Rapids), for runtime.precision = bf16 on CPUs that have them. Operands are rounded to
// bf16 (nearest, ties to even; the instruction flushes subnormal inputs to zero) while they are
// packed; products accumulate in fp32. One 64 x 64 x
// 64 product with both operands packed from fp32 takes about 1.1 us on one core of this project's
// Xeon VM, against 2.9 us for the fp32 register-blocked kernel (kernels/cpu/tile_gemm.h); the
// product alone about 0.3 us. (AVX512-BF16's dot-product instruction runs at half the FLOP rate of
// fp32 FMAs on that CPU, measured, so it would not help there.)
//
// Layouts (bf16 as uint16_t):
//   rows:  an A operand [m][k_pad], row-major, k_pad a multiple of 32, zeros past k;
//   pairs: a B operand [k_pad / 2][n][2] (pairs of consecutive rows interleaved), zeros past k.
// m and n must be multiples of 16 (the callers' tiles are padded to whole vectors).
// The sums over k run in a fixed order (32 at a time, as the hardware adds them), so results do
// not depend on the thread count.
#pragma once

#include <cstdint>

namespace rf::cpu::amx {

constexpr int64_t kDepthStep = 32;  // k per tile product
constexpr int64_t kTileRows = 16;   // m and n granularity

inline int64_t padded_depth(int64_t k) {
  return (k + kDepthStep - 1) / kDepthStep * kDepthStep;
}

// Whether this CPU has AMX-BF16 and the kernel lets this process use the tile registers (asked
// once; Linux 5.16+). Without them the attention tiles stay fp32.
bool available();

// The rows layout of A [m][k] (element (r, c) at a[r * lda + c]); rows m .. m_pad - 1 are zero.
void pack_rows(const float* a, int64_t lda, int64_t m, int64_t m_pad, int64_t k, uint16_t* out);
// The pairs layout of B [k][n] (element (p, j) at b[p * ldb + j]); n % 16 == 0.
void pack_pairs(const float* b, int64_t ldb, int64_t k, int64_t n, uint16_t* out);

// The rows layout of A [m][cols] packed straight from rows scattered in memory (the gathered
// rows of a tile: no fp32 copy of the tile first). Row r is rows[r][0 .. cols - 1], times
// scales[r] when scales is not null (rounded to fp32, then to bf16, as a copy scaled first would
// be); rows m .. m_pad - 1 and columns past cols come out zero. The other layouts of the same
// rows are made from it below (each scattered row read once: rows of a head lie a whole number of
// kilobytes apart, so a tile's rows share few L1 sets and a second pass over them misses).
void pack_rows_of(const float* const* rows, const float* scales, int64_t m, int64_t m_pad,
                  int64_t cols, uint16_t* out);
// From a rows layout S [>= count][depth] (depth = padded_depth of its columns):
//   pairs_of_rows: the pairs layout of B = S [count][n] (n % 16 == 0, n <= depth);
//   pairs_transposed_of_rows: the pairs layout of B = S^T [cols][count_pad] (S has count_pad
//     rows, count_pad % 16 == 0);
//   rows_transposed_of_rows: the rows layout of A = S^T [cols_pad][padded_depth(count)]
//     (cols_pad % 16 == 0, cols_pad <= depth; S's columns past its own are zero, so are the
//     rows past them here).
void pairs_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count, int64_t n, uint16_t* out);
void pairs_transposed_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count_pad,
                              uint16_t* out);
void rows_transposed_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count, int64_t cols_pad,
                             uint16_t* out);

// out[c * ld_out + r] = in[r * ld_in + c] for 32-bit words (floats, or pairs of bf16), r < rows,
// c < cols, both multiples of 16 (AVX-512 16 x 16 transposes).
void transpose_words(const void* in, int64_t ld_in, int64_t rows, int64_t cols, void* out,
                     int64_t ld_out);

// Loads the tile shapes multiply uses into this thread's tile registers. Call it on each thread
// before its first multiply and again after anything else that may use AMX (oneDNN's kernels load
// their own shapes or release the tiles): the attention passes call it once per work item. Loaded
// before every 64 x 64 x 64 product it made the product 12% slower on one core of this project's
// Xeon VM (613 against 691 ns; build/bench/tile_gemm_bench), so it is not repeated per product.
void load_tile_config();

// C [m][n] (+)= A B with C's rows ldc floats apart; k_pad = padded_depth(k) of the operands.
// Needs load_tile_config on this thread first (without it the tile instructions fault).
void multiply(int64_t m, int64_t n, int64_t k_pad, const uint16_t* a_rows, const uint16_t* b_pairs,
              float* c, int64_t ldc, bool accumulate);

}  // namespace rf::cpu::amx
