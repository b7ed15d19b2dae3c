// Tests of `reformer selftest`'s machinery: the error measures, the verdicts, and that a wrong
// kernel is found and named. A FaultyExecutor forwards every kernel to the CPU executor except
// one, which it breaks; the op checks must fail exactly there.
#include "trainer/selftest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "base/philox.h"
#include "kernels/executor_impl.h"
#include "kernels/fast_math.h"
#include "kernels/selftest/op_checks.h"
#include "tests/test_util.h"
#include "trainer/job.h"

namespace rf {
namespace {

using selftest::Checker;

// Forwards every kernel launch to a target executor.
struct ForwardingBackend {
  static inline Executor* target = nullptr;
  template <class Op>
  static void for_each(const Executor&, int64_t n, const Op& op) {
    target->run(n, op);
  }
};

// The CPU executor with one fault: `broken` names the op that goes wrong. It may claim to be a GPU
// (`device`), and to take bf16 GEMM operands (`bf16_operands`), which it emulates on any CPU.
class FaultyExecutor final : public KernelExecutor<ForwardingBackend> {
 public:
  explicit FaultyExecutor(std::string broken, Device device = Device::kCpu,
                          bool bf16_operands = false)
      : broken_(std::move(broken)), device_(device), bf16_operands_(bf16_operands) {
    ForwardingBackend::target = &target_;
  }
  using KernelExecutor<ForwardingBackend>::run;

  // A layer norm with the wrong shift (only where it writes bf16, for "layer_norm bf16").
  void run(int64_t n, const LayerNormForward& op) override {
    LayerNormForward shifted = op;
    if (broken_ == "layer_norm" || (broken_ == "layer_norm bf16" && op.y_bf16))
      shifted.beta = op.gamma;  // the wrong shift
    target_.run(n, shifted);
  }
  // A layer-norm backward whose bf16 gradient rows differ from its fp32 ones in one bit (for
  // "layer_norm backward bf16").
  void run(int64_t n, const LayerNormBackward& op) override {
    target_.run(n, op);
    if (broken_ == "layer_norm backward bf16" && op.dx_bf16 && n > 0) op.dx_bf16[0] ^= 1u;
  }
  bool rounds_operands_to_bf16() const override { return bf16_operands_; }
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override {
    ChunkAttentionParams q = p;
    const bool tuned_only = broken_ == "attention keys (tuned only)";
    if ((broken_ == "attention keys" ||
         (tuned_only && kernel_variant() == KernelVariant::kTuned)) &&
        pass == ChunkAttentionPass::kGradients)
      q.dropout.keep = 0.5f;  // replays another dropout mask
    // A tensor-core forward that drops the causal mask (the fp32 tiles are right).
    if (broken_ == "tensor-core attention" && attention_on_tensor_cores() &&
        pass == ChunkAttentionPass::kForward)
      q.perm = nullptr;  // attends in the original order instead of the sorted one
    target_.chunk_attention(pass, q);
  }
  void gemm(const GemmDesc& d, const void* a, const void* b, float* c) override {
    GemmDesc e = d;
    if (broken_ == "gemm" && d.trans_a && d.batch > 1) e.stride_a = 0;  // ignores the stride
    // A product that reads bf16 B with the wrong leading dimension (one column less).
    if (broken_ == "bf16 operands" && d.b_type == OperandType::kBf16 && d.n > 1)
      e.ldb = d.trans_b ? d.ldb : std::max(d.k, d.ldb - 1);
    // A device library that refuses bf16 operands.
    const bool bf16 = d.a_type == OperandType::kBf16 || d.b_type == OperandType::kBf16;
    if (broken_ == "bf16 operands refused" && bf16)
      fail("CUBLAS_STATUS_NOT_SUPPORTED (a test's fault)");
    if (!bf16) return target_.gemm(e, a, b, c);
    test::gemm_of_bf16_values(target_, e, a, b, c);
  }

  Device device() const override { return device_; }
  std::string describe() const override { return "faulty cpu (" + broken_ + ")"; }
  void* allocate(size_t bytes) override { return target_.allocate(bytes); }
  void release(void* p, size_t bytes) override { target_.release(p, bytes); }
  void upload(void* d, const void* s, size_t b) override { target_.upload(d, s, b); }
  void download(void* d, const void* s, size_t b) override { target_.download(d, s, b); }
  void copy(void* d, const void* s, size_t b) override { target_.copy(d, s, b); }
  void zero(void* p, size_t b) override { target_.zero(p, b); }
  void synchronize() override {}
  size_t sort_scratch_bytes(const BucketSort& s) override { return target_.sort_scratch_bytes(s); }
  void sort_buckets(const BucketSort& s, void* scratch) override {
    target_.sort_buckets(s, scratch);
  }

