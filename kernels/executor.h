// The executor interface: where memory lives and how kernels and GEMMs run. The model code is
// written once against it; the CPU executor (OpenMP + OpenBLAS) and the CUDA executor (grid-stride
// kernels + cuBLAS) implement it from the same kernel functors and the same GEMM description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/gemm_desc.h"
#include "kernels/kernel_ops.h"
#include "kernels/kinds.h"

namespace rf {

// One pure virtual run(n, op) per kernel in KernelOps.
template <class... Ops>
struct KernelInterface;
template <>
struct KernelInterface<> {
  virtual ~KernelInterface() = default;
  void run() = delete;  // anchor for the using-declarations below
};
template <class Op, class... Rest>
struct KernelInterface<Op, Rest...> : KernelInterface<Rest...> {
  using KernelInterface<Rest...>::run;
  // Runs op(i) for every i in [0, n).
  virtual void run(int64_t n, const Op& op) = 0;
};

template <class List>
struct KernelInterfaceOf;
template <class... Ops>
struct KernelInterfaceOf<TypeList<Ops...>> {
  using type = KernelInterface<Ops...>;
};

// Which implementation launchers choose where an op has several. kTuned: the executor's fastest
// (the CPU: whole rows per thread and tiled attention; the GPU: one column per thread). kPlain:
// the reference every other is compared with (whole rows per index, one attention row per index).
// kGpuIndexing: the GPU's split of rows (one column per index) on any executor, so that CPU runs
// cover the indexing the GPU uses.
enum class KernelVariant { kTuned, kPlain, kGpuIndexing };

// The passes of fused chunked attention that executors may implement in their own way
// (kernels/ops/chunk_attention.h): the forward (O and the softmax statistics per slot), and the
// gradients of every slot's query, key and value (after the combine's backward).
enum class ChunkAttentionPass { kForward, kGradients };

class Executor : public KernelInterfaceOf<KernelOps>::type {
 public:
  using KernelInterfaceOf<KernelOps>::type::run;

  KernelVariant kernel_variant() const { return variant_; }
  virtual void set_kernel_variant(KernelVariant variant) { variant_ = variant; }
  // Whether whole-row kernels (layer norm, cross-entropy) run a warp per row here: launchers then
  // hand them whole rows instead of a statistics pass and one column per index.
  virtual bool warp_per_row() const { return false; }

  // One pass of fused chunked attention over all segments of `p`. This runs the reference row
  // functors; an executor with a tuned implementation overrides it for KernelVariant::kTuned.
  virtual void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p);

  virtual Device device() const = 0;
  // One line for logs: device, threads, BLAS and its kernel.
  virtual std::string describe() const = 0;
  // The GPU's name as its driver reports it ("NVIDIA H100 80GB HBM3"); empty for a CPU.
  virtual std::string device_model() const { return ""; }
  // What decides the bits of this executor's results besides the inputs (never its thread
  // count): the device, the instruction set the kernels were built for, the BLAS and how its
  // products are cut. Two runs whose arithmetic is the same give the same bits; a run resumed
  // where it differs continues, but not as it would have where it started (a checkpoint records
  // it). Empty: not known.
  virtual std::string arithmetic() const { return ""; }

  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
  virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* ptr, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // C = alpha op(A) op(B) + beta C, column-major, as cuBLAS defines it. A and B hold what
  // desc.a_type and desc.b_type say (fp32 unless a producer wrote bf16 for this executor).
  virtual void gemm(const GemmDesc& desc, const void* a, const void* b, float* c) = 0;
  // Whether gemm() accepts bf16 operands (OperandType::kBf16): true where products round their
  // operands to bf16 anyway (the CPU at runtime.precision = bf16), so a kernel that produces an
  // operand can write it rounded, and the product skips a rounding pass over memory. Same bits
  // either way. Tests may turn it off (set_bf16_operands) to compare the two.
  bool gemm_takes_bf16_operands() const {
    return bf16_operands_allowed_ && rounds_operands_to_bf16();
  }
  void set_bf16_operands(bool allowed) { bf16_operands_allowed_ = allowed; }
  // Whether this executor's products round fp32 operands to bf16 themselves, so that gemm()
  // takes bf16 operands as they are (whatever set_bf16_operands says).
  virtual bool rounds_operands_to_bf16() const { return false; }
  // Whether the GPU's tiled attention may multiply bf16 operands on tensor cores
  // (kernels/cuda/mma_attention_kernels.cuh) where this executor's products are bf16 anyway. The
  // start-up check (trainer/selftest.h) turns it off on a device that computes them wrongly, and
  // an executor on a device without bf16 tensor cores turns it off itself. (The CPU's AMX tiles
  // are the CPU executor's own choice.)
  bool attention_on_tensor_cores() const {
    return tensor_core_attention_allowed_ && rounds_operands_to_bf16();
  }
  void set_tensor_core_attention(bool allowed) { tensor_core_attention_allowed_ = allowed; }
  // While on, an executor that rounds GEMM operands to a reduced precision itself (the CPU at
  // bf16) may keep the rounded copies and reuse them in later products that read the same
  // memory; the caller promises that only those products' outputs write to their operands
  // meanwhile. Calls nest (on, on, off, off). Use GemmOperandReuse (kernels/linear.h) rather
  // than calling this directly.
  virtual void set_gemm_operand_reuse(bool on) {}

