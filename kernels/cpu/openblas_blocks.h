// How the CPU executor runs one fp32 product in OpenBLAS (CPUs without AVX-512, where the single
// products are not oneDNN's): blocks of the output's larger side, each a single-threaded call.
// The cut decides the bits (OpenBLAS's sums depend on a block's width: on an AMD EPYC with the Zen
// kernel, 1024 x 1024 x 256 cut into blocks of 64, 128, 256, 512 and 1024 columns gave five
// different results), so it depends on the shape and on the machine's number of online CPUs only,
// never on the thread count a run asks for (runtime.threads, OMP_NUM_THREADS) or on the number of
// ranks: on one machine every run of a config gives the same bits.
//
// Fewer, wider blocks pack the other operand fewer times: on a 2-core AMD EPYC (family 25, Zen 3,
// OpenBLAS 0.3.21 Zen kernel, 2026-12-07; bench/fp32_products_bench, cold caches, medians of 15
// alternated rounds, three runs) 4 blocks instead of 16 ran the reference model's 1024-wide
// single products 1.02-1.30x as fast (1024 x 1024 x 256 NN and TN 1.06-1.30x), the 4096-wide
// ones within 5% either way; its 4K-token step 1.13x (median of 5 alternated pairs; 64K: no
// difference beyond the VM's noise in 2 pairs). 16 blocks keep 16 threads busy, so machines with
// more CPUs keep more blocks.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/gemm_desc.h"

namespace rf::cpu {

// Blocks a product's larger side is cut into on a machine with `online_cpus` CPUs (0 or less:
// unknown, taken as many).
constexpr int64_t openblas_block_count(long online_cpus) {
  if (online_cpus > 0 && online_cpus <= 4) return 4;
  if (online_cpus > 0 && online_cpus <= 8) return 8;
  return 16;
}

// The width of each block (the last may be narrower): a multiple of 64, at least 64, so that at
// most `count` blocks cover `extent`.
constexpr int64_t openblas_block_width(int64_t extent, int64_t count) {
  constexpr int64_t kMinBlock = 64;
  return std::max(kMinBlock, (extent + count * kMinBlock - 1) / (count * kMinBlock) * kMinBlock);
}

// openblas_block_count for this machine (its online CPUs, read once).
int64_t openblas_block_count_here();

// C = alpha op(A) op(B) + beta C for one fp32 product (d.batch == 1) through OpenBLAS, its output's
// larger side cut into at most `block_count` blocks of openblas_block_width, each a
// single-threaded call (a block of one row or column as a matrix-vector product), spread over the
// OpenMP threads. The CPU executor passes openblas_block_count_here().
void multiply_in_openblas_blocks(const GemmDesc& d, const float* a, const float* b, float* c,
                                 int64_t block_count);

}  // namespace rf::cpu
