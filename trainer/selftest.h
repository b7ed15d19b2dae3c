// `reformer selftest [--device cuda] [--precision P] [--json]`: every op of the kernel layer and a
// whole training micro-step, run on the chosen executor and compared with the CPU's plain
// reference kernels (kernels/selftest/). On the CPU the candidates are the CPU's own alternatives:
// its tuned kernels (tiled attention, whole rows) and the GPU's indexing (one column per index,
// one attention row per index). One line per op, then the verdict; the exit status is non-zero
// when any op fails.
#pragma once

#include <ostream>
#include <string>

#include "kernels/kinds.h"

namespace rf {

struct SelftestOptions {
  Device device = Device::kCpu;
  GemmPrecision precision = GemmPrecision::kFp32;
  bool json = false;
  bool quick = false;  // a few shapes per op
};

// Exit status where the asked-for executor does not exist here (no GPU, or no bf16 on this CPU);
// ctest counts it as skipped.
constexpr int kSelftestSkipped = 77;

int run_selftest(const SelftestOptions& options, std::ostream& out);

namespace selftest {
class Checker;
}
// The whole training micro-step (a tiny model of every layer type, dropout everywhere) on the
// checker's candidate against its reference: the loss and every parameter gradient, recorded as
// one comparison; at tf32 or bf16 held to twice the error of a naive implementation (`notes`
// says when there is none on this CPU).
void check_training_micro_step(selftest::Checker& checker, GemmPrecision precision,
                               std::ostream& notes);

// The start-up check of every command on a GPU (make_rank_executor, trainer/job.h): the quick sweep
// of every op on `ex` against the CPU reference. When an op differs, `ex` falls back to the fastest
// set that passes: fp32 GEMM operands instead of bf16 ones (where it takes them), then the
// reference functors with the GPU's indexing (KernelVariant::kGpuIndexing) with and without them;
// the returned note names the op and the fallback ("" when everything passed). Throws rf::Error
// naming the op when every fallback fails too.
std::string verify_kernels_or_fail(class Executor& ex, GemmPrecision precision);

}  // namespace rf
