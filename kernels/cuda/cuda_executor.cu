// The CUDA executor: every kernel functor of KernelOps launched as a grid-stride kernel, GEMMs
// passed to cublasGemmStridedBatchedEx (bf16 operands as bf16), memory from cudaMalloc, and the
// tiled attention kernels of kernels/cuda/chunk_attention_tiles.cu. The arithmetic lives in the
// RF_HD functors under kernels/ops/, which the CPU tests exercise, and which kernel and grid each
// functor gets in tuned_backend.cuh, which the tests also run on the CPU (tests/emulated_cuda/);
// this file only launches.
// STATUS: compiled in CI (nvcc, warnings as errors). The executor ran on an H100 (2026-11-22):
// tests/gpu_test.cpp passed and the default config learned. The fused attention (reference
// functors and tiled kernels) and the bf16 operands have NOT run on a GPU yet: `reformer selftest
// --device cuda [--precision bf16]` checks every op, and a training run checks them at start-up
// (runtime.verify_kernels).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <sstream>
#include <vector>

#include "base/cuda_check.h"
#include "kernels/cuda/chunk_attention_tiles.h"
#include "kernels/cuda/device_launch.cuh"
#include "kernels/cuda/tuned_backend.cuh"
#include "kernels/executor_impl.h"

namespace rf {
namespace {

// The kernel each functor runs as, and its grid (tuned_backend.cuh).
using CudaBackend = cuda::TunedBackend<cuda::DeviceLaunch>;

// For products of two fp32 operands: tf32 and bf16 let cuBLAS round the inputs for tensor cores.
// (At bf16 most operands arrive in bf16 already: see CudaExecutor::gemm.)
cublasComputeType_t compute_type(GemmPrecision precision) {
  switch (precision) {
    case GemmPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GemmPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    default:
      return CUBLAS_COMPUTE_32F;
  }
}

const char* compute_name(cublasComputeType_t t) {
  return t == CUBLAS_COMPUTE_32F_FAST_TF32   ? "tf32"
         : t == CUBLAS_COMPUTE_32F_FAST_16BF ? "bf16"
                                             : "fp32";
}

cublasOperation_t cublas_op(bool t) {
  return t ? CUBLAS_OP_T : CUBLAS_OP_N;
}

class CudaExecutor final : public KernelExecutor<CudaBackend> {
 public:
  CudaExecutor(int device, GemmPrecision precision)
      : device_(device), compute_(compute_type(precision)) {
    RF_CUDA_CHECK(cudaSetDevice(device));
    RF_CUBLAS_CHECK(cublasCreate(&cublas_));
    RF_CUBLAS_CHECK(cublasSetStream(cublas_, cudaStreamPerThread));
    // A workspace of cuBLAS's own from the start, so that it allocates nothing while a step graph
    // is captured and picks the same algorithms in eager and captured steps.
    RF_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
    RF_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
    // bf16 mma.sync (the tensor-core attention forward) needs compute capability 8.0.
    int major = 0;
    RF_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major < 8) set_tensor_core_attention(false);
  }
  ~CudaExecutor() override {
    for (cudaGraphExec_t g : graphs_) cudaGraphExecDestroy(g);
    for (RoundedOperand& r : rounded_)
      if (r.values) cudaFree(r.values);
    cublasDestroy(cublas_);
    if (cublas_workspace_) cudaFree(cublas_workspace_);
  }