 private:
  std::string broken_;
  Executor& target_ = test::cpu();
  Device device_;       // what it claims to be (kCuda: a stand-in for a GPU)
  bool bf16_operands_;  // whether it claims to take bf16 GEMM operands
};

std::unique_ptr<Executor> plain_cpu() {
  auto ex = make_cpu_executor(0);
  ex->set_kernel_variant(KernelVariant::kPlain);
  return ex;
}

// The ops whose comparisons failed.
std::set<std::string> failed_ops(const Checker& checker) {
  std::set<std::string> ops;
  for (const auto& c : checker.results())
    if (!c.passed()) ops.insert(c.op);
  return ops;
}

TEST(Selftest, ErrorMeasures) {
  EXPECT_EQ(selftest::nmse({1, 2, 3}, {1, 2, 3}), 0.0);
  EXPECT_NEAR(selftest::nmse({1, 2, 4}, {1, 2, 3}), 1.0 / 14.0, 1e-12);
  EXPECT_EQ(selftest::nmse({1, 2}, {0, 0}), 5.0);  // an all-zero reference: the plain error
  EXPECT_TRUE(std::isinf(selftest::nmse({NAN}, {1})));
  EXPECT_EQ(selftest::mismatch_fraction({1, 2, 3, 4}, {1, 2, 0, 4}), 0.25);
}

// The sweeps' inputs, drawn a batch of Philox blocks at a time, are the stream's normals one by
// one, bit for bit (odd lengths, and past the first SIMD pass of blocks).
TEST(Selftest, RandomInputsAreTheStreamsNormalsElementByElement) {
  for (const int64_t n :
       {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{7}, int64_t{129}, int64_t{1001}}) {
    const std::vector<float> v = selftest::random_floats(n, 17, 0.5f);
    ASSERT_EQ(v.size(), static_cast<size_t>(n));
    const RngStream stream = make_rng_stream(17, RngPurpose::kSampling, 0, 0, 0, 0);
    for (int64_t i = 0; i < n; ++i) {
      const float expected = 0.5f * stream.normal(static_cast<uint64_t>(i));
      ASSERT_EQ(bits_of_float(v[i]), bits_of_float(expected)) << "element " << i << " of " << n;
    }
  }
}

TEST(Selftest, TheCpuVariantsPassEveryOp) {
  for (KernelVariant variant : {KernelVariant::kTuned, KernelVariant::kGpuIndexing}) {
    auto candidate = make_cpu_executor(0);
    candidate->set_kernel_variant(variant);
    auto reference = plain_cpu();
    Checker checker(*candidate, *reference);
    selftest::check_all_ops(checker, {});
    EXPECT_TRUE(failed_ops(checker).empty()) << *failed_ops(checker).begin();
    EXPECT_GT(checker.results().size(), 200u);
  }
}

TEST(Selftest, AWrongKernelIsFoundAndNamed) {
  const std::vector<std::pair<std::string, std::set<std::string>>> faults = {
      {"layer_norm", {"layer_norm_forward"}},
      {"attention keys", {"attention backward"}},
      {"gemm", {"gemm (GemmDesc)"}}};
  for (const auto& [broken, expected] : faults) {
    FaultyExecutor candidate(broken);
    auto reference = plain_cpu();
    Checker checker(candidate, *reference);
    selftest::check_all_ops(checker, {});
    EXPECT_EQ(failed_ops(checker), expected) << broken;
  }
}

// Start-up verification's sweeps stop at the first failing comparison: the same comparisons as
// the whole sweep up to it, that one recorded last, then FirstFailureRecorded.
TEST(Selftest, ACheckerStoppingAtTheFirstFailureEndsTheSweepThere) {
  FaultyExecutor candidate("layer_norm");
  auto reference = plain_cpu();
  selftest::SweepOptions quick;
  quick.quick = true;
  Checker whole(candidate, *reference);
  selftest::check_all_ops(whole, quick);
  const auto& all = whole.results();
  const size_t first = static_cast<size_t>(
      std::find_if(all.begin(), all.end(), [](const auto& c) { return !c.passed(); }) -
      all.begin());
  ASSERT_LT(first + 1, all.size()) << "the planted fault should fail before the sweep's end";

  Checker stopping(candidate, *reference);
  stopping.stop_at_first_failure();
  EXPECT_THROW(selftest::check_all_ops(stopping, quick), selftest::FirstFailureRecorded);
  const auto& got = stopping.results();
  ASSERT_EQ(got.size(), first + 1);
  for (size_t i = 0; i <= first; ++i) {
    EXPECT_EQ(got[i].op, all[i].op);
    EXPECT_EQ(got[i].shape, all[i].shape);
    EXPECT_EQ(got[i].passed(), i < first) << got[i].op << " " << got[i].shape;
  }
  EXPECT_EQ(got.back().op, "layer_norm_forward");
}

// A tuned kernel that differs is replaced by the reference functors, with a note; a kernel that
// differs in every variant is refused.
TEST(Selftest, StartUpVerificationFallsBackOrRefuses) {
  FaultyExecutor tuned_broken("attention keys (tuned only)");
  const std::string note = verify_kernels_or_fail(tuned_broken, GemmPrecision::kFp32);
  EXPECT_NE(note.find("attention backward"), std::string::npos) << note;
  EXPECT_EQ(tuned_broken.kernel_variant(), KernelVariant::kGpuIndexing);

  FaultyExecutor broken("layer_norm");
  try {
    verify_kernels_or_fail(broken, GemmPrecision::kFp32);
    FAIL() << "a wrong layer norm was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer_norm_forward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("reformer selftest --device cuda"), std::string::npos);
  }
  FaultyExecutor sound("nothing");
  EXPECT_EQ(verify_kernels_or_fail(sound, GemmPrecision::kFp32), "");
  EXPECT_EQ(sound.kernel_variant(), KernelVariant::kTuned);
}

// Where the candidate takes bf16 operands (a GPU or the CPU at bf16; here an emulation that runs
// on any CPU), the products that read them and the kernels that write them are checked too.
// (The sweep of a sound candidate is a test of its own, which the ASan run keeps: it runs the
// bf16-operand paths. The planted faults below run that code again, wrongly on purpose; they
// check the selftest's verdicts, not memory, and run in the plain suite only: launch/sanitize.sh.)
const char* const kBf16Ops[] = {"gemm (bf16 operands)",
                                "layer_norm_forward (bf16 out)",
                                "layer_norm_backward (bf16 out)",
                                "layer_norm_backward (+=, bf16 out)",
                                "bias_activation_forward (bf16 out)",
                                "activation_backward (bf16 out)"};

selftest::SweepOptions bf16_sweep() {
  selftest::SweepOptions sweep;
  sweep.precision = GemmPrecision::kBf16;
  return sweep;
}

TEST(Selftest, ABf16CandidatePassesEveryOpWithItsBf16OpsChecked) {
  FaultyExecutor candidate("nothing", Device::kCpu, true);
  ASSERT_TRUE(candidate.gemm_takes_bf16_operands());
  auto reference = plain_cpu();
  Checker checker(candidate, *reference);
  selftest::check_all_ops(checker, bf16_sweep());
  EXPECT_EQ(failed_ops(checker), std::set<std::string>{});
  std::set<std::string> ops;
  for (const auto& c : checker.results()) ops.insert(c.op);
  for (const char* op : kBf16Ops) EXPECT_EQ(ops.count(op), 1u) << op << " not checked";
  // Without bf16 operands (fp32 candidates) those checks do not run.
  FaultyExecutor fp32("nothing");
  Checker fp32_checker(fp32, *reference);
  selftest::check_all_ops(fp32_checker, {});
  for (const auto& c : fp32_checker.results())
    EXPECT_EQ(c.op.find("bf16"), std::string::npos) << c.op;
}

// A wrong bf16 operand or bf16-writing kernel is named, and only it.
TEST(Selftest, WrongBf16OperandsAreFoundAndNamed) {
  const std::vector<std::pair<std::string, std::set<std::string>>> faults = {
      {"bf16 operands", {"gemm (bf16 operands)"}},
      {"layer_norm bf16", {"layer_norm_forward (bf16 out)"}},
      {"layer_norm backward bf16",
       {"layer_norm_backward (bf16 out)", "layer_norm_backward (+=, bf16 out)"}}};
  for (const auto& [broken, expected] : faults) {
    FaultyExecutor candidate(broken, Device::kCpu, true);
    ASSERT_TRUE(candidate.gemm_takes_bf16_operands());
    auto reference = plain_cpu();
    Checker checker(candidate, *reference);
    selftest::check_all_ops(checker, bf16_sweep());
    EXPECT_EQ(failed_ops(checker), expected) << broken;
  }
}

// A wrong product of bf16 operands, or one the device refuses (an error): training goes on with
// fp32 operands and the tuned kernels; a wrong bf16 output of a tuned kernel: the same (those
// operands are then fp32).
TEST(Selftest, StartUpVerificationTurnsOffWrongBf16Operands) {
  for (const char* broken :
       {"bf16 operands", "bf16 operands refused", "layer_norm bf16", "layer_norm backward bf16"}) {
    FaultyExecutor candidate(broken, Device::kCpu, true);
    const std::string note = verify_kernels_or_fail(candidate, GemmPrecision::kBf16);
    EXPECT_NE(note.find("fp32 GEMM operands instead of bf16 ones"), std::string::npos) << note;
    if (std::string(broken) == "bf16 operands refused") {
      EXPECT_NE(note.find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << note;
    }
    EXPECT_FALSE(candidate.gemm_takes_bf16_operands()) << broken;
    EXPECT_EQ(candidate.kernel_variant(), KernelVariant::kTuned) << broken;
  }
  FaultyExecutor sound("nothing", Device::kCpu, true);
  EXPECT_EQ(verify_kernels_or_fail(sound, GemmPrecision::kBf16), "");
  EXPECT_TRUE(sound.gemm_takes_bf16_operands());
}

// A wrong tensor-core attention forward: training goes on with the fp32 attention tiles, bf16
// GEMM operands and the tuned kernels.
TEST(Selftest, StartUpVerificationTurnsOffWrongTensorCoreAttention) {
  FaultyExecutor candidate("tensor-core attention", Device::kCuda, true);
  ASSERT_TRUE(candidate.attention_on_tensor_cores());
  const std::string note = verify_kernels_or_fail(candidate, GemmPrecision::kBf16);
  EXPECT_NE(note.find("attention forward"), std::string::npos) << note;
  EXPECT_NE(note.find("the fp32 attention tiles instead of the tensor-core forward"),
            std::string::npos)
      << note;
  EXPECT_FALSE(candidate.attention_on_tensor_cores());
  EXPECT_TRUE(candidate.gemm_takes_bf16_operands());
  EXPECT_EQ(candidate.kernel_variant(), KernelVariant::kTuned);
  // A wrong product of bf16 operands also turns the tensor-core forward off (it is tried first).
  FaultyExecutor products("bf16 operands", Device::kCuda, true);
  verify_kernels_or_fail(products, GemmPrecision::kBf16);
  EXPECT_FALSE(products.gemm_takes_bf16_operands());
  EXPECT_FALSE(products.attention_on_tensor_cores());
}

// Every command's executor comes from make_rank_executor, which checks a GPU's kernels
// (check_rank_executor) unless runtime.verify_kernels is off; CPU executors are not checked.
TEST(Selftest, EveryCommandChecksAGpuExecutorAtStartUp) {
  RuntimeConfig runtime;
  runtime.device = Device::kCuda;
  std::ostringstream notes;
  FaultyExecutor wrong_gpu("layer_norm", Device::kCuda);
  EXPECT_THROW(check_rank_executor(wrong_gpu, runtime, 0, notes), Error);
  FaultyExecutor tuned_wrong_gpu("attention keys (tuned only)", Device::kCuda);
  check_rank_executor(tuned_wrong_gpu, runtime, 0, notes);
  EXPECT_EQ(tuned_wrong_gpu.kernel_variant(), KernelVariant::kGpuIndexing);
  EXPECT_NE(notes.str().find("attention backward"), std::string::npos) << notes.str();
  std::ostringstream other_rank;  // (the note comes from local rank 0 only)
  FaultyExecutor again("attention keys (tuned only)", Device::kCuda);
  check_rank_executor(again, runtime, 1, other_rank);
  EXPECT_EQ(other_rank.str(), "");
  runtime.verify_kernels = false;
  FaultyExecutor unchecked("layer_norm", Device::kCuda);
  EXPECT_NO_THROW(check_rank_executor(unchecked, runtime, 0, notes));
  runtime.verify_kernels = true;
  FaultyExecutor cpu("layer_norm");
  EXPECT_NO_THROW(check_rank_executor(cpu, runtime, 0, notes));
  // runtime.tensor_core_attention: false keeps the attention off the tensor cores (no fallback
  // needed for a wrong tensor-core forward); true leaves them to the check.
  std::ostringstream quiet;
  runtime.precision = GemmPrecision::kBf16;
  runtime.tensor_core_attention = false;
  FaultyExecutor off("tensor-core attention", Device::kCuda, true);
  check_rank_executor(off, runtime, 0, quiet);
  EXPECT_FALSE(off.attention_on_tensor_cores());
  EXPECT_EQ(quiet.str(), "");
  runtime.tensor_core_attention = true;
  FaultyExecutor on("nothing", Device::kCuda, true);
  check_rank_executor(on, runtime, 0, quiet);
  EXPECT_TRUE(on.attention_on_tensor_cores());
  EXPECT_EQ(quiet.str(), "");
}

TEST(Selftest, CommandReportsEveryOpAndTheVerdictAsJson) {
  SelftestOptions options;
  options.quick = true;
  options.json = true;
  std::ostringstream out;
  EXPECT_EQ(run_selftest(options, out), 0);
  const std::string json = out.str();
  for (const char* op : {"\"gemm (GemmDesc)\"", "\"layer_norm_backward\"", "\"attention forward\"",
                         "\"attention backward\"", "\"adamw_update\"", "\"lsh_sort\"",
                         "\"training micro-step\"", "\"passed\": true"})
    EXPECT_NE(json.find(op), std::string::npos) << op << " missing from " << json;
}

}  // namespace
}  // namespace rf
