// Times the fused chunk-attention passes alone (forward, and the gradient pass with its look-back)
// on one executor, for LSH-like slot orders: each round gives every position a random bucket and
// sorts by (bucket, position), as the LSH layer's bucket sort does. Shared-QK keys with the self
// mask, like the reference model's LSH layers. Prints one JSON line: medians of the repetitions,
// and GFLOP/s counted as trainer/flop_count.cpp counts attention (4 * window * d per query slot for
// the forward; the gradient pass counted at twice that).
//   attention_bench [--seq-len 4096] [--heads 4] [--d-head 64] [--rounds 2] [--chunk 64]
//                   [--reps 21] [--threads 0] [--device cpu|cuda] [--precision fp32|bf16|tf32]
// (At bf16 a CPU with AMX runs the tiles' products on its tile units, as in training.)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <random>
#include <vector>

#include "base/error.h"
#include "bench/bench_median.h"
#include "bench/command_line.h"
#include "kernels/cpu/openblas_core.h"
#include "kernels/device_buffer.h"
#include "kernels/executor.h"

namespace rf {
namespace {

using bench::median;

struct Shape {
  int64_t seq_len = 4096, heads = 4, d_head = 64, rounds = 2, chunk = 64;
};

// An executor copy of a host vector, owned by `held` (DeviceBuffer releases it).
template <class T>
T* on_executor(Executor& ex, const std::vector<T>& host, std::vector<DeviceBuffer<T>>* held) {
  held->emplace_back(ex, host.size());
  held->back().upload(host);
  return held->back().data();
}

// slot -> r * seq_len + t for each segment: per round, random buckets sorted by (bucket, t).
std::vector<int32_t> lsh_like_order(const Shape& s, int64_t segments, std::mt19937& gen) {
  const int64_t n_slots = s.rounds * s.seq_len, buckets = std::max<int64_t>(1, s.seq_len / s.chunk);
  std::uniform_int_distribution<int64_t> bucket_of(0, buckets - 1);
  std::vector<int32_t> perm(static_cast<size_t>(segments * n_slots));
  std::vector<int64_t> bucket(static_cast<size_t>(s.seq_len));
  std::vector<int32_t> order(static_cast<size_t>(s.seq_len));
  for (int64_t seg = 0; seg < segments; ++seg)
    for (int64_t r = 0; r < s.rounds; ++r) {
      for (auto& b : bucket) b = bucket_of(gen);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t x, int32_t y) { return bucket[x] < bucket[y]; });
      for (int64_t t = 0; t < s.seq_len; ++t)
        perm[seg * n_slots + r * s.seq_len + t] = static_cast<int32_t>(r * s.seq_len + order[t]);
    }
  return perm;
}

