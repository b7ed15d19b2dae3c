// OpenBLAS's kernels: the programs put right OpenBLAS's Prescott fallback on a CPU it does not
// know (kernels/cpu/openblas_core.h) and leave a user's OPENBLAS_CORETYPE alone.
#include "kernels/cpu/openblas_core.h"

#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <regex>
#include <string>

#include "base/error.h"
#include "kernels/executor.h"
#include "tests/run_fixture.h"

namespace rf {
namespace {

TEST(OpenblasCore, BetterCoreOnlyInPlaceOfTheFallback) {
  const CpuVectorFeatures avx512{true, true}, avx2{false, true}, sse{false, false};
  EXPECT_EQ(better_openblas_core("Prescott", avx512), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Prescott", avx2), "Haswell");
  EXPECT_EQ(better_openblas_core("Prescott", sse), "");
  for (const char* known : {"SkylakeX", "Cooperlake", "Haswell", "Zen", "Sandybridge"}) {
    EXPECT_EQ(better_openblas_core(known, avx512), "") << known;
    EXPECT_EQ(better_openblas_core(known, avx2), "") << known;
  }
}

// `reformer --version`'s output, OPENBLAS_CORETYPE unset unless `prefix` (settings, or a loader
// to run it through) sets it.
std::string version_output(const std::string& prefix) {
  const test::CommandResult r =
      test::run_command("env -u OPENBLAS_CORETYPE -u RF_OPENBLAS_FALLBACK_CORE " + prefix + " " +
                        RF_BINARY_DIR + "/reformer --version");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return r.out;
}

// The kernel that output names: "kernel NAME (OPENBLAS_CORETYPE...)".
std::string reported_kernel(const std::string& out) {
  std::smatch m;
  const std::regex kernel(", kernel (\\w+) \\(OPENBLAS_CORETYPE[^)]*\\);");
  EXPECT_TRUE(std::regex_search(out, m, kernel)) << out;
  return m.empty() ? "" : m[1].str();
}

TEST(OpenblasCore, TheTrainerRunsNoFallbackWhereTheCpuOffersBetter) {
  const std::string kernel = reported_kernel(version_output(""));
  const std::string better = better_openblas_core(kernel, this_cpu_vector_features());
  EXPECT_EQ(better, "") << "reformer ran OpenBLAS's " << kernel << " kernels on a CPU that runs "
                        << better << "'s";
}

// Run through the dynamic loader, as a GPU bundle runs its programs, the restart must re-run the
// loader's whole command line: the program, with its arguments, not the loader's own --version.
TEST(OpenblasCore, TheRestartKeepsALoadersCommandLine) {
  const std::string loader = "/lib64/ld-linux-x86-64.so.2";
  ASSERT_EQ(access(loader.c_str(), X_OK), 0) << loader;
  const std::string kernel =
      reported_kernel(version_output(loader + " --library-path /nonexistent"));
  EXPECT_EQ(better_openblas_core(kernel, this_cpu_vector_features()), "") << kernel;
}

TEST(OpenblasCore, AUsersCoreTypeStands) {
  const std::string out = version_output("OPENBLAS_CORETYPE=Prescott");
  EXPECT_EQ(reported_kernel(out), "Prescott");
  EXPECT_NE(out.find("kernel Prescott (OPENBLAS_CORETYPE=Prescott);"), std::string::npos) << out;
}

// More threads calling OpenBLAS at once than it has buffers for crashed it (Debian's 0.3.21,
// MAX_THREADS=64: runtime.threads 200 in 1 run of 3, 4,096 in every run): the CPU executor
// refuses more in one line, and caps its default (cores, or OMP_NUM_THREADS) there.
TEST(OpenblasCore, MoreThreadsThanOpenblasServesAreRefusedOrCapped) {
  const int limit = openblas_caller_limit();
  ASSERT_GT(limit, 0) << "this OpenBLAS's configuration names no MAX_THREADS";
  try {
    make_cpu_executor(limit + 1);
    ADD_FAILURE() << "runtime.threads " << limit + 1 << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("runtime.threads = " + std::to_string(limit + 1) +
                                         " is more than the " + std::to_string(limit) +
                                         " threads this OpenBLAS can serve at once"),
              std::string::npos)
        << e.what();
  }
  const int before = omp_get_max_threads();
  omp_set_num_threads(4 * limit);
  const std::string capped = make_cpu_executor(0)->describe();
  omp_set_num_threads(before);
  EXPECT_NE(capped.find("cpu, " + std::to_string(limit) + " OpenMP threads"), std::string::npos)
      << capped;
  EXPECT_NE(make_cpu_executor(limit)->describe().find(std::to_string(limit) + " OpenMP threads"),
            std::string::npos);
}

}  // namespace
}  // namespace rf
