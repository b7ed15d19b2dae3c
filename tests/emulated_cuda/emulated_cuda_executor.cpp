#include "tests/emulated_cuda/emulated_cuda_executor.h"

#include "kernels/executor_impl.h"
#include "kernels/kernel_ops.h"
#include "tests/emulated_cuda/emulated_cuda.h"
#include "tests/test_util.h"

// The CUDA kernels, compiled here as C++ for the emulation (which made them plain C++ above). Their
// namespace rf::cuda becomes rf::cuda_on_cpu in this file: the CUDA library's build of the same
// kernels (host-side launch stubs of the same names) is linked into the tests too.
#define cuda cuda_on_cpu
// clang-format off
#include "kernels/cuda/chunk_attention_kernels.cuh"
#include "kernels/cuda/tuned_backend.cuh"
// clang-format on
#undef cuda

namespace rf::emulated_cuda {
namespace {

using EmulatedBackend = cuda_on_cpu::TunedBackend<Launch>;

class EmulatedCudaExecutor final : public KernelExecutor<EmulatedBackend> {
 public:
  explicit EmulatedCudaExecutor(bool bf16_operands)
      : memory_(make_cpu_executor(1)), bf16_operands_(bf16_operands) {}

  Device device() const override { return Device::kCpu; }  // (host memory)
  bool warp_per_row() const override { return kernel_variant() == KernelVariant::kTuned; }
  bool rounds_operands_to_bf16() const override { return bf16_operands_; }
  std::string describe() const override {
    return "emulated cuda (the CUDA kernels as fibers on the CPU; GEMMs and sort on the CPU)";
  }
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override {
    if (cuda_on_cpu::launch_chunk_attention<Launch>(*this, pass, p)) {
      ++launches_.attention_passes;
      return;
    }
    Executor::chunk_attention(pass, p);
  }
  EmulatedLaunches launches() const { return launches_; }

  void* allocate(size_t bytes) override { return memory_->allocate(bytes); }
  void release(void* p, size_t bytes) override { memory_->release(p, bytes); }
  void upload(void* d, const void* s, size_t b) override { memory_->upload(d, s, b); }
  void download(void* d, const void* s, size_t b) override { memory_->download(d, s, b); }
  void copy(void* d, const void* s, size_t b) override { memory_->copy(d, s, b); }
  void zero(void* p, size_t b) override { memory_->zero(p, b); }
  void synchronize() override {}
  void gemm(const GemmDesc& d, const void* a, const void* b, float* c) override {
    const bool bf16 = d.a_type == OperandType::kBf16 || d.b_type == OperandType::kBf16;
    RF_CHECK(!bf16 || bf16_operands_, "a bf16 GEMM operand reached an fp32 executor");
    if (bf16)
      test::gemm_of_bf16_values(*memory_, d, a, b, c);
    else
      memory_->gemm(d, a, b, c);
  }
  size_t sort_scratch_bytes(const BucketSort& s) override { return memory_->sort_scratch_bytes(s); }
  void sort_buckets(const BucketSort& s, void* scratch) override {
    memory_->sort_buckets(s, scratch);
  }

 private:
  std::unique_ptr<Executor> memory_;  // host memory, GEMMs and the sort
  bool bf16_operands_;
  EmulatedLaunches launches_;
};

}  // namespace

std::unique_ptr<Executor> make_emulated_cuda_executor(bool bf16_operands) {
  return std::make_unique<EmulatedCudaExecutor>(bf16_operands);
}

EmulatedLaunches emulated_launches(const Executor& ex) {
  const auto* emulated = dynamic_cast<const EmulatedCudaExecutor*>(&ex);
  RF_CHECK(emulated != nullptr, "not an emulated CUDA executor: ", ex.describe());
  return emulated->launches();
}

}  // namespace rf::emulated_cuda
