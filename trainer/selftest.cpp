#include "trainer/selftest.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "kernels/cpu/bf16_gemm.h"
#include "kernels/selftest/op_checks.h"
#include "trainer/metrics.h"
#include "trainer/model.h"

namespace rf {
namespace {

using selftest::Checker;
using selftest::Comparison;

// A tiny model that runs every layer type: LSH (two rounds), local and dense attention, axial
// positions, dropout everywhere, chunked feed-forward and head.
Config micro_step_config() {
  return load_config_text(R"(
model:
  vocab_size: 13
  d_model: 24
  d_ff: 40
  n_layers: 3
  n_heads: 2
  d_head: 16
  attention: [lsh, local, dense]
  dropout: 0.1
  attention_dropout: 0.1
  position: axial
  axial_shape: [8, 8]
  ff_chunk: 40
  head_chunk: 48
lsh:
  bucket_size: 8
  n_hashes: 2
  local_chunk: 16
train:
  seq_len: 64
  batch_size: 2
  seed: 5
)",
                          "selftest micro-step", {});
}

struct MicroStep {
  double loss = 0.0;
  std::vector<float> grads;
  std::vector<std::vector<int32_t>> buckets;  // per layer
};

// One forward-backward of the tiny model on `ex`; with `buckets`, every LSH layer uses them.
MicroStep micro_step(Executor& ex, const std::vector<std::vector<int32_t>>* buckets) {
  const Config cfg = micro_step_config();
  ReformerModel model(cfg, ex);
  TokenBatch batch;
  batch.batch = cfg.train.batch_size;
  batch.seq_len = cfg.train.seq_len;
  batch.inputs = selftest::random_ints(batch.batch * batch.seq_len, 71, 13);
  batch.targets = selftest::random_ints(batch.batch * batch.seq_len, 72, 13);
  StepContext step;
  step.seed = 9;
  step.step = 4;
  step.batch = batch.batch;
  step.seq_len = batch.seq_len;
  if (buckets) {
    for (size_t layer = 0; layer < buckets->size(); ++layer)
      model.stack().set_stored_buckets(ex, static_cast<int64_t>(layer), (*buckets)[layer]);
    model.stack().freeze_buckets = true;
  }
  model.params().zero_grads();
  MicroStep r;
  r.loss = model.forward_backward(batch, step, 1.0f / 128).loss_sum;
  r.grads.resize(model.params().size());
  ex.download(r.grads.data(), model.params().grads(), r.grads.size() * sizeof(float));
  for (int64_t layer = 0; layer < model.stack().n_layers(); ++layer) {
    const DeviceBuffer<int32_t>& stored = model.stack().stored_buckets(layer);
    r.buckets.push_back(stored.size() ? stored.download() : std::vector<int32_t>());
  }
  ex.synchronize();
  return r;
}

// The verdict of one op of one candidate over all its shapes.
struct OpSummary {
  std::string candidate, op;
  int64_t shapes = 0;
  Comparison worst;
  bool passed = true;
};

std::vector<OpSummary> summarize(const std::string& candidate,
                                 const std::vector<Comparison>& results) {
  std::vector<OpSummary> ops;
  std::map<std::string, size_t> index;
  for (const Comparison& c : results) {
    auto it = index.find(c.op);
    if (it == index.end()) {
      it = index.emplace(c.op, ops.size()).first;
      ops.push_back({candidate, c.op, 0, c, true});
    }
    OpSummary& s = ops[it->second];
    ++s.shapes;
    if (c.margin() > s.worst.margin()) s.worst = c;
    s.passed = s.passed && c.passed();
  }
  return ops;
}

void print_table(const std::vector<OpSummary>& ops, std::ostream& out) {
  char line[400];
  std::snprintf(line, sizeof(line), "  %-34s %6s  %11s  %9s  %s\n", "op", "shapes", "worst error",
                "tolerance", "worst at");
  out << line;
  for (const OpSummary& s : ops) {
    const std::string where =
        s.worst.error > 0 ? s.worst.shape + " (" + s.worst.output + ")" : "(all identical)";
    std::snprintf(line, sizeof(line), "  %-34s %6lld  %11.2e  %9.1e  %-52s %s\n", s.op.c_str(),
                  static_cast<long long>(s.shapes), s.worst.error, s.worst.tolerance, where.c_str(),
                  s.passed ? "ok" : "FAILED");
    out << line;
  }
}

std::string json_report(const std::string& reference, const std::vector<OpSummary>& ops,
                        bool passed, GemmPrecision precision) {
  std::ostringstream s;
  s << "{\"reference\": \"" << json_escape(reference) << "\", \"precision\": \""
    << precision_name(precision) << "\", \"passed\": " << (passed ? "true" : "false")
    << ", \"ops\": [";
  for (size_t i = 0; i < ops.size(); ++i) {
    const OpSummary& o = ops[i];
    s << (i ? ", " : "")
      << JsonLine()
             .add("candidate", o.candidate)
             .add("op", o.op)
             .add("shapes", o.shapes)
             .add("worst_error", o.worst.error)
             .add("tolerance", o.worst.tolerance)
             .add("worst_shape", o.worst.shape)
             .add("worst_output", o.worst.output)
             .add_flag("passed", o.passed)
             .str();
  }
  s << "]}";
  return s.str();
}

struct Candidate {
  std::string name;
  std::unique_ptr<Executor> ex;
};

std::unique_ptr<Executor> reference_executor() {
  std::unique_ptr<Executor> ref = make_cpu_executor(0, GemmPrecision::kFp32);
  ref->set_kernel_variant(KernelVariant::kPlain);
  return ref;
}

}  // namespace

