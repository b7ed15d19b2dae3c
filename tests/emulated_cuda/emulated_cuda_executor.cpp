#include "tests/emulated_cuda/emulated_cuda_executor.h"

#include <type_traits>

#include "kernels/executor_impl.h"
#include "kernels/kernel_ops.h"
#include "tests/emulated_cuda/emulated_cuda.h"
#include "tests/test_util.h"

// The CUDA kernels, compiled here as C++ for the emulation (which made them plain C++ above). Their
// namespace rf::cuda becomes rf::cuda_on_cpu in this file: the CUDA library's build of the same
// kernels (host-side launch stubs of the same names) is linked into the tests too.
#define cuda cuda_on_cpu
// clang-format off
#include "kernels/cuda/attention_tile_launch.cuh"
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

  // A GPU to the launchers, so that they split rows a column per thread as for the CUDA
  // executor (row_split); its memory is the host's.
  Device device() const override { return Device::kCuda; }
  bool warp_per_row() const override { return kernel_variant() == KernelVariant::kTuned; }
  bool rounds_operands_to_bf16() const override { return bf16_operands_; }
  std::string describe() const override {
    return "emulated cuda (the CUDA kernels as fibers on the CPU; GEMMs and sort on the CPU)";
  }
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override {
    if (cuda_on_cpu::launch_chunk_attention<Launch>(*this, pass, p)) return;
    Executor::chunk_attention(pass, p);
  }

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
};

}  // namespace

std::unique_ptr<Executor> make_emulated_cuda_executor(bool bf16_operands) {
  return std::make_unique<EmulatedCudaExecutor>(bf16_operands);
}

EmulatedLaunches emulated_launches() {
  namespace kernels = cuda_on_cpu;
  namespace tiles = cuda_on_cpu::attention_tiles;
  auto of = [](auto kernel) { return launches_of(reinterpret_cast<const void*>(kernel)); };
  auto tiles_of = [&](auto forward, auto queries, auto keys) {
    return of(forward) + of(queries) + of(keys);
  };
  EmulatedLaunches l;
  l.layer_norm_forward_rows = of(kernels::layer_norm_forward_rows);
  l.layer_norm_backward_rows = of(kernels::layer_norm_backward_rows);
  l.cross_entropy_rows = of(kernels::cross_entropy_rows);
  l.column_strips = of(kernels::column_sum_partials_strips);
  l.sum_squares_blocks = of(kernels::sum_squares_blocks);
  l.norm_finalize_warp = of(kernels::gradient_norm_finalize_warp);
  l.activation_elements = of(kernels::row_elements<BiasActivationForward>);
  l.activation_backward_elements = of(kernels::row_elements<ActivationBackward>);
  l.combine_rounds_rows = of(kernels::combine_rounds_rows);
  l.combine_rounds_backward_rows = of(kernels::combine_rounds_backward_rows);
  l.ungather_rows = of(kernels::ungather_attention_grads_rows);
  // Every compiled variant (attention_tile_launch.cuh): width x score terms (x dropout).
  auto variants = [&](auto width, int w) {
    constexpr int D = decltype(width)::value;
    l.attention_tiles[w][0] =
        tiles_of(tiles::forward_tiles<D, false>, tiles::query_grad_tiles<D, false>,
                 tiles::key_grad_tiles<D, false>);
    l.attention_tiles[w][1] =
        tiles_of(tiles::forward_tiles<D, true>, tiles::query_grad_tiles<D, true>,
                 tiles::key_grad_tiles<D, true>);
    l.mma_tiles[w][0][0] = tiles_of(tiles::mma_forward_tiles<D, false, false>,
                                    tiles::mma_query_grad_tiles<D, false, false>,
                                    tiles::mma_key_grad_tiles<D, false, false>);
    l.mma_tiles[w][0][1] = tiles_of(tiles::mma_forward_tiles<D, false, true>,
                                    tiles::mma_query_grad_tiles<D, false, true>,
                                    tiles::mma_key_grad_tiles<D, false, true>);
    l.mma_tiles[w][1][0] = tiles_of(tiles::mma_forward_tiles<D, true, false>,
                                    tiles::mma_query_grad_tiles<D, true, false>,
                                    tiles::mma_key_grad_tiles<D, true, false>);
    l.mma_tiles[w][1][1] = tiles_of(tiles::mma_forward_tiles<D, true, true>,
                                    tiles::mma_query_grad_tiles<D, true, true>,
                                    tiles::mma_key_grad_tiles<D, true, true>);
  };
  variants(std::integral_constant<int, 32>(), 0);
  variants(std::integral_constant<int, 64>(), 1);
  variants(std::integral_constant<int, 128>(), 2);
  return l;
}

}  // namespace rf::emulated_cuda
