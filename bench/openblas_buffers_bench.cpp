// OpenBLAS's pace on small products with and without its packing buffers written first
// (kernels/cpu/openblas_buffers.h). Each measurement needs a fresh process (the buffers stay
// written once a product has filled them), so this program runs itself: each round starts one
// child that calls prepare_openblas_buffers first and one that does not, alternating which goes
// first, and each child times the products the default config's step runs (its fp32 GEMM blocks:
// 128-row blocks of 64 columns, as the CPU executor cuts them on machines of more than 8 CPUs;
// kernels/cpu/openblas_blocks.h), one block per OpenMP thread at once, as the executor runs them. Prints one JSON line per shape: the median GFLOP/s of each
// side and their ratio.
//   openblas_buffers_bench [--rounds 5] [--calls 200]
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_median.h"
#include "bench/command_line.h"
#include "kernels/cpu/openblas_buffers.h"
#include "kernels/cpu/openblas_core.h"

namespace rf {
namespace {

struct Block {
  const char* name;
  bool trans_b;
  int m, n, k;
};
// The default config's largest products, as the blocks the executor hands OpenBLAS.
constexpr std::array<Block, 4> kBlocks{{{"NT 128x64x2048", true, 128, 64, 2048},
                                        {"NN 128x64x256", false, 128, 64, 256},
                                        {"NT 128x64x1024", true, 128, 64, 1024},
                                        {"NN 128x128x128", false, 128, 128, 128}}};

// In a child: GFLOP/s of each block, `calls` times on every thread at once, printed one per line.
int child(bool prepare, int calls) {
  const int threads = omp_get_max_threads();
  if (prepare) cpu::prepare_openblas_buffers(threads);
  for (const Block& blk : kBlocks) {
    const int b_rows = blk.trans_b ? blk.n : blk.k, b_cols = blk.trans_b ? blk.k : blk.n;
    std::vector<float> a(static_cast<size_t>(blk.m) * blk.k, 0.01f);
    std::vector<float> b(static_cast<size_t>(b_rows) * b_cols * threads, 0.02f);
    std::vector<float> c(static_cast<size_t>(blk.m) * blk.n * threads);
    const auto start = std::chrono::steady_clock::now();
    for (int call = 0; call < calls; ++call) {
#pragma omp parallel
      {
        const int t = omp_get_thread_num();
        cblas_sgemm(CblasColMajor, CblasNoTrans, blk.trans_b ? CblasTrans : CblasNoTrans, blk.m,
                    blk.n, blk.k, 1.0f, a.data(), blk.m,
                    b.data() + static_cast<size_t>(t) * b_rows * b_cols, b_rows, 0.0f,
                    c.data() + static_cast<size_t>(t) * blk.m * blk.n, blk.m);
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.3f\n", 2.0 * blk.m * blk.n * blk.k * threads * calls / seconds / 1e9);
  }
  return 0;
}

// Runs this program as a child and reads its GFLOP/s lines.
std::vector<double> run_child(const std::string& self, bool prepare, int calls) {
  const std::string command = self + " --child " + (prepare ? "prepared" : "unprepared") +
                              " --calls " + std::to_string(calls);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    std::fprintf(stderr, "openblas_buffers_bench: cannot run %s\n", command.c_str());
    std::exit(1);
  }
  std::vector<double> rates;
  char line[64];  // (one rate per line)
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    char* end = nullptr;
    const double rate = std::strtod(line, &end);
    if (end == line) break;  // not a number: the count below is then wrong and says so
    rates.push_back(rate);
  }
  if (pclose(pipe) != 0 || rates.size() != kBlocks.size()) {
    std::fprintf(stderr, "openblas_buffers_bench: the child `%s` failed\n", command.c_str());
    std::exit(1);
  }
  return rates;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) try {
  rf::restart_without_openblas_fallback();
  rf::bench::CommandLine app(
      "OpenBLAS small products with and without their buffers written first");
  int rounds = 5, calls = 200;
  std::string child;
  app.option("--rounds", rounds, "child pairs (alternating which runs first)",
             rf::bench::in_range(1, 1000));
  app.option("--calls", calls, "products per shape in each child", rf::bench::in_range(1, 1000000));
  app.option("--child", child, "(internal) prepared or unprepared",
             rf::bench::one_of({"prepared", "unprepared"}));
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;
  if (!child.empty()) return rf::child(child == "prepared", calls);

  const std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
  std::vector<std::vector<double>> prepared(rf::kBlocks.size()), unprepared(rf::kBlocks.size());
  for (int r = 0; r < rounds; ++r) {
    for (int side = 0; side < 2; ++side) {
      const bool prepare = (side == 0) == (r % 2 == 0);
      const std::vector<double> rates = rf::run_child(self, prepare, calls);
      for (size_t i = 0; i < rates.size(); ++i)
        (prepare ? prepared : unprepared)[i].push_back(rates[i]);
    }
  }
  for (size_t i = 0; i < rf::kBlocks.size(); ++i) {
    const double with = rf::bench::median(prepared[i]), without = rf::bench::median(unprepared[i]);
    std::printf(
        "{\"shape\": \"%s\", \"threads\": %d, \"rounds\": %d, \"prepared_gflops\": %.1f, "
        "\"unprepared_gflops\": %.1f, \"ratio\": %.2f, \"openblas\": \"%s\"}\n",
        rf::kBlocks[i].name, omp_get_max_threads(), rounds, with, without, with / without,
        rf::openblas_kernel_report().c_str());
  }
  return 0;
} catch (const std::exception& e) {  // (one line, exit 1)
  std::fprintf(stderr, "openblas_buffers_bench: %s\n", e.what());
  return 1;
}