// (The reference's LSH buckets are held fixed: an argmax that ties within rounding may go either
// way.)
void check_training_micro_step(Checker& checker, GemmPrecision precision, std::ostream& notes) {
  const MicroStep want = micro_step(checker.reference(), nullptr);
  const MicroStep got = micro_step(checker.candidate(), &want.buckets);
  Comparison c;
  c.op = "training micro-step";
  c.shape = "3 layers [lsh, local, dense], 2 x 64 tokens, dropout";
  c.output = "loss and gradients";
  // The loss and the gradients each by their own NMSE (the loss would swamp the gradients'
  // norm).
  const auto error = [&](const MicroStep& x) {
    const std::vector<float> loss = {static_cast<float>(x.loss)};
    return std::max(selftest::nmse(x.grads, want.grads),
                    selftest::nmse(loss, {static_cast<float>(want.loss)}));
  };
  c.error = error(got);
  if (precision != GemmPrecision::kFp32) {
    // Held to twice (in RMS) the error of a naive implementation at that precision: the CPU's
    // bf16 products (exact products of rounded operands). There is none for tf32 on the CPU.
    if (precision != GemmPrecision::kBf16 || !cpu_has_bf16_dot_products()) {
      notes << "  (training micro-step at " << precision_name(precision)
            << " not compared: no naive " << precision_name(precision)
            << " reference on this CPU)\n";
      return;
    }
    const std::unique_ptr<Executor> naive = make_cpu_executor(0, GemmPrecision::kBf16);
    naive->set_kernel_variant(KernelVariant::kPlain);
    c.op += std::string(" at ") + precision_name(precision);
    c.tolerance =
        std::max(4.0 * error(micro_step(*naive, &want.buckets)), selftest::kFp32Tolerance);
  }
  checker.record(c);
}

namespace {

// What a selftest that cannot run here says, on stderr and (--json) as an object on stdout, so
// that a JSON reader gets one rather than empty input.
int skipped(const SelftestOptions& options, std::ostream& out, const std::string& why) {
  std::cerr << "selftest: skipped: " << why << std::endl;
  if (options.json)
    out << JsonLine()
               .add("device", device_name(options.device))
               .add("precision", precision_name(options.precision))
               .add("skipped", why)
               .str()
        << std::endl;
  return kSelftestSkipped;
}

}  // namespace

int run_selftest(const SelftestOptions& options, std::ostream& out) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Candidate> candidates;
  if (options.device == Device::kCuda) {
    if (!cuda_compiled_in() || cuda_device_count() == 0)
      return skipped(options, out,
                     cuda_compiled_in() ? "no CUDA device is visible"
                                        : "this build has no CUDA (nvcc was not found when CMake "
                                          "configured it)");
    std::unique_ptr<Executor> gpu = make_cuda_executor(0, options.precision);
    candidates.push_back({gpu->describe(), std::move(gpu)});
  } else {
    if (options.precision == GemmPrecision::kBf16 && !cpu_has_bf16_dot_products())
      return skipped(options, out,
                     "this CPU has no bf16 dot-product instructions (AVX512-BF16 or AMX)");
    std::unique_ptr<Executor> tuned = make_cpu_executor(0, options.precision);
    candidates.push_back({"cpu tuned", std::move(tuned)});
    if (options.precision == GemmPrecision::kFp32) {
      std::unique_ptr<Executor> indexing = make_cpu_executor(0, GemmPrecision::kFp32);
      indexing->set_kernel_variant(KernelVariant::kGpuIndexing);
      candidates.push_back({"cpu gpu-indexing", std::move(indexing)});
    }
  }
  const std::unique_ptr<Executor> reference = reference_executor();
  const std::string reference_name = "cpu plain kernels (" + reference->describe() + ")";
  selftest::SweepOptions sweep;
  sweep.precision = options.precision;
  sweep.quick = options.quick;

  std::vector<OpSummary> all;
  std::ostringstream notes;
  for (Candidate& c : candidates) {
    Checker checker(*c.ex, *reference);
    selftest::check_all_ops(checker, sweep);
    check_training_micro_step(checker, options.precision, notes);
    const std::vector<OpSummary> ops = summarize(c.name, checker.results());
    if (!options.json) {
      out << "selftest: " << c.name << " at " << precision_name(options.precision)
          << " against the " << reference_name << "\n";
      print_table(ops, out);
    }
    all.insert(all.end(), ops.begin(), ops.end());
  }
  int failed = 0;
  for (const OpSummary& o : all) failed += !o.passed;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (options.json) {
    out << json_report(reference_name, all, failed == 0, options.precision) << std::endl;
  } else {
    out << notes.str();
    char line[200];
    std::snprintf(line, sizeof(line), "selftest: %zu ops x candidates, %d failed (%.1f s)\n",
                  all.size(), failed, seconds);
    out << line << (failed ? "selftest: FAILED\n" : "selftest: all passed\n");
  }
  return failed ? 1 : 0;
}

