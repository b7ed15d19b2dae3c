// GEMMs with bf16 operands and fp32 accumulation and output on the CPU, through oneDNN's matmul
// (kernels/cpu/onednn_matmul.h, which also keeps their bits independent of the thread count).
// On CPUs with AVX512-BF16 (or AMX) its kernels run at about twice OpenBLAS's SGEMM rate (measured
// on this project's AMD EPYC machines: 357-431 against 162-192 GFLOP/s for the model's shapes).
// Both operands are rounded to the nearest bf16 (ties to even) into scratch buffers, then
// multiplied; C = alpha op(A) op(B) + beta C exactly as GemmDesc says.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/gemm_desc.h"

namespace rf {

// y[i] = x[i] rounded to bf16 (nearest, ties to even; NaN stays NaN), as its upper 16 bits.
void round_to_bf16(const float* x, uint16_t* y, int64_t n);

// For tests: while on, Bf16Gemms made afterwards round every reused operand again and fail
// (rf::Error) if memory no longer holds what they rounded, i.e. if a GemmOperandReuse scope
// broke its promise. Off by default (it costs a rounding per reuse).
void set_operand_reuse_checks(bool on);
// Reused operands checked so far (all Bf16Gemms of the process).
int64_t checked_operand_reuses();

// Whether this CPU has the bf16 dot-product instructions (AVX512-BF16 or AMX) Bf16Gemm needs.
bool cpu_has_bf16_dot_products();

class Bf16Gemm {
 public:
  // Throws rf::Error naming the CPU's instruction set when it has no bf16 dot-product
  // instructions (oneDNN would fall back to a slow emulation).
  Bf16Gemm();
  ~Bf16Gemm();
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  // One product (d.batch must be 1). An fp32 operand is rounded first; a bf16 one
  // (d.a_type / d.b_type) is used as it is.
  void run(const GemmDesc& d, const void* a, const void* b, float* c);
  // For logs: "oneDNN <version> bf16 (<isa>)".
  std::string describe() const;
  // On: operands rounded for one product are kept (six at most, together no more than three of
  // the largest operand seen) and reused by later products that read the same memory, until a
  // product writes over them or reuse is turned off. The caller promises that nothing else writes
  // to the operands meanwhile (GemmOperandReuse).
  void set_operand_reuse(bool on);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf
