// Writing OpenBLAS's packing buffers once, before the products that would otherwise read
// memory no product has written yet.
//
// OpenBLAS packs each product's operands into a buffer per calling thread, which it maps when a
// thread first needs one and keeps. On a 2-core AMD EPYC (family 23 model 1, OpenBLAS 0.3.21
// `Zen`, 2026-12-06) every product ran at a third of its pace (128 x 64 x 2048 NT blocks at 21
// against 57-60 GFLOP/s, 128 x 64 x 256 NN at 30 against 60-62) until one product of 512 rows or
// more had run on each thread, after which all stayed fast; with transparent huge pages `always`
// (Debian's default is `madvise`) they were fast from the start. That points at the buffers'
// memory: the kernels reading ahead into parts of the buffer no product has written, which Linux
// maps to its one shared zero page (not proven: that VM offered no hardware counters). The
// reference model writes them with its first feed-forward product (1,024 rows); a model whose
// products are all smaller (the default config: d_model 128, d_ff 256) never did, and its
// products ran at 21-30 GFLOP/s all along. bench/openblas_buffers_bench.cpp measures this.
#pragma once

namespace rf::cpu {

// Runs one product of 1,024 x 256 x 512 (which fills the buffers' packed-operand areas) on each of
// `threads` OpenMP threads at once, so that each thread's buffer is written, unless this process
// already did so for at least as many threads. Returns how many threads ran it (0 when already
// done). The CPU executor calls it when it starts.
int prepare_openblas_buffers(int threads);

}  // namespace rf::cpu