  // Stable sort of each of `segments` arrays of n bucket ids (values < total_buckets): perm
  // lists each segment's indices by (bucket, index), undo is its inverse. Defined by its result
  // (docs/architecture.md): a counting sort on the CPU, CUB's segmented radix sort on the GPU.
  struct BucketSort {
    const int32_t* buckets;
    int32_t* perm;
    int32_t* undo;
    int64_t segments, n, total_buckets;
  };
  virtual size_t sort_scratch_bytes(const BucketSort& sort) = 0;
  virtual void sort_buckets(const BucketSort& sort, void* scratch) = 0;

  // Step graphs: work captured once and replayed, as a CUDA graph does. Between begin_capture()
  // and end_capture() the executor records the work handed to it (kernels, GEMMs, attention
  // passes, sorts, device copies and fills) instead of running it; replay_graph() runs it again
  // with the same arguments, reading whatever executor memory holds by then. While capturing,
  // what a graph cannot hold (a transfer to or from the host, a wait, an allocation) is an
  // rf::Error naming the call. Executors without graphs return false from supports_graphs() and
  // throw from the others. The bookkeeping (the capture flag, the launches a graph holds) is
  // here; executors with graphs implement the three hooks below.
  virtual bool supports_graphs() const { return false; }
  void begin_capture();
  int end_capture();  // the new graph's id: 0, 1, ... in capture order
  void replay_graph(int graph);
  // Destroys every graph kept (ids start again at 0). A CUDA graph holding NCCL's collectives
  // keeps the NCCL communicator from finalising, so a run drops its graphs before the
  // communicators close; what a recorded graph refers to need not outlive it then.
  void drop_graphs();
  bool capturing() const { return capturing_; }

  // Communication among the device work: a gradient bucket's average across the ranks, started
  // as soon as the backward pass has made the bucket final so that it overlaps the rest of the
  // pass. `start` issues it, ordered after the work handed to this executor so far. A step graph
  // holds it: the LaunchRecorder keeps `start` while capturing and calls it at its place in each
  // replay; a CUDA graph holds the NCCL kernels `start` issued on streams joined to the capture
  // (so there `start` runs once, while capturing). Otherwise `start` runs now. Whatever `start`
  // refers to must outlive the graphs that hold it.
  void start_collective(std::function<void()> start);
  // Collectives started so far; a graph's count each time it is replayed, as its launches do.
  int64_t collectives() const { return collectives_; }
  // Collectives the graphs kept so far hold.
  int64_t collectives_in_graphs() const;
  // Changes whenever memory is released: a graph captured before may hold its address, so it must
  // not be replayed any more, and a warm-up before it may have allocated what a capture would now
  // have to allocate again (StepGraphs warms up and captures again).
  int64_t memory_generation() const { return memory_generation_; }

  size_t bytes_in_use() const { return bytes_in_use_; }
  size_t peak_bytes() const { return peak_bytes_; }
  // Work handed to the device so far: kernel launches (each run, GEMM call, tiled attention pass
  // and sort stage) and memory operations (upload, download, copy, zero). A graph's work counts
  // when it is replayed, as if launched one by one (a capture runs nothing).
  int64_t launches() const { return launches_; }
  int64_t memory_operations() const { return memory_operations_; }