int run(const Shape& s, int reps, int threads, Device device, GemmPrecision precision,
        bool fp32_tiles) {
  if (s.seq_len <= 0 || s.heads <= 0 || s.d_head <= 0 || s.rounds <= 0 || s.chunk <= 0)
    fail("attention_bench: every size must be positive");
  if (s.d_head > kMaxHeadDim)
    fail("attention_bench: --d-head ", s.d_head, " is above the kernels' limit of ", kMaxHeadDim);
  if (s.seq_len % s.chunk != 0)
    fail("attention_bench: --chunk ", s.chunk, " must divide --seq-len ", s.seq_len);
  if (reps < 1) fail("attention_bench: --reps must be at least 1");
  ExecutorOptions options;
  options.device = device;
  options.threads = threads;
  options.precision = precision;
  std::unique_ptr<Executor> ex = make_executor(options);
  if (fp32_tiles) ex->set_tensor_core_attention(false);
  std::vector<DeviceBuffer<float>> floats;  // (moving a buffer keeps its allocation)
  std::vector<DeviceBuffer<int32_t>> ints;
  const int64_t segments = s.heads, n_slots = s.rounds * s.seq_len, d = s.d_head;
  const int64_t ld = s.heads * d, per_slot = segments * n_slots;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  auto random_floats = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(gen);
    return v;
  };
  ChunkAttentionParams p;
  p.q = on_executor(*ex, random_floats(s.seq_len * ld), &floats);
  p.v = on_executor(*ex, random_floats(s.seq_len * ld), &floats);
  p.ld = ld;
  p.perm = on_executor(*ex, lsh_like_order(s, segments, gen), &ints);
  p.key_scales = on_executor(
      *ex,
      std::vector<float>(static_cast<size_t>(segments * s.seq_len), 1.0f / static_cast<float>(d)),
      &floats);
  p.heads = s.heads;
  p.d = d;
  p.segments = segments;
  p.layout.seq_len = s.seq_len;
  p.layout.n_slots = n_slots;
  p.layout.chunk = s.chunk;
  p.layout.lookback = 1;
  p.self_mask = true;
  auto per_slot_array = [&](int64_t width) {
    return on_executor(*ex, std::vector<float>(static_cast<size_t>(per_slot * width), 0.0f),
                       &floats);
  };
  p.o = per_slot_array(d);
  p.row_max = per_slot_array(1);
  p.row_log_sum = per_slot_array(1);
  p.delta = on_executor(*ex, random_floats(per_slot), &floats);
  p.dlse = per_slot_array(1);
  p.dq = per_slot_array(d);
  p.dk = per_slot_array(d);
  p.dv = per_slot_array(d);
  const double forward_flop = 4.0 * static_cast<double>(per_slot) *
                              static_cast<double>(2 * s.chunk) * static_cast<double>(d);
  std::vector<double> forward_s, gradients_s;
  auto time_pass = [&](ChunkAttentionPass pass) {
    ex->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    ex->chunk_attention(pass, p);
    ex->synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  time_pass(ChunkAttentionPass::kForward);  // (warm-up: scratch, caches)
  time_pass(ChunkAttentionPass::kGradients);
  for (int i = 0; i < reps; ++i) {
    forward_s.push_back(time_pass(ChunkAttentionPass::kForward));
    gradients_s.push_back(time_pass(ChunkAttentionPass::kGradients));
  }
  const double f = median(forward_s), g = median(gradients_s);
  std::printf(
      "{\"seq_len\": %lld, \"heads\": %lld, \"d_head\": %lld, \"rounds\": %lld, \"chunk\": %lld, "
      "\"reps\": %d, \"forward_ms\": %.3f, \"gradients_ms\": %.3f, \"forward_gflops\": %.1f, "
      "\"gradients_gflops\": %.1f, \"precision\": \"%s\", \"executor\": \"%s\"}\n",
      static_cast<long long>(s.seq_len), static_cast<long long>(s.heads),
      static_cast<long long>(s.d_head), static_cast<long long>(s.rounds),
      static_cast<long long>(s.chunk), reps, f * 1e3, g * 1e3, forward_flop / f * 1e-9,
      2.0 * forward_flop / g * 1e-9, precision_name(precision), ex->describe().c_str());
  return 0;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) try {
  rf::restart_without_openblas_fallback();
  rf::bench::CommandLine app(
      "times the fused chunk-attention passes (forward, gradients) on LSH-like orders");
  rf::Shape shape;
  int reps = 21, threads = 0;
  std::string device = "cpu", precision = "fp32";
  app.option("--seq-len", shape.seq_len, "positions per sequence");
  app.option("--heads", shape.heads, "heads (one sequence)");
  app.option("--d-head", shape.d_head, "width of a head");
  app.option("--rounds", shape.rounds, "hash rounds");
  app.option("--chunk", shape.chunk, "slots per chunk (the bucket size)");
  app.option("--reps", reps, "timed repetitions of each pass (medians)");
  app.option("--threads", threads, "CPU threads (0: all cores available)");
  app.option("--device", device, "executor", rf::bench::one_of({"cpu", "cuda"}));
  app.option("--precision", precision, "products' precision, as runtime.precision",
             rf::bench::one_of({"fp32", "tf32", "bf16"}));
  bool fp32_tiles = false;
  app.flag("--fp32-tiles", fp32_tiles,
           "cuda at bf16: the fp32 attention tiles instead of the tensor-core ones (as "
           "runtime.tensor_core_attention=false)");
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;
  return rf::run(shape, reps, threads, device == "cuda" ? rf::Device::kCuda : rf::Device::kCpu,
                 rf::parse_precision(precision), fp32_tiles);
} catch (const std::exception& e) {  // (rf::Error and the rest: one line, exit 1)
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
