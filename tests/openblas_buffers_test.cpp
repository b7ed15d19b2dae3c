// prepare_openblas_buffers (kernels/cpu/openblas_buffers.h): its product runs once on every thread
// asked for, and again only for more threads than before. (Its effect, the pace of the products
// after it, is a benchmark's to measure: bench/openblas_buffers_bench.cpp.)
#include "kernels/cpu/openblas_buffers.h"

#include <gtest/gtest.h>
#include <omp.h>

namespace rf {
namespace {

TEST(OpenblasBuffers, EveryThreadFillsItsBufferOnceAndOnlyMoreThreadsAgain) {
  const int threads_before = omp_get_max_threads();
  // (The executors of other tests in this process may have prepared some threads already: the
  // counts below are above anything a test asks for.)
  EXPECT_EQ(cpu::prepare_openblas_buffers(33), 33);
  EXPECT_EQ(cpu::prepare_openblas_buffers(33), 0);
  EXPECT_EQ(cpu::prepare_openblas_buffers(1), 0);
  EXPECT_EQ(cpu::prepare_openblas_buffers(35), 35);
  // The region's own thread count stays inside it.
  EXPECT_EQ(omp_get_max_threads(), threads_before);
}

}  // namespace
}  // namespace rf
