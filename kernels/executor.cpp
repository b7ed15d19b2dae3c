#include "kernels/executor.h"

#include "kernels/error.h"

namespace rf {

GemmPrecision parse_gemm_precision(const std::string& name) {
  if (name == "fp32") return GemmPrecision::kFp32;
  if (name == "tf32") return GemmPrecision::kTf32;
  if (name == "bf16") return GemmPrecision::kBf16;
  fail("unknown GEMM precision '", name, "' (allowed: fp32, tf32, bf16)");
}

void matmul(Executor& ex, const RowMajorGemm& g, const float* a, const float* b, float* c) {
  // Column-major C^T = op(B)^T op(A)^T: the row-major B is the column-major A.
  ex.gemm(to_column_major(g), b, a, c);
}

#ifndef RF_WITH_CUDA
bool cuda_compiled_in() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::unique_ptr<Executor> make_cuda_executor(int, GemmPrecision) {
  fail(
      "runtime.device is cuda, but this build has no CUDA support (nvcc was not found when "
      "CMake configured the build); use runtime.device=cpu or rebuild with the CUDA toolkit");
}
#endif

}  // namespace rf
