// Times full training steps (forward, reversible backward, gradient averaging across ranks,
// clipping norm, AdamW) of a config on random tokens and prints one JSON line (rank 0): median
// step time, tokens/s, counted GFLOP/s, that rate as a fraction of the executor's GEMM rate
// measured in the same process (sgemm_gflops: on a CPU the median of 2048³ products run between
// the timed steps, InterleavedCpuProbe; the CPU executor's fp32 product — OpenBLAS, or
// oneDNN on AVX-512 CPUs — or its bf16 product in oneDNN; cuBLAS at the configured precision on
// a GPU), peak memory, and the time spent waiting for the gradient
// all-reduce after the backward pass (with --overlap on, buckets start as layers finish; with
// off, all start after the backward pass, so the wait is the whole reduction). With
// model.memory_len each step also attends to the memory the steps before it left. --profile-ops
// adds a table (stderr) of where the timed steps' time went, launch by launch.
//   step_bench --config bench/reference.yaml --set train.seq_len=65536 ... [--steps N]
//   mpirun -np 2 step_bench --config ... [--overlap on|off]
#include <cblas.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>

#include "bench/bench_median.h"
#include "bench/command_line.h"
#include "kernels/cpu/openblas_core.h"
#include "kernels/device_buffer.h"
#include "kernels/launch_recorder.h"
#include "kernels/linear.h"
#include "kernels/profile.h"
#include "trainer/flop_count.h"
#include "trainer/gradient_averages.h"
#include "trainer/job.h"
#include "trainer/metrics.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/schedule.h"
#include "trainer/segment_memory.h"
#include "trainer/step_graphs.h"
#include "trainer/train_loop.h"

extern "C" char* openblas_get_corename(void);

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// GFLOP/s of an n x n x n product that took `seconds`.
double square_gflops(int n, double seconds) {
  return 2.0 * n * n * static_cast<double>(n) / seconds / 1e9;
}

// C = A B for n x n matrices through the executor, waited for.
void square_product(rf::Executor& ex, const float* a, const float* b, float* c, int n) {
  rf::linear_forward(ex, rf::matrix(a, n, n), rf::matrix(b, n, n), rf::matrix(c, n, n));
  ex.synchronize();
}

// The rate of an n x n x n product `square` computes (it returns when the product is done): its
// median over `repeats` runs after one untimed run.
template <class Square>
double square_gemm_gflops(int n, int repeats, const Square& square) {
  square();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto t = Clock::now();
    square();
    times.push_back(seconds_since(t));
  }
  std::sort(times.begin(), times.end());
  return square_gflops(n, times[times.size() / 2]);
}

// GEMM rate of a large square product through the same executor (fp32 in OpenBLAS, or oneDNN on
// AVX-512 CPUs; bf16 in oneDNN; cuBLAS at the configured precision on a GPU): the ceiling the
// training step is compared with.
double executor_gemm_gflops(rf::Executor& ex, int n, int repeats) {
  const size_t count = static_cast<size_t>(n) * n;
  rf::DeviceBuffer<float> a(ex, count), b(ex, count), c(ex, count);
  a.upload(std::vector<float>(count, 0.5f));
  b.upload(std::vector<float>(count, 0.25f));
  return square_gemm_gflops(n, repeats,
                            [&] { square_product(ex, a.data(), b.data(), c.data(), n); });
}

// The CPU executor's GEMM rate sampled between the timed steps. A shared VM's rate drifts by
// 10-20% within seconds (the 2048³ product measured 110-166 GFLOP/s a second apart on a 2-core
// EPYC, 2026-12-07), so a probe run once after the steps compared the step with the machine of
// another moment. Host buffers, which the executor's peak does not count; they are filled before
// the model is built and held to the end, so the peak RSS counts exactly their bytes, and
// peak_rss_gib subtracts them.
class InterleavedCpuProbe {
 public:
  static constexpr int kSize = 2048;
  static constexpr int kProductsPerStep = 3;

  InterleavedCpuProbe() : a_(kCount, 0.5f), b_(kCount, 0.25f), c_(kCount) {}

