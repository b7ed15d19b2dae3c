#include "kernels/cpu/openblas_buffers.h"

#include <cblas.h>
#include <omp.h>

#include <mutex>
#include <vector>

namespace rf::cpu {

int prepare_openblas_buffers(int threads) {
  static std::mutex mutex;
  static int prepared_threads = 0;
  const std::lock_guard<std::mutex> lock(mutex);
  if (threads <= prepared_threads) return 0;
  // Twice the 512 rows that measured enough (the header), and deeper and wider than the products
  // that were slow, so that a larger part of the packed-operand areas than any of theirs is
  // written. The values do not matter (alpha 1: OpenBLAS skips nothing); the output is thrown
  // away.
  constexpr int kRows = 1024, kColumns = 256, kDepth = 512;
  const std::vector<float> a(static_cast<size_t>(kRows) * kDepth, 0.0f);
  const std::vector<float> b(static_cast<size_t>(kDepth) * kColumns, 0.0f);
  int ran = 0;
#pragma omp parallel num_threads(threads) reduction(+ : ran)
  {
    // (A region of one thread is not "in parallel" for OpenBLAS, which would then take its own
    // thread count from this region's setting, as the executor's single-block products do.)
    if (threads == 1) omp_set_num_threads(1);
    std::vector<float> c(static_cast<size_t>(kRows) * kColumns);
    // Every thread holds its own buffer while the others run theirs (a buffer is taken for one
    // call and given back after it): all start together.
#pragma omp barrier
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, kRows, kColumns, kDepth, 1.0f, a.data(),
                kRows, b.data(), kDepth, 0.0f, c.data(), kRows);
    ran = 1;
  }
  if (ran == threads) prepared_threads = threads;
  return ran;
}

}  // namespace rf::cpu
