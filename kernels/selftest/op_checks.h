// Every op of the kernel layer, each through its launcher, over a sweep of shapes (one row, odd
// sizes, sizes that are not a multiple of any tile or vector), compared between a candidate and
// the reference executor (kernels/selftest/op_check.h). One function per family of ops.
#pragma once

#include "kernels/selftest/op_check.h"

namespace rf::selftest {

struct SweepOptions {
  // The candidate's GEMM precision: fp32 products are held to NMSE <= 1e-7, tf32 and bf16 ones to
  // twice the error of naively rounded operands.
  GemmPrecision precision = GemmPrecision::kFp32;
  bool quick = false;  // a few shapes per op (the start-up check of a GPU run)
};

void check_gemm_ops(Checker& checker, const SweepOptions& options);
void check_row_ops(Checker& checker, const SweepOptions& options);
void check_lsh_ops(Checker& checker, const SweepOptions& options);
void check_attention_ops(Checker& checker, const SweepOptions& options);

// All of the above.
void check_all_ops(Checker& checker, const SweepOptions& options);

}  // namespace rf::selftest
