// One product C = alpha op(A) op(B) + beta C (column-major, as GemmDesc says) through oneDNN's
// matmul with both operands in one type, fp32 or bf16, and fp32 accumulation and output. The CPU
// executor's single fp32 products (on AVX-512 CPUs) and Bf16Gemm's products run here.
//
// Products deeper than thread_independent_depth() run as slices of that depth added into C one
// after another: oneDNN 2.6 splits a deeper sum across threads in a way that depends on the
// thread count, and the training step's bits must not (tests/kernels_test.cpp checks 1 to 8
// threads).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/gemm_desc.h"

namespace rf {

// The deepest product handed to oneDNN in one call, by operand type. Measured over 928 shapes
// (m 16-1024, n 16-4096, k 64-4096 with ragged depths, every transpose, with and without
// accumulation, 1 to 16 threads; 2026-12-02): in slices of 512 every bf16 product gave the same
// bits with any thread count, but fp32 products with a small output (m or n <= 64) and a depth of
// 1500 differed at 8 threads; in slices of 256 none did. Unsliced, k = 1024 and 4096 differed
// between 1 and 2 threads at bf16.
constexpr int64_t thread_independent_depth(OperandType operands) {
  return operands == OperandType::kBf16 ? 512 : 256;
}

// The instruction set oneDNN runs on this CPU, for logs ("avx512_core_amx", ...).
std::string onednn_isa_name();
// Whether that instruction set includes AVX-512 (avx512_core or above).
bool onednn_has_avx512();
// Whether it includes bf16 dot products (AVX512-BF16 or AMX).
bool onednn_has_bf16_dot_products();

class OnednnMatmul {
 public:
  // operands: the type of A and B in memory (OperandType::kFp32 or kBf16).
  explicit OnednnMatmul(OperandType operands);
  ~OnednnMatmul();
  OnednnMatmul(const OnednnMatmul&) = delete;
  OnednnMatmul& operator=(const OnednnMatmul&) = delete;

  // One product (d.batch must be 1, d.k > 0); a and b hold the operand type. Throws rf::Error
  // naming the shape if oneDNN fails.
  void multiply(const GemmDesc& d, const void* a, const void* b, float* c);
  // For logs: "oneDNN <version> <fp32|bf16> (<isa>)".
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf
