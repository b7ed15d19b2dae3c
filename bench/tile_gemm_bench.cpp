// The CPU attention tiles' fp32 products two ways, on one thread: libxsmm's JIT kernels
// (kernels/cpu/small_gemm.h, what the tiles run) against the register-blocked loops of
// kernels/cpu/tile_gemm.h (what runs where libxsmm makes no kernel). For each product of a tile
// pass (scores K Q^T, the value product P V with P stored transposed, the key gradients dS^T Q)
// at head widths 16-128, it alternates the two, 9 rounds of 2,000 calls each, and prints one JSON
// line per shape: the median GFLOP/s of each and their ratio. On a CPU with AMX-BF16 it also times
// the bf16 tile product (kernels/cpu/amx_tiles.h) for heads of 64, with its tile configuration
// loaded once (what the attention passes do: once per work item) against loaded before every
// product, which is what it did before 2026-12-05.
//   tile_gemm_bench [--rounds 9] [--calls 2000]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "bench/bench_median.h"
#include "bench/command_line.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/openblas_core.h"
#include "kernels/cpu/small_gemm.h"

namespace rf {
namespace {

using bench::median;

// Seconds per call of `product`, over `calls` calls.
double seconds_per_call(const std::function<void()>& product, int calls) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) product();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls;
}

struct TileProduct {
  const char* name;
  int64_t m, n, k;
  bool transposed_a, accumulate;
};

// The AMX product of each 64 x 64 x 64 tile product (as chunk_attention_tiles.cpp calls it: a
// fresh sum, and one added to), its configuration loaded once and before every product.
void run_amx(int rounds, int calls) {
  constexpr int64_t kSide = 64;
  std::vector<uint16_t> a(kSide * kSide, 0x3f80), b(kSide * kSide, 0x3f80);  // bf16 ones
  std::vector<float> c(kSide * kSide);
  for (bool accumulate : {false, true}) {
    auto product = [&](bool load_each) {
      if (load_each) cpu::amx::load_tile_config();
      cpu::amx::multiply(kSide, kSide, kSide, a.data(), b.data(), c.data(), kSide, accumulate);
    };
    std::vector<double> once, each;
    cpu::amx::load_tile_config();
    for (int r = 0; r < rounds; ++r) {
      once.push_back(seconds_per_call([&] { product(false); }, calls));
      each.push_back(seconds_per_call([&] { product(true); }, calls));
    }
    const double o = median(once) * 1e9, e = median(each) * 1e9;
    std::printf(
        "{\"product\": \"bf16 AMX 64x64x64%s\", \"config_once_ns\": %.1f, "
        "\"config_each_ns\": %.1f, \"ratio\": %.3f}\n",
        accumulate ? " added to C" : "", o, e, e / o);
  }
}

int run(int rounds, int calls) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  constexpr size_t kOperand = size_t{128} * 128;
  std::vector<float> a(kOperand), b(kOperand), c(kOperand);
  for (float& x : a) x = uniform(gen);
  for (float& x : b) x = uniform(gen);
  for (int64_t d : {16, 32, 64, 128}) {
    // As chunk_attention_tiles.cpp calls them for 64-slot tiles of heads d wide.
    const TileProduct products[] = {{"scores K Q^T", 64, 64, d, false, false},
                                    {"values P V (P transposed)", 64, d, 64, true, true},
                                    {"key gradients dS^T Q", 64, d, 64, false, true}};
    for (const TileProduct& t : products) {
      const int64_t lda = t.transposed_a ? t.m : t.k;
      auto product = [&](bool loops) {
        if (loops && t.transposed_a)
          cpu::tile_gemm_at(t.m, t.n, t.k, a.data(), lda, b.data(), t.n, c.data(), t.n,
                            t.accumulate);
        else if (loops)
          cpu::tile_gemm(t.m, t.n, t.k, a.data(), lda, b.data(), t.n, c.data(), t.n, t.accumulate);
        else if (t.transposed_a)
          cpu::small_gemm_at(t.m, t.n, t.k, a.data(), lda, b.data(), t.n, c.data(), t.n,
                             t.accumulate);
        else
          cpu::small_gemm(t.m, t.n, t.k, a.data(), lda, b.data(), t.n, c.data(), t.n, t.accumulate);
      };
      const bool has_kernel = cpu::libxsmm_product(t.transposed_a, t.m, t.n, t.k, a.data(), lda,
                                                   b.data(), t.n, c.data(), t.n, t.accumulate);
      std::vector<double> libxsmm, loops;
      for (int r = 0; r < rounds; ++r) {
        libxsmm.push_back(seconds_per_call([&] { product(false); }, calls));
        loops.push_back(seconds_per_call([&] { product(true); }, calls));
      }
      const double flop = 2.0 * static_cast<double>(t.m * t.n * t.k);
      const double x = flop / median(libxsmm) * 1e-9, l = flop / median(loops) * 1e-9;
      std::printf(
          "{\"product\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, \"libxsmm_kernel\": %s, "
          "\"libxsmm_gflops\": %.1f, \"loops_gflops\": %.1f, \"ratio\": %.3f}\n",
          t.name, static_cast<long long>(t.m), static_cast<long long>(t.n),
          static_cast<long long>(t.k), has_kernel ? "true" : "false", x, l, x / l);
    }
  }
  if (cpu::amx::available()) run_amx(rounds, calls);
  return 0;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) try {
  rf::restart_without_openblas_fallback();
  rf::bench::CommandLine app(
      "times the CPU attention tiles' products: fp32 in libxsmm against the loops; bf16 on AMX");
  int rounds = 9, calls = 2000;
  app.option("--rounds", rounds, "alternated rounds (medians)", rf::bench::in_range(1, 1000));
  app.option("--calls", calls, "calls per round", rf::bench::in_range(1, 10000000));
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;
  return rf::run(rounds, calls);
} catch (const std::exception& e) {  // (rf::Error and the rest: one line, exit 1)
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
