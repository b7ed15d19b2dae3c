// The check macros of the CUDA libraries, one per library as llm.c's cudaCheck / ncclCheck: a
// failing call becomes an rf::Error naming the library, the statement, file:line, the device and
// the library's own message, with a hint where the cause is usually the user's (out of memory).
// Included by .cu files only; every CUDA runtime, cuBLAS and NCCL call goes through one of these.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "base/error.h"

namespace rf {

// "device 0" — the device current on the calling thread, for error messages.
inline std::string current_device_text() {
  int device = -1;
  return cudaGetDevice(&device) == cudaSuccess ? "device " + std::to_string(device)
                                               : std::string("no current device");
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  const char* hint = status == cudaErrorMemoryAllocation
                         ? " (out of GPU memory: lower train.batch_size, train.seq_len, "
                           "model.ff_chunk or model.head_chunk)"
                         : "";
  fail("CUDA error in ", call, " at ", file, ":", line, " on ", current_device_text(), ": ",
       cudaGetErrorString(status), hint);
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLAS error in ", call, " at ", file, ":", line, " on ", current_device_text(), ": ",
       cublasGetStatusString(status));
}

// ncclInProgress is not a failure: a non-blocking communicator is still working on the call.
inline void check_nccl(ncclResult_t result, const char* call, const char* file, int line) {
  if (result == ncclSuccess || result == ncclInProgress) return;
  const char* detail = ncclGetLastError(nullptr);
  fail("NCCL error in ", call, " at ", file, ":", line, " on ", current_device_text(), ": ",
       ncclGetErrorString(result),
       detail != nullptr && detail[0] != '\0' ? std::string(" (") + detail + ")" : std::string());
}

}  // namespace rf

#define RF_CUDA_CHECK(call) ::rf::check_cuda((call), #call, __FILE__, __LINE__)
#define RF_CUBLAS_CHECK(call) ::rf::check_cublas((call), #call, __FILE__, __LINE__)
#define RF_NCCL_CHECK(call) ::rf::check_nccl((call), #call, __FILE__, __LINE__)
