#include "kernels/cpu/openblas_core.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <vector>

extern "C" {
// Provided by OpenBLAS (not declared in every cblas.h).
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace rf {
namespace {

// Set beside OPENBLAS_CORETYPE by the restart: the core OpenBLAS had chosen, for the report.
constexpr const char* kFallbackVariable = "RF_OPENBLAS_FALLBACK_CORE";

// What OpenBLAS 0.3.21 (driver/others/dynamic.c) runs on a CPU model it does not know.
constexpr const char* kFallbackCore = "Prescott";

}  // namespace

CpuVectorFeatures this_cpu_vector_features() {
  // (GCC's checks include the OS's consent, XGETBV, for the AVX and AVX-512 registers.)
  __builtin_cpu_init();
  CpuVectorFeatures f;
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return f;
}

std::string better_openblas_core(const std::string& chosen, CpuVectorFeatures cpu) {
  if (chosen != kFallbackCore) return "";
  if (cpu.avx512) return "SkylakeX";
  if (cpu.avx2_fma) return "Haswell";
  return "";
}

void restart_without_openblas_fallback() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string chosen = openblas_get_corename();
  const std::string better = better_openblas_core(chosen, this_cpu_vector_features());
  if (better.empty()) return;
  // The command line as the kernel started it, not main's argv: run through the dynamic loader
  // (`ld-linux-x86-64.so.2 --library-path DIR PROGRAM ARGS`, as a GPU bundle does), the process's
  // executable is the loader, and main's argv has lost the loader's arguments.
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> words;
  for (std::string word; std::getline(file, word, '\0');) words.push_back(word);
  if (words.empty()) return;
  std::vector<char*> args;
  args.reserve(words.size() + 1);
  for (std::string& word : words) args.push_back(word.data());
  args.push_back(nullptr);
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  setenv(kFallbackVariable, chosen.c_str(), 1);
  execv("/proc/self/exe", args.data());
  // Not restarted: run on with the fallback, which the report then shows.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kFallbackVariable);
}

std::string openblas_kernel_report() {
  std::string report = std::string("kernel ") + openblas_get_corename();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const char* fallback = std::getenv(kFallbackVariable);
  if (coretype == nullptr) return report + " (OPENBLAS_CORETYPE unset)";
  report += std::string(" (OPENBLAS_CORETYPE=") + coretype;
  if (fallback != nullptr)
    report +=
        std::string(", set by this program: OpenBLAS does not know this CPU and chose ") + fallback;
  return report + ")";
}

int openblas_caller_limit() {
  // OpenBLAS keeps 2 * MAX_THREADS work buffers (NUM_BUFFERS in its memory.c), one per thread
  // calling it at once; past that it prints "precompiled NUM_THREADS exceeded" and aborts or
  // crashes (Debian's 0.3.21, MAX_THREADS=64: 200 threads crashed 1 run in 3, 4,096 every run).
  const std::string config = openblas_get_config();
  const std::string key = "MAX_THREADS=";
  const size_t at = config.find(key);
  if (at == std::string::npos) return 0;
  const long max_threads = std::strtol(config.c_str() + at + key.size(), nullptr, 10);
  return max_threads > 0 && max_threads < (1 << 20) ? 2 * static_cast<int>(max_threads) : 0;
}

}  // namespace rf
