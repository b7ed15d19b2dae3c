// All-reduce bandwidth of our communicators, measured the way nccl-tests' all_reduce_perf does:
// for each message size, warm up, then time N calls with the host wall clock; time per call is
// averaged over ranks; algbw = bytes / time and busbw = algbw * 2(n-1)/n, with GB = 1e9 bytes, so
// busbw compares with a link's peak whatever the rank count. Each size is checked once for the
// exact result. Two ways of calling are timed: the blocking all_reduce_sum, and start_average +
// wait_all (the path gradient buckets take). For the MPI communicator the library's own blocking
// MPI_Allreduce is timed too, as the reference our communication thread is measured against.
//
//   mpirun -np 4 allreduce_bench [--min-bytes 8] [--max-bytes 256M] [--factor 4] [--iters 20]
//                                [--warmup 5] [--json] [--communicator mpi|nccl]
//
// With every rank on one host (as on the development machines) this measures MPI's shared-memory
// transport, not a network; the header says so. --communicator nccl (one GPU per rank) has only
// compiled, never run: no development machine has a GPU.
#define OMPI_SKIP_MPICXX 1  // the C API only (the project links MPI::MPI_C)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench/command_line.h"
#include "comms/communicator.h"
#include "comms/mpi_communicator.h"
#include "comms/nccl_communicator.h"
#include "kernels/executor.h"