 protected:
  void count_allocation(size_t bytes) {
    bytes_in_use_ += bytes;
    if (bytes_in_use_ > peak_bytes_) peak_bytes_ = bytes_in_use_;
  }
  void count_release(size_t bytes) {
    bytes_in_use_ -= bytes;
    ++memory_generation_;
  }
  void count_launch() { ++launches_; }
  void count_memory_operation() { ++memory_operations_; }
  // For executors with graphs: the error for a call a graph cannot hold, while capturing.
  void refuse_while_capturing(const char* call) const;
  // The hooks of step graphs: start recording this executor's work, keep what was recorded as
  // the next graph (the executor numbers its graphs 0, 1, ... as they are kept), run a graph.
  virtual void capture_begin();
  virtual void capture_end();
  virtual void graph_replay(int graph);
  virtual void graphs_release() {}
  // Issues a collective (start_collective's `start`): runs it now unless a capture keeps it.
  // (By value: overrides keep it, as LaunchRecorder does.)
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  virtual void collective_issue(std::function<void()> start) { start(); }

 private:
  size_t bytes_in_use_ = 0;
  size_t peak_bytes_ = 0;
  KernelVariant variant_ = KernelVariant::kTuned;
  int64_t launches_ = 0, memory_operations_ = 0, collectives_ = 0;
  // Work a graph holds, counted while it is captured and added to the totals at each replay.
  struct GraphCounts {
    int64_t launches = 0, memory_operations = 0, collectives = 0;
  };
  bool capturing_ = false;
  GraphCounts capture_start_;
  std::vector<GraphCounts> graphs_;  // per graph kept
  int64_t memory_generation_ = 0;
  bool bf16_operands_allowed_ = true;
  bool tensor_core_attention_allowed_ = true;
};

// The RowSplit for a kernel over [rows, cols] on this executor: whole rows per CPU thread, one
// column per GPU thread (see kernels/ops/row_split.h), or as the kernel variant asks.
inline RowSplit row_split(const Executor& ex, int64_t cols) {
  const bool columns =
      ex.kernel_variant() == KernelVariant::kGpuIndexing ||
      (ex.kernel_variant() == KernelVariant::kTuned && ex.device() == Device::kCuda);
  return RowSplit{cols, columns ? 1 : (cols > 0 ? cols : 1)};
}

// What make_executor builds: the device, CPU threads (<= 0: all cores available to this process),
// the GEMM precision, the GPU index for Device::kCuda, and the ranks on this host, which share
// its memory (a CPU executor takes an equal share).
struct ExecutorOptions {
  Device device = Device::kCpu;
  int threads = 0;
  GemmPrecision precision = GemmPrecision::kFp32;
  int gpu = 0;
  int ranks_on_host = 1;
};
std::unique_ptr<Executor> make_executor(const ExecutorOptions& options);

// threads <= 0 means all cores available to this process. precision: fp32 or bf16 (bf16 applies to
// single products: projections, feed-forward, head; the batched attention-chunk products stay
// fp32 in OpenBLAS, where oneDNN's per-call cost outweighs its rate). tf32 is an rf::Error.
// ranks_on_host: processes on this host with a CPU executor each; each may take that share of the
// host memory free when it starts (kernels/cpu/host_memory.h).
std::unique_ptr<Executor> make_cpu_executor(int threads,
                                            GemmPrecision precision = GemmPrecision::kFp32,
                                            int ranks_on_host = 1);
// The CPU executor's libraries, "OpenBLAS <version> <build options>; oneDNN <version>" (for
// --version).
std::string cpu_library_versions();
// Throws rf::Error with a clear message when CUDA was not compiled in or no device is present.
// tf32 and bf16 select cuBLAS's CUBLAS_COMPUTE_32F_FAST_TF32 / _FAST_16BF for every GEMM.
std::unique_ptr<Executor> make_cuda_executor(int device_index,
                                             GemmPrecision precision = GemmPrecision::kFp32);
bool cuda_compiled_in();
// CUDA devices visible to this process (0 without CUDA).
int cuda_device_count();
// "runtime 12.4, driver 12.6" (or ", no driver"); empty in a build without CUDA (for --version).
std::string cuda_versions();

// Row-major product through the column-major description (see gemm_desc.h).
void matmul(Executor& ex, const RowMajorGemm& g, const void* a, const void* b, float* c);

}  // namespace rf