  Device device() const override { return Device::kCuda; }
  bool warp_per_row() const override { return kernel_variant() == KernelVariant::kTuned; }
  // At bf16 the kernels that produce GEMM operands write them in bf16 (half the memory traffic),
  // the weights' bf16 copy is made once per pass (trainer/params.h), and the products multiply
  // bf16 by bf16 on the tensor cores.
  bool rounds_operands_to_bf16() const override { return compute_ == CUBLAS_COMPUTE_32F_FAST_16BF; }
  std::string device_model() const override {
    cudaDeviceProp prop{};
    return cudaGetDeviceProperties(&prop, device_) == cudaSuccess ? prop.name : "";
  }
  // At bf16, where the products' operands come from and where the attention tiles multiply:
  // ", bf16 operands from the kernels, attention tiles on bf16 tensor cores" (else "").
  std::string bf16_paths() const {
    if (!rounds_operands_to_bf16()) return "";
    return std::string(gemm_takes_bf16_operands() ? ", bf16 operands from the kernels"
                                                  : ", fp32 operands rounded by cuBLAS") +
           (attention_on_tensor_cores() ? ", attention tiles on bf16 tensor cores"
                                        : ", attention tiles in fp32");
  }
  std::string arithmetic() const override {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device_) != cudaSuccess) return "";
    int cublas = 0;
    if (cublasGetVersion(cublas_, &cublas) != CUBLAS_STATUS_SUCCESS) cublas = 0;
    std::ostringstream s;
    s << "cuda " << prop.name << " (sm_" << prop.major << prop.minor << "), cuBLAS " << cublas
      << " " << compute_name(compute_)
      << (kernel_variant() == KernelVariant::kTuned ? ", tuned kernels" : ", plain kernels");
    return s.str() + bf16_paths();
  }
  std::string describe() const override {
    cudaDeviceProp prop{};
    std::ostringstream s;
    if (cudaGetDeviceProperties(&prop, device_) == cudaSuccess)
      s << "cuda device " << device_ << " (" << prop.name << "), cuBLAS " << compute_name(compute_);
    else
      s << "cuda device " << device_;
    // (The start-up check turns bf16 operands off where they fail: the log says which ran.)
    return s.str() + bf16_paths();
  }

  void* allocate(size_t bytes) override {
    refuse_while_capturing("an allocation");
    void* p = nullptr;
    RF_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
    count_allocation(bytes);
    return p;
  }
  void release(void* ptr, size_t bytes) override {
    if (!ptr) return;
    refuse_while_capturing("a release of memory");
    // (Not checked: releases run in destructors, also while an error unwinds, where a throw would
    // end the process. A sticky error cudaFree returns is returned again by the next checked call.)
    cudaFree(ptr);
    count_release(bytes);
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    refuse_while_capturing("an upload from the host");
    count_memory_operation();
    RF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cudaStreamPerThread));
    RF_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    refuse_while_capturing("a download to the host");
    count_memory_operation();
    RF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cudaStreamPerThread));
    RF_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    count_memory_operation();
    RF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
  }
  void zero(void* ptr, size_t bytes) override {
    count_memory_operation();
    RF_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, cudaStreamPerThread));
  }
  void synchronize() override {
    refuse_while_capturing("a wait for the device");
    RF_CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
  }

  // Step graphs as CUDA graphs of this thread's stream.
  bool supports_graphs() const override { return true; }
  void capture_begin() override {
    RF_CUDA_CHECK(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
  }
  void capture_end() override {
    cudaGraph_t graph = nullptr;
    RF_CUDA_CHECK(cudaStreamEndCapture(cudaStreamPerThread, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    RF_CUDA_CHECK(made);
    graphs_.push_back(exec);
  }
  void graphs_release() override {
    for (cudaGraphExec_t g : graphs_) RF_CUDA_CHECK(cudaGraphExecDestroy(g));
    graphs_.clear();
  }
  void graph_replay(int graph) override {
    RF_CUDA_CHECK(cudaGraphLaunch(graphs_[static_cast<size_t>(graph)], cudaStreamPerThread));
  }

  void gemm(const GemmDesc& d, const void* a, const void* b, float* c) override {
    const std::string problem = gemm_desc_problem(d);
    RF_CHECK(problem.empty(), problem);
    const bool bf16_a = d.a_type == OperandType::kBf16, bf16_b = d.b_type == OperandType::kBf16;
    RF_CHECK(!(bf16_a || bf16_b) || rounds_operands_to_bf16(),
             "a bf16 GEMM operand reached the CUDA executor at a precision other than bf16");
    if (d.m == 0 || d.n == 0) return;
    // cuBLAS multiplies bf16 by bf16 only: the fp32 operand of a mixed pair is rounded first
    // (nearest, ties to even, as the CPU rounds), so the product is that of two bf16 operands
    // with fp32 accumulation (CUBLAS_COMPUTE_32F), as on the CPU.
    // (At depth 0 cuBLAS reads neither operand: nothing to round.)
    const bool bf16 = bf16_a || bf16_b, round = bf16 && d.k > 0;
    if (round && !bf16_a)
      a = rounded_operand(0, static_cast<const float*>(a), operand_layout_a(d).span());
    if (round && !bf16_b)
      b = rounded_operand(1, static_cast<const float*>(b), operand_layout_b(d).span());
    const cudaDataType_t operands = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    count_launch();
    RF_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_, cublas_op(d.trans_a), cublas_op(d.trans_b), static_cast<int>(d.m),
        static_cast<int>(d.n), static_cast<int>(d.k), &d.alpha, a, operands,
        static_cast<int>(d.lda), d.stride_a, b, operands, static_cast<int>(d.ldb), d.stride_b,
        &d.beta, c, CUDA_R_32F, static_cast<int>(d.ldc), d.stride_c, static_cast<int>(d.batch),
        bf16 ? CUBLAS_COMPUTE_32F : compute_, CUBLAS_GEMM_DEFAULT));
  }

  // Tiled attention kernels (kernels/cuda/chunk_attention_tiles.cu) where there is one for the
  // head width; otherwise, and for the other variants, the reference functors.
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override {
    if (cuda::chunk_attention_tiled(*this, pass, p)) {
      count_launch();
      if (pass == ChunkAttentionPass::kGradients) count_launch();  // query and key kernels
      return;
    }
    Executor::chunk_attention(pass, p);
  }

  size_t sort_scratch_bytes(const BucketSort& s) override { return sort_layout(s).total; }
  void sort_buckets(const BucketSort& s, void* scratch) override;

 private:
  // Scratch: sorted keys, slot numbers, segment offsets, then CUB's temporary storage, each
  // at a 256-byte aligned offset. One layout serves the size query and the sort.
  struct SortLayout {
    size_t values_in, offsets, cub_temp, cub_bytes, total;  // byte offsets; keys at 0
  };
  static size_t align(size_t bytes) { return (bytes + 255) / 256 * 256; }
  static int key_bits(int64_t total_buckets) {
    int bits = 1;
    while ((int64_t{1} << bits) < total_buckets) ++bits;
    return bits;
  }
  SortLayout sort_layout(const BucketSort& s) const {
    const size_t items = static_cast<size_t>(s.segments * s.n);
    SortLayout l{};
    RF_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
        nullptr, l.cub_bytes, s.buckets, static_cast<int32_t*>(nullptr),
        static_cast<int32_t*>(nullptr), s.perm, static_cast<int>(items),
        static_cast<int>(s.segments), static_cast<int32_t*>(nullptr),
        static_cast<int32_t*>(nullptr) + 1, 0, key_bits(s.total_buckets), cudaStreamPerThread));
    l.values_in = align(items * sizeof(int32_t));
    l.offsets = l.values_in + align(items * sizeof(int32_t));
    l.cub_temp = l.offsets + align(static_cast<size_t>(s.segments + 1) * sizeof(int32_t));
    l.total = l.cub_temp + l.cub_bytes;
    return l;
  }

  // x [count] rounded to bf16 into scratch `slot` (0: A, 1: B), grown as needed and kept: all
  // of the operand's span, gaps between its columns included (a product of depth > 0). A step
  // graph's part runs once uncaptured before its capture (trainer/step_graphs.h), which grows
  // the scratch to what the capture needs; growing it releases memory, so graphs captured
  // before are captured again.
  const uint16_t* rounded_operand(int slot, const float* x, int64_t count) {
    RoundedOperand& r = rounded_[slot];
    if (r.capacity < count) {
      release(r.values, static_cast<size_t>(r.capacity) * sizeof(uint16_t));
      r.values = nullptr;
      r.capacity = 0;
      r.values = static_cast<uint16_t*>(allocate(static_cast<size_t>(count) * sizeof(uint16_t)));
      r.capacity = count;
    }
    run(count, RoundToBf16{x, r.values});
    return r.values;
  }

  // NVIDIA's recommendation for Hopper; ample for earlier GPUs.
  static constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

  int device_;
  cublasComputeType_t compute_;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::vector<cudaGraphExec_t> graphs_;  // by step graph id
  struct RoundedOperand {
    uint16_t* values = nullptr;
    int64_t capacity = 0;  // elements
  };
  RoundedOperand rounded_[2];  // the fp32 operand of a product with a bf16 one, rounded
};