  // kProductsPerStep timed products (after one untimed product the first time).
  void sample(rf::Executor& ex) {
    if (gflops_.empty()) product(ex);
    for (int i = 0; i < kProductsPerStep; ++i) {
      const auto t = Clock::now();
      product(ex);
      gflops_.push_back(square_gflops(kSize, seconds_since(t)));
    }
  }
  double median_gflops() const { return rf::bench::median(gflops_); }
  double min_gflops() const { return *std::min_element(gflops_.begin(), gflops_.end()); }
  double max_gflops() const { return *std::max_element(gflops_.begin(), gflops_.end()); }
  static double gib() { return 3.0 * kCount * sizeof(float) / (1024.0 * 1024.0 * 1024.0); }

 private:
  static constexpr size_t kCount = static_cast<size_t>(kSize) * kSize;
  void product(rf::Executor& ex) { square_product(ex, a_.data(), b_.data(), c_.data(), kSize); }
  std::vector<float> a_, b_, c_;
  std::vector<double> gflops_;
};

// OpenBLAS's own SGEMM rate on a 2048³ product (host memory, all OpenMP threads), reported next
// to the executor's rate: on AVX-512 CPUs the executor's fp32 products run in oneDNN, and the
// comparisons with other programs name the BLAS rate of the machine.
double openblas_sgemm_gflops(int repeats) {
  const int n = 2048;
  const size_t count = static_cast<size_t>(n) * n;
  std::vector<float> a(count, 0.5f), b(count, 0.25f), c(count);
  return square_gemm_gflops(n, repeats, [&] {
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
}

// The launch timing of `steps` steps as a table, most time first: ms per step, share of the
// steps' time, launches per step, GFLOP/s for GEMMs, name.
void print_launch_times(const rf::LaunchRecorder& timer, int steps, double total_seconds) {
  std::vector<std::pair<std::string, rf::LaunchRecorder::LaunchTime>> rows(
      timer.launch_times().begin(), timer.launch_times().end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double launched = 0;
  for (const auto& r : rows) launched += r.second.seconds;
  char line[256];
  std::snprintf(line, sizeof(line),
                "launch times over %d steps of %.1f ms (each launch waited for; %.1f ms per step "
                "in launches, the rest on the host):\n",
                steps, 1e3 * total_seconds / steps, 1e3 * launched / steps);
  std::cerr << "\n" << line << "  ms/step   share  launches/step  GFLOP/s  launch\n";
  for (const auto& [name, t] : rows) {
    const std::string rate =
        t.flop > 0 ? std::to_string(static_cast<int64_t>(t.flop / t.seconds / 1e9)) : "";
    std::snprintf(line, sizeof(line), "%9.2f  %5.1f%%  %13.1f  %7s  %s\n", 1e3 * t.seconds / steps,
                  100 * t.seconds / total_seconds, static_cast<double>(t.launches) / steps,
                  rate.c_str(), name.c_str());
    std::cerr << line;
  }
}

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB
}

}  // namespace

int main(int argc, char** argv) try {
  rf::restart_without_openblas_fallback();
  rf::bench::CommandLine app("times training steps of a config");
  std::string config_path;
  std::vector<std::string> overrides;
  int steps = 5, warmup = -1;
  std::string overlap = "on";
  bool profile = false, profile_ops = false;
  app.option("--config", config_path, "experiment YAML", rf::bench::required());
  app.option("--set", overrides, "overrides");
  app.option("--steps", steps, "timed steps");
  app.option("--warmup", warmup,
             "untimed steps first (default 1, or 2 with model.memory_len: the first step's "
             "memory is empty, and the second's larger buffers would be first touched while "
             "timed)");
  app.option("--overlap", overlap, "start gradient buckets during the backward pass",
             rf::bench::one_of({"on", "off"}));
  app.flag("--profile", profile,
           "time the attention and LSH launchers (synchronising around them); adds their "
           "share of the step to the output");
  app.flag("--profile-ops", profile_ops,
           "time every launch (kernels, GEMMs by shape, attention passes), waiting for each; "
           "prints where the timed steps' time went as a table on stderr");
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;
  const rf::Config cfg = rf::load_config(config_path, overrides);
  if (warmup < 0) warmup = cfg.model.memory_len > 0 ? 2 : 1;
  if ((profile || profile_ops) && cfg.runtime.step_graphs)
    rf::fail(profile ? "--profile" : "--profile-ops",
             " waits for the device around launches, which a step graph cannot hold; leave it "
             "out or set runtime.step_graphs: false");
  rf::LauncherProfile::global().enabled = profile;
  rf::JobComms comms = rf::make_job_comms(cfg.runtime);
  rf::Communicator& comm = comms.device();
  std::unique_ptr<rf::Executor> ex =
      rf::make_rank_executor(cfg.runtime, comms.host->local_rank(), comms.host->local_size());
  std::optional<InterleavedCpuProbe> cpu_probe;  // before the model: see InterleavedCpuProbe
  if (ex->device() == rf::Device::kCpu) cpu_probe.emplace();
  rf::LaunchRecorder* launch_timer = nullptr;  // with --profile-ops: every launch passes it
  if (profile_ops) {
    auto timer = std::make_unique<rf::LaunchRecorder>(std::move(ex));
    launch_timer = timer.get();
    ex = std::move(timer);
  }
  rf::ReformerModel model(cfg, *ex);
  rf::AdamW optimizer(*ex, model.params(), cfg.train);
  std::unique_ptr<rf::StepGraphs> graphs;
  if (cfg.runtime.step_graphs)
    graphs = std::make_unique<rf::StepGraphs>(*ex, rf::any_rank_of(*comms.host));
  // Device work of the step, from a graph with runtime.step_graphs.
  auto run_part = [&](int part, int64_t rows, const std::function<void()>& work) {
    if (graphs)
      graphs->run(part, rows, work);
    else
      work();
  };
  const int64_t B = cfg.train.batch_size, T = cfg.train.seq_len;
  rf::TokenBatch batch;
  batch.batch = B;
  batch.seq_len = T;
  std::mt19937 gen(1);
  for (int64_t i = 0; i < B * T; ++i) {
    batch.inputs.push_back(static_cast<int32_t>(gen() % cfg.model.vocab_size));
    batch.targets.push_back(static_cast<int32_t>(gen() % cfg.model.vocab_size));
  }
  // With model.memory_len, Transformer-XL's recurrence: every step attends to the layer inputs
  // of the steps before (full from the second step on; the default --warmup counts it).
  rf::SegmentMemory memory(cfg.model.memory_len);
  rf::SegmentMemory* step_memory = cfg.model.memory_len > 0 ? &memory : nullptr;
  std::vector<double> times, waits;
  int64_t launches_per_step = 0, memory_operations_per_step = 0;
  rf::ParamStore& params = model.params();
  if (launch_timer) launch_timer->set_launch_timing(warmup == 0);
  for (int s = 0; s < warmup + steps; ++s) {
    const auto t = Clock::now();
    const int64_t launches_before = ex->launches(), memory_before = ex->memory_operations();
    rf::StepContext ctx;
    ctx.seed = 1;
    ctx.step = static_cast<uint32_t>(s);
    ctx.example_base = static_cast<uint32_t>(comms.host->rank() * B);
    ctx.batch = B;
    ctx.seq_len = T;
    const bool multi = comm.size() > 1;
    const rf::StepContext staged = model.stage(batch, ctx);
    run_part(0, B * T, [&] {
      model.params().zero_grads();
      // --overlap on: each bucket's average starts as the backward pass finishes it (inside
      // the step graph, with step graphs).
      model.compute_forward_backward(
          staged, 1.0f / static_cast<float>(B * T),
          [&](int group) {
            if (multi && overlap == "on") rf::start_gradient_average(*ex, comm, params, group);
          },
          step_memory);
      if (multi && overlap == "on") rf::order_after_gradient_averages(*ex, comm);
    });
    if (multi && overlap == "off")  // all after the backward pass (and outside any graph)
      for (size_t g = 0; g < params.groups().size(); ++g)
        rf::start_gradient_average(*ex, comm, params, static_cast<int>(g));
    // Awaited before the losses are read, which would wait for them without a deadline
    // (trainer/gradient_averages.h); on a GPU the wait includes the backward's tail.
    const auto wait_start = Clock::now();
    comm.wait_all();
    if (s >= warmup) waits.push_back(seconds_since(wait_start));
    model.collect(batch);
    optimizer.prepare(rf::learning_rate(cfg.train, s));
    run_part(1, 0, [&] { optimizer.compute(); });
    optimizer.finish();
    ex->synchronize();
    launches_per_step = ex->launches() - launches_before;
    memory_operations_per_step = ex->memory_operations() - memory_before;
    if (s >= warmup) times.push_back(seconds_since(t));
    if (s + 1 == warmup) rf::LauncherProfile::global().seconds.clear();
    if (launch_timer) launch_timer->set_launch_timing(false);
    if (cpu_probe && s >= warmup) cpu_probe->sample(*ex);
    if (launch_timer) launch_timer->set_launch_timing(s + 1 >= warmup && s + 1 < warmup + steps);
    std::cerr << "\rstep " << s + 1 << "/" << warmup + steps << std::flush;
  }
  std::cerr << "\r";
  std::sort(times.begin(), times.end());
  double total_seconds = 0;
  for (double t : times) total_seconds += t;
  // The fraction of the timed steps a group of launchers took (-1 without --profile).
  auto share_of_steps = [&](const char* group) {
    return profile ? rf::LauncherProfile::global().seconds[group] / total_seconds : -1.0;
  };
  std::sort(waits.begin(), waits.end());
  const double median = times[times.size() / 2];
  if (!comms.is_root()) return 0;
  if (launch_timer) print_launch_times(*launch_timer, steps, total_seconds);
  const rf::StepFlops flops = rf::training_step_flops(cfg, B, T);
  // Before the GEMM measurement, whose buffers would count as the training step's.
  const double executor_peak_gib =
      static_cast<double>(ex->peak_bytes()) / (1024.0 * 1024.0 * 1024.0);
  // A GPU needs a larger product to reach its rate.
  const bool gpu = ex->device() == rf::Device::kCuda;
  // The rate measured after the steps, as before 2026-12-07, next to the samples between them.
  const double gemm_after = executor_gemm_gflops(*ex, gpu ? 8192 : 2048, gpu ? 10 : 9);
  const double gemm_peak = cpu_probe ? cpu_probe->median_gflops() : gemm_after;
  const double rate = flops.total() / median / 1e9;
  std::cout << rf::JsonLine()
                   .add("ranks", static_cast<int64_t>(comm.size()))
                   .add("overlap", overlap)
                   .add("step_graphs", static_cast<int64_t>(cfg.runtime.step_graphs))
                   .add("median_comm_wait_s", waits[waits.size() / 2])
                   .add("seq_len", T)
                   .add("batch", B)
                   .add("layers", cfg.model.n_layers)
                   .add("memory_len", cfg.model.memory_len)
                   .add("reversible", static_cast<int64_t>(cfg.model.reversible))
                   .add("recomputes_layers", static_cast<int64_t>(cfg.recomputes_layers()))
                   .add("stored_top_layers", cfg.model.stored_top_layers)
                   .add("residual", std::string(rf::residual_name(cfg.model.residual)))
                   .add("attention", rf::attention_name(cfg.model.attention[0]))
                   .add("dropout", cfg.model.dropout)
                   .add("attention_dropout", cfg.model.attention_dropout)
                   .add("ff_chunk", cfg.ff_chunking().rows(B * T))
                   .add("head_chunk", cfg.head_chunking().rows(B * T))
                   .add("median_step_s", median)
                   .add("tokens_per_s", static_cast<double>(B * T) / median)
                   .add("job_tokens_per_s", static_cast<double>(B * T * comm.size()) / median)
                   .add("step_gflop", flops.total() / 1e9)
                   .add("gflops", rate)
                   .add("sgemm_gflops", gemm_peak)
                   .add("fraction_of_sgemm", rate / gemm_peak)
                   .add("sgemm_gflops_min", cpu_probe ? cpu_probe->min_gflops() : -1.0)
                   .add("sgemm_gflops_max", cpu_probe ? cpu_probe->max_gflops() : -1.0)
                   .add("sgemm_gflops_after_steps", gemm_after)
                   .add("attention_share", share_of_steps("attention"))
                   .add("lsh_share", share_of_steps("lsh hash and sort"))
                   .add("launches_per_step", launches_per_step)
                   .add("memory_operations_per_step", memory_operations_per_step)
                   .add("peak_rss_gib",
                        peak_rss_gib() - (cpu_probe ? InterleavedCpuProbe::gib() : 0.0))
                   .add("executor_peak_gib", executor_peak_gib)
                   .add("openblas_kernel", openblas_get_corename())
                   .add("openblas_sgemm_gflops", gpu ? -1.0 : openblas_sgemm_gflops(9))
                   .add("precision", rf::precision_name(cfg.runtime.precision))
                   .add("executor", ex->describe())
                   .str()
            << std::endl;
  return 0;
} catch (const std::exception& e) {  // (rf::Error and the rest: one line, exit 1)
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
