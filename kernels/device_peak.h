// The dense peak rate of a GPU at a GEMM precision, from the vendors' data sheets (tensor cores
// without sparsity; fp32 on the CUDA cores): the denominator of model FLOP utilisation (MFU), the
// figure Megatron-LM and llm.c print, in train's log. bench/summarize.py holds the same figures
// for the benchmark tables. A CPU has none: its rate depends on the clock, the cores a rank gets
// and the BLAS, so bench/step_bench measures it instead.
#pragma once

#include <string>

#include "kernels/kinds.h"

namespace rf {

// TFLOP/s of the device whose driver reports `device_model` ("NVIDIA H100 80GB HBM3"), at
// `precision`; 0 when the model is not in the table (every CPU, and GPUs not listed).
double dense_peak_tflops(const std::string& device_model, GemmPrecision precision);

}  // namespace rf