void CudaExecutor::sort_buckets(const BucketSort& s, void* scratch) {
  SortLayout l = sort_layout(s);
  char* base = static_cast<char*>(scratch);
  int32_t* keys_out = reinterpret_cast<int32_t*>(base);
  int32_t* values_in = reinterpret_cast<int32_t*>(base + l.values_in);
  int32_t* offsets = reinterpret_cast<int32_t*>(base + l.offsets);
  run(s.segments * s.n + 1, SegmentSlotsAndOffsets{values_in, offsets, s.n, s.segments});
  count_launch();
  // CUB's radix sort is stable: sorting (bucket -> slot) keeps slots of a bucket in order, which
  // is the sort by (bucket, position) the CPU's counting sort produces.
  RF_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
      base + l.cub_temp, l.cub_bytes, s.buckets, keys_out, values_in, s.perm,
      static_cast<int>(s.segments * s.n), static_cast<int>(s.segments), offsets, offsets + 1, 0,
      key_bits(s.total_buckets), cudaStreamPerThread));
  run(s.segments * s.n, InvertPermutation{s.perm, s.undo, s.n});
}

}  // namespace

bool cuda_compiled_in() {
  return true;
}

int cuda_device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::string cuda_versions() {
  const auto text = [](int v) {  // "12.4" from 12040
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  int runtime = 0, driver = 0;
  std::string s =
      "runtime " +
      (cudaRuntimeGetVersion(&runtime) == cudaSuccess ? text(runtime) : std::string("unknown"));
  // (0 without a driver: then there is no device to run on)
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0)
    return s + ", driver " + text(driver);
  return s + ", no driver";
}

std::unique_ptr<Executor> make_cuda_executor(int device_index, GemmPrecision precision) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0)
    fail("runtime.device is cuda, but no CUDA device is visible (",
         status == cudaSuccess ? "no devices" : cudaGetErrorString(status),
         "); use runtime.device=cpu");
  if (device_index >= count)
    fail("runtime.device is cuda, but device ", device_index, " does not exist (", count,
         " visible)");
  return std::make_unique<CudaExecutor>(device_index, precision);
}

}  // namespace rf