namespace {

// The first failing comparison of the quick sweep on `ex`, or null; the sweep stops there. An op
// that throws (a cuBLAS call the device refuses, say) fails too, so that the fallbacks get their
// turn.
std::unique_ptr<Comparison> first_failure(Executor& ex, GemmPrecision precision) {
  const std::unique_ptr<Executor> reference = reference_executor();
  Checker checker(ex, *reference);
  checker.stop_at_first_failure();
  selftest::SweepOptions sweep;
  sweep.precision = precision;
  sweep.quick = true;
  try {
    selftest::check_all_ops(checker, sweep);
  } catch (const selftest::FirstFailureRecorded&) {
    return std::make_unique<Comparison>(checker.results().back());
  } catch (const Error& e) {
    Comparison c;
    c.op = "the op after " +
           (checker.results().empty() ? std::string("none") : checker.results().back().op);
    c.shape = std::string("an error: ") + e.what();
    c.output = "no output";
    c.error = INFINITY;
    return std::make_unique<Comparison>(c);  // (no failure came before it)
  }
  return nullptr;  // (every comparison passed: a failure would have ended the sweep)
}

std::string failure_text(const Executor& ex, const Comparison& c) {
  std::ostringstream s;
  s << ex.describe() << " computes " << c.op << " differently from the CPU reference (" << c.output
    << " at " << c.shape << ": error " << c.error << " > " << c.tolerance << ")";
  return s.str();
}

}  // namespace

std::string verify_kernels_or_fail(Executor& ex, GemmPrecision precision) {
  const std::unique_ptr<Comparison> first = first_failure(ex, precision);
  if (!first) return "";
  const std::string first_text = failure_text(ex, *first);  // (before a fallback changes `ex`)
  // The fallbacks, fastest first: the fp32 attention tiles instead of the tensor-core forward
  // (where the executor runs it), fp32 GEMM operands instead of bf16 ones written by the kernels
  // (where the executor takes them), then the reference functors with the GPU's indexing, with
  // and then without bf16 operands. After the first, attention stays off the tensor cores.
  struct Fallback {
    KernelVariant variant;
    bool bf16_operands, tensor_cores;
    const char* what;
  };
  const KernelVariant variant = ex.kernel_variant();
  const bool bf16 = ex.gemm_takes_bf16_operands();
  const bool tensor_cores = ex.attention_on_tensor_cores() && variant == KernelVariant::kTuned;
  std::vector<Fallback> fallbacks;
  if (tensor_cores)
    fallbacks.push_back(
        {variant, bf16, false, "the fp32 attention tiles instead of the tensor-core forward"});
  if (bf16) fallbacks.push_back({variant, false, false, "fp32 GEMM operands instead of bf16 ones"});
  if (variant == KernelVariant::kTuned) {
    fallbacks.push_back(
        {KernelVariant::kGpuIndexing, bf16, false, "the reference kernels instead"});
    if (bf16)
      fallbacks.push_back({KernelVariant::kGpuIndexing, false, false,
                           "the reference kernels and fp32 GEMM operands instead"});
  }
  std::unique_ptr<Comparison> last = nullptr;
  for (const Fallback& f : fallbacks) {
    ex.set_kernel_variant(f.variant);
    ex.set_bf16_operands(f.bf16_operands);
    ex.set_tensor_core_attention(f.tensor_cores);
    last = first_failure(ex, precision);
    if (!last)
      return "note: the " + first_text + "; running with " + f.what +
             " (slower). Please report the output of `reformer selftest --device cuda`.";
  }
  if (last)
    fail("the ", failure_text(ex, *last),
         variant == KernelVariant::kTuned ? " with its reference kernels too"
                                          : " with fp32 GEMM operands too",
         "; refusing to run on it. Run `reformer selftest --device cuda` for the full report, or "
         "set ",
         "runtime.verify_kernels=false to run anyway");
  fail("the ", first_text, "; refusing to run on it. Run `reformer selftest ",
       "--device cuda` for the full report, or set runtime.verify_kernels=false to run anyway");
}

}  // namespace rf