namespace rf {
namespace {

using Clock = std::chrono::steady_clock;

// ---- options -----------------------------------------------------------------------------------

struct Options {
  std::string communicator = "mpi";
  std::string min_bytes = "8";
  std::string max_bytes = "256M";
  int factor = 4;
  int warmup = 5;
  int iters = 20;
  double timeout_seconds = 300;
  bool json = false;
};

// "8", "64K", "256M", "1G" (powers of 1024, as nccl-tests reads them).
size_t parse_bytes(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string suffix = text.substr(digits);
  if (digits == 0 || suffix.size() > 1)
    fail("cannot read '", text, "' as a size (e.g. 8, 64K, 256M)");
  size_t scale = 1;
  if (suffix == "K" || suffix == "k") scale = size_t{1} << 10;
  if (suffix == "M" || suffix == "m") scale = size_t{1} << 20;
  if (suffix == "G" || suffix == "g") scale = size_t{1} << 30;
  if (!suffix.empty() && scale == 1) fail("unknown size suffix in '", text, "' (use K, M or G)");
  return std::stoull(text.substr(0, digits)) * scale;
}

// min, min*factor, ... while below max, then max itself; multiples of 4 bytes (floats).
std::vector<size_t> message_sizes(const Options& options) {
  const size_t min_bytes = parse_bytes(options.min_bytes),
               max_bytes = parse_bytes(options.max_bytes);
  if (min_bytes < 4 || min_bytes % 4 != 0 || max_bytes % 4 != 0 || max_bytes < min_bytes) {
    fail("--min-bytes and --max-bytes must be multiples of 4 with 4 <= min <= max");
  }
  if (options.factor < 2) fail("--factor must be at least 2");
  std::vector<size_t> sizes;
  for (size_t bytes = min_bytes; bytes < max_bytes; bytes *= static_cast<size_t>(options.factor)) {
    sizes.push_back(bytes);
  }
  sizes.push_back(max_bytes);
  return sizes;
}

// Large messages get fewer iterations (about 1 GiB moved per timing), never fewer than 2.
int iterations_for(size_t bytes, int iters) {
  const size_t budget = size_t{1} << 30;
  return static_cast<int>(
      std::max<size_t>(2, std::min<size_t>(static_cast<size_t>(iters), budget / bytes)));
}

// ---- buffers (host memory for MPI, device memory for NCCL) --------------------------------------

class Buffer {
 public:
  Buffer(Executor* device, size_t count) : device_(device), count_(count) {
    if (device_ == nullptr) {
      host_.resize(count);
    } else {
      device_data_ = static_cast<float*>(device_->allocate(count * sizeof(float)));
    }
  }
  ~Buffer() {
    if (device_ != nullptr) device_->release(device_data_, count_ * sizeof(float));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* data() { return device_ == nullptr ? host_.data() : device_data_; }

  void fill(const std::function<float(size_t)>& value) {
    std::vector<float> staging;
    std::vector<float>& target = device_ == nullptr ? host_ : staging;
    target.resize(count_);
    for (size_t i = 0; i < count_; ++i) target[i] = value(i);
    if (device_ != nullptr) device_->upload(device_data_, staging.data(), count_ * sizeof(float));
  }

  // Elements that differ from `expected` by more than `tolerance` (relative).
  size_t count_wrong(const std::function<float(size_t)>& expected, float tolerance) {
    std::vector<float> staging;
    if (device_ != nullptr) {
      staging.resize(count_);
      device_->download(staging.data(), device_data_, count_ * sizeof(float));
    }
    const std::vector<float>& values = device_ == nullptr ? host_ : staging;
    size_t wrong = 0;
    for (size_t i = 0; i < count_; ++i) {
      const float want = expected(i);
      if (!(std::fabs(values[i] - want) <= tolerance * std::fabs(want))) ++wrong;
    }
    return wrong;
  }

 private:
  Executor* device_;
  size_t count_;
  std::vector<float> host_;
  float* device_data_ = nullptr;
};

// ---- timing ------------------------------------------------------------------------------------

struct Timing {
  double time_us = 0;
  double algbw = 0;  // GB/s
  double busbw = 0;  // GB/s
  bool measured = false;
};

// Mean over ranks of each rank's wall time per call, from a barrier to the last call's return.
Timing time_calls(Communicator& host_comm, size_t bytes, int warmup, int iterations,
                  const std::function<void()>& call) {
  for (int i = 0; i < warmup; ++i) call();
  host_comm.barrier();
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < iterations; ++i) call();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count() / iterations;
  host_comm.all_reduce_sum(&seconds, 1, DType::kFloat64);
  seconds /= host_comm.size();
  const int n = host_comm.size();
  Timing t;
  t.time_us = seconds * 1e6;
  t.algbw = static_cast<double>(bytes) / seconds / 1e9;
  t.busbw = t.algbw * 2.0 * (n - 1) / n;
  t.measured = true;
  return t;
}

// A value per rank and element whose sum over ranks, and mean, are exact in float.
float pattern(int rank, size_t i) {
  return static_cast<float>(rank + 1) + static_cast<float>(i % 7);
}
float pattern_sum(int ranks, size_t i) {
  const int triangle = ranks * (ranks + 1) / 2;  // 1 + 2 + ... + ranks
  return static_cast<float>(triangle) + static_cast<float>(ranks) * static_cast<float>(i % 7);
}

struct SizeResult {
  size_t bytes = 0;
  int iterations = 0;
  Timing blocking, average, reference;
  size_t wrong = 0;
};

struct Bench {
  Options options;
  Communicator& host_comm;  // the MPI communicator (host scalars, barriers)
  Communicator& comm;       // the one measured (the MPI one again, or NCCL)
  Executor* device;         // nullptr: host buffers
  bool mpi_reference;       // also time the library's own MPI_Allreduce
  MPI_Comm reference_comm = MPI_COMM_NULL;
};

size_t check_results(Bench& b, Buffer& buffer, size_t count) {
  const int n = b.comm.size(), rank = b.comm.rank();
  size_t wrong = 0;
  buffer.fill([&](size_t i) { return pattern(rank, i); });
  b.comm.all_reduce_sum(buffer.data(), count, DType::kFloat32);
  wrong += buffer.count_wrong([&](size_t i) { return pattern_sum(n, i); }, 0.0f);
  buffer.fill([&](size_t i) { return pattern(rank, i); });
  b.comm.start_average(buffer.data(), count, "bench");
  b.comm.wait_all();
  // NCCL may average by pre-scaling, so allow a rounding of the mean there.
  const float tolerance = b.device == nullptr ? 0.0f : 1e-6f;
  wrong += buffer.count_wrong([&](size_t i) { return pattern_sum(n, i) / static_cast<float>(n); },
                              tolerance);
  return wrong;
}

SizeResult measure(Bench& b, size_t bytes) {
  const size_t count = bytes / sizeof(float);
  SizeResult r;
  r.bytes = bytes;
  r.iterations = iterations_for(bytes, b.options.iters);
  const int warmup = std::min(b.options.warmup, r.iterations);
  Buffer buffer(b.device, count);
  int64_t wrong = static_cast<int64_t>(check_results(b, buffer, count));
  b.host_comm.all_reduce_sum(&wrong, 1, DType::kInt64);
  r.wrong = static_cast<size_t>(wrong);

  buffer.fill([](size_t) { return 0.0f; });  // sums of zeros cannot overflow over the iterations
  r.blocking = time_calls(b.host_comm, bytes, warmup, r.iterations,
                          [&] { b.comm.all_reduce_sum(buffer.data(), count, DType::kFloat32); });
  r.average = time_calls(b.host_comm, bytes, warmup, r.iterations, [&] {
    b.comm.start_average(buffer.data(), count, "bench");
    b.comm.wait_all();
  });
  if (b.mpi_reference) {
    r.reference = time_calls(b.host_comm, bytes, warmup, r.iterations, [&] {
      const int rc = MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(count), MPI_FLOAT,
                                   MPI_SUM, b.reference_comm);
      if (rc != MPI_SUCCESS) b.host_comm.abort("MPI_Allreduce failed in the reference timing");
    });
  }
  return r;
}

// ---- output ------------------------------------------------------------------------------------

void print_header(const Bench& b, int hosts) {
  const int n = b.comm.size();
  char library[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int length = 0;
  MPI_Get_library_version(library, &length);
  std::string mpi_name(library, static_cast<size_t>(length));
  mpi_name = mpi_name.substr(0, mpi_name.find_first_of(",\n"));
  std::printf("# all-reduce benchmark: %s communicator, %d rank(s) on %d host(s); %s\n",
              b.options.communicator == "nccl" ? "NCCL" : "MPI", n, hosts, mpi_name.c_str());
  if (hosts == 1 && b.device == nullptr) {
    std::printf(
        "# every rank is on one host: this measures MPI's shared-memory transport, not a "
        "network\n");
  }
  std::printf(
      "# float32 sum, in place; time = mean over ranks of the wall time per call; "
      "algbw = bytes/time, busbw = algbw*2(n-1)/n, GB = 1e9 B\n");
  std::printf(
      "# blocking = all_reduce_sum; average = start_average + wait_all%s\n",
      b.mpi_reference ? "; MPI_Allreduce = the library's own blocking call (reference)" : "");
  std::printf("#\n# %12s %11s %5s | %10s %7s %7s | %10s %7s %7s", "size(B)", "count", "iters",
              "block(us)", "algbw", "busbw", "avg(us)", "algbw", "busbw");
  if (b.mpi_reference) std::printf(" | %10s %7s %7s", "MPI(us)", "algbw", "busbw");
  std::printf(" | %6s\n", "#wrong");
}

void print_row(const Bench& b, const SizeResult& r) {
  std::printf("  %12zu %11zu %5d | %10.1f %7.3f %7.3f | %10.1f %7.3f %7.3f", r.bytes,
              r.bytes / sizeof(float), r.iterations, r.blocking.time_us, r.blocking.algbw,
              r.blocking.busbw, r.average.time_us, r.average.algbw, r.average.busbw);
  if (b.mpi_reference) {
    std::printf(" | %10.1f %7.3f %7.3f", r.reference.time_us, r.reference.algbw, r.reference.busbw);
  }
  std::printf(" | %6zu\n", r.wrong);
  std::fflush(stdout);
}

std::string timing_json(const Timing& t) {
  char text[160];
  std::snprintf(text, sizeof(text), "{\"time_us\":%.3f,\"algbw_gbs\":%.6f,\"busbw_gbs\":%.6f}",
                t.time_us, t.algbw, t.busbw);
  return text;
}

void print_json(const Bench& b, int hosts, const SizeResult& r) {
  std::printf(
      "{\"bench\":\"allreduce\",\"communicator\":\"%s\",\"ranks\":%d,\"hosts\":%d,"
      "\"dtype\":\"float32\",\"op\":\"sum\",\"bytes\":%zu,\"count\":%zu,\"iterations\":%d,"
      "\"blocking\":%s,\"average\":%s",
      b.options.communicator.c_str(), b.comm.size(), hosts, r.bytes, r.bytes / sizeof(float),
      r.iterations, timing_json(r.blocking).c_str(), timing_json(r.average).c_str());
  if (b.mpi_reference) std::printf(",\"mpi_allreduce\":%s", timing_json(r.reference).c_str());
  std::printf(",\"wrong\":%zu}\n", r.wrong);
  std::fflush(stdout);
}

void print_summary(const std::vector<SizeResult>& results) {
  double busbw = 0;
  size_t wrong = 0;
  for (const SizeResult& r : results) {
    busbw += r.blocking.busbw;
    wrong += r.wrong;
  }
  std::printf("# Out of bounds values : %zu %s\n", wrong, wrong == 0 ? "OK" : "FAILED");
  std::printf("# Avg bus bandwidth (blocking) : %.3f GB/s\n",
              busbw / static_cast<double>(results.size()));
}

// ---- main --------------------------------------------------------------------------------------

int run(const Options& options) {
  const std::vector<size_t> sizes = message_sizes(options);
  std::unique_ptr<Communicator> mpi = make_mpi_communicator(options.timeout_seconds);
  std::unique_ptr<Executor> device;
  std::unique_ptr<Communicator> nccl;
  if (options.communicator == "nccl") {
    device = make_cuda_executor(mpi->local_rank());
    nccl = make_nccl_communicator(*mpi, mpi->local_rank(), options.timeout_seconds);
  }
  Bench b{options, *mpi, nccl ? *nccl : *mpi, device.get(), !nccl};
  if (b.mpi_reference) {
    if (MPI_Comm_dup(MPI_COMM_WORLD, &b.reference_comm) != MPI_SUCCESS) fail("MPI_Comm_dup failed");
  }
  const std::vector<std::string> hosts = mpi->all_hosts();
  const int host_count = static_cast<int>(std::set<std::string>(hosts.begin(), hosts.end()).size());
  const bool root = mpi->is_root();
  if (root && !options.json) print_header(b, host_count);
  std::vector<SizeResult> results;
  for (size_t bytes : sizes) {
    results.push_back(measure(b, bytes));
    if (root)
      options.json ? print_json(b, host_count, results.back()) : print_row(b, results.back());
  }
  if (root && !options.json) print_summary(results);
  if (b.reference_comm != MPI_COMM_NULL) MPI_Comm_free(&b.reference_comm);
  size_t wrong = 0;
  for (const SizeResult& r : results) wrong += r.wrong;
  return wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) try {
  rf::Options options;
  rf::bench::CommandLine app(
      "allreduce_bench: all-reduce bandwidth of the communicators (nccl-tests columns)");
  app.option("--communicator", options.communicator, "mpi (CPU buffers) or nccl (one GPU per rank)",
             rf::bench::one_of({"mpi", "nccl"}));
  app.option("--min-bytes", options.min_bytes, "smallest message, e.g. 8, 64K");
  app.option("--max-bytes", options.max_bytes, "largest message, e.g. 256M");
  app.option("--factor", options.factor, "ratio between successive sizes");
  app.option("--warmup", options.warmup, "untimed calls per size", rf::bench::at_least(0));
  app.option("--iters", options.iters, "timed calls per size (fewer above 50 MiB)",
             rf::bench::at_least(1));
  app.option("--timeout", options.timeout_seconds, "seconds before a collective is declared hung");
  app.flag("--json", options.json, "one JSON object per size instead of the table");
  if (const int exit_code = app.parse(argc, argv); exit_code >= 0) return exit_code;
  return rf::run(options);
} catch (const std::exception& e) {  // (rf::Error and the rest: one line, exit 1)
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
