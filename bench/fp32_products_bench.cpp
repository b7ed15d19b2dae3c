// The reference model's single fp32 products (a 4K-token step's shapes) in the ways the CPU
// executor could run them on a CPU without AVX-512 with bits that do not depend on the thread
// count: what the executor runs (kernels/cpu/openblas_blocks.h: OpenBLAS in 4, 8 or 16 blocks by
// the machine's CPU count), OpenBLAS in 4, 8 and 16 blocks (16: what ran before 2026-12-07) and
// oneDNN's matmul in blocks 512 wide (OnednnMatmul::multiply_in_blocks, each block one
// single-threaded primitive). Before every product a 64 MiB buffer is written, so each product
// starts from a cold cache, as in a training step, where its operands were last touched several
// kernels before. The variants alternate product by product for `--rounds` rounds; one JSON line
// per shape: each variant's median GFLOP/s and its ratio to the executor's (above 1: faster).
//   fp32_products_bench [--rounds 15]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_median.h"
#include "bench/command_line.h"
#include "kernels/cpu/onednn_matmul.h"
#include "kernels/cpu/openblas_blocks.h"
#include "kernels/cpu/openblas_core.h"
#include "kernels/executor.h"
#include "kernels/gemm_desc.h"

namespace rf {
namespace {

struct Shape {
  bool ta, tb;
  int64_t m, n, k;  // column-major, as --profile-ops names them
};

// The 4K step's single products (step_bench --profile-ops), most time first, and one of 64K's.
const Shape kShapes[] = {
    {false, false, 1024, 1024, 256},
    {false, false, 256, 1024, 1024},
    {false, false, 256, 4096, 256},
    {true, false, 1024, 1024, 256},
    {true, false, 256, 1024, 1024},
    {false, true, 1024, 256, 1024},
    {false, true, 256, 1024, 1024},
    {false, true, 256, 256, 4096},
    {true, false, 256, 4096, 256},
    {false, false, 128, 4096, 64},
    {true, false, 512, 1024, 256},
    {false, false, 256, 1024, 512},
    {false, true, 256, 512, 1024},
    {false, true, 256, 256, 65536}};  // (and the 64K step's projection weight gradients)

GemmDesc packed_desc(const Shape& s) {
  GemmDesc d;
  d.trans_a = s.ta;
  d.trans_b = s.tb;
  d.m = s.m;
  d.n = s.n;
  d.k = s.k;
  d.lda = s.ta ? s.k : s.m;
  d.ldb = s.tb ? s.n : s.k;
  d.ldc = s.m;
  d.stride_a = d.lda * (s.ta ? s.m : s.k);
  d.stride_b = d.ldb * (s.tb ? s.k : s.n);
  d.stride_c = d.ldc * s.n;
  return d;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) try {
  rf::restart_without_openblas_fallback();
  rf::bench::CommandLine app("The CPU's single fp32 products: OpenBLAS against oneDNN, cold cache");
  int rounds = 15;
  app.option("--rounds", rounds, "rounds (each runs every variant once per shape)",
             rf::bench::in_range(1, 100000));
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;

  const std::unique_ptr<rf::Executor> executor = rf::make_cpu_executor(0, rf::GemmPrecision::kFp32);
  rf::OnednnMatmul onednn(rf::OperandType::kFp32);
  std::vector<float> flush(16 << 20);  // 64 MiB: more than these CPUs' last-level caches
  auto cold = [&] {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < flush.size(); ++i) flush[i] += 1.0f;
  };
  struct Variant {
    const char* name;
    std::function<void(const rf::GemmDesc&, const float*, const float*, float*)> run;
  };
  auto openblas_blocks = [](int64_t count) {
    return [count](const rf::GemmDesc& d, const float* a, const float* b, float* c) {
      rf::cpu::multiply_in_openblas_blocks(d, a, b, c, count);
    };
  };
  const std::vector<Variant> variants = {
      {"executor", [&](auto& d, auto a, auto b, auto c) { executor->gemm(d, a, b, c); }},
      {"openblas_4_blocks", openblas_blocks(4)},
      {"openblas_8_blocks", openblas_blocks(8)},
      {"openblas_16_blocks", openblas_blocks(16)},
      {"onednn_512_wide", [&](auto& d, auto a, auto b, auto c) {
         onednn.multiply_in_blocks(d, a, b, c, rf::BlockPlan{1 << 20, 512});
       }}};
  for (const rf::Shape& s : rf::kShapes) {
    const rf::GemmDesc d = rf::packed_desc(s);
    std::vector<float> a(d.stride_a, 0.5f), b(d.stride_b, 0.25f), c(d.stride_c, 0.0f);
    std::vector<std::vector<double>> seconds(variants.size());
    for (int r = 0; r < rounds + 1; ++r)  // (round 0 warms up: primitives, buffers)
      for (size_t v = 0; v < variants.size(); ++v) {
        cold();
        const auto start = std::chrono::steady_clock::now();
        variants[v].run(d, a.data(), b.data(), c.data());
        const double t =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (r > 0) seconds[v].push_back(t);
      }
    const double flop = 2.0 * static_cast<double>(s.m * s.n * s.k);
    std::printf("{\"shape\": \"%s%s %lldx%lldx%lld\", \"threads\": %d, \"rounds\": %d",
                s.ta ? "T" : "N", s.tb ? "T" : "N", static_cast<long long>(s.m),
                static_cast<long long>(s.n), static_cast<long long>(s.k), omp_get_max_threads(),
                rounds);
    const double base = rf::bench::median(seconds[0]);
    for (size_t v = 0; v < variants.size(); ++v) {
      const double t = rf::bench::median(seconds[v]);
      std::printf(", \"%s_gflops\": %.1f", variants[v].name, flop / t / 1e9);
      if (v > 0) std::printf(", \"%s_ratio\": %.2f", variants[v].name, base / t);
    }
    std::printf(", \"executor_blocks\": %lld, \"openblas\": \"%s\"}\n",
                static_cast<long long>(rf::cpu::openblas_block_count_here()),
                rf::openblas_kernel_report().c_str());
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {  // (one line, exit 1)
  std::fprintf(stderr, "fp32_products_bench: %s\n", e.what());
  return 1;
}
