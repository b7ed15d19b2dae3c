// The CPU executor: kernels run in OpenMP loops over their index range, GEMMs go to OpenBLAS's
// column-major CBLAS with exactly the fields cuBLAS would receive, or to oneDNN's matmul: at bf16
// every single product (kernels/cpu/bf16_gemm.h), at fp32 on AVX-512 CPUs every single product
// (kernels/cpu/onednn_matmul.h; measured below). OpenMP is the only
// threading model (OpenBLAS is the OpenMP build), so kernel loops and both libraries share one
// pool of threads.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "base/error.h"
#include "kernels/cpu/bf16_gemm.h"
#include "kernels/cpu/chunk_attention_tiles.h"
#include "kernels/cpu/embedding_grad_loops.h"
#include "kernels/cpu/first_argmax.h"
#include "kernels/cpu/flat_loops.h"
#include "kernels/cpu/host_memory.h"
#include "kernels/cpu/lsh_argmax.h"
#include "kernels/cpu/onednn_matmul.h"
#include "kernels/cpu/openblas_blocks.h"
#include "kernels/cpu/openblas_buffers.h"
#include "kernels/cpu/openblas_core.h"
#include "kernels/cpu/parallel_memory.h"
#include "kernels/cpu/round_prefetch.h"
#include "kernels/executor_impl.h"

extern "C" {
// Provided by OpenBLAS (not declared in every cblas.h).
char* openblas_get_config(void);
}

namespace rf {
namespace {

// The instruction sets this build's own kernels were compiled for (-march): their vector width
// and fused multiply-adds decide the order and rounding of their sums.
const char* built_instruction_sets() {
#if defined(__AMX_TILE__) && defined(__AVX512BF16__)
  return "AVX-512 with BF16 and AMX";
#elif defined(__AVX512BF16__)
  return "AVX-512 with BF16";
#elif defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "AVX2 with FMA";
#elif defined(__AVX2__)
  return "AVX2";
#else
  return "a target without AVX2";
#endif
}

struct CpuBackend {
  template <class Op>
  static void for_each(const Executor&, int64_t n, const Op& op) {
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) op(i);
  }
  // The LSH hash's argmax vectorised (kernels/cpu/lsh_argmax.h), the same buckets.
  static void for_each(const Executor& ex, int64_t n, const LshHash& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned) {
      for_each<LshHash>(ex, n, op);
      return;
    }
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) cpu::lsh_hash_row(op, i);
  }
  // The optimizer and the embedding in loops the compiler vectorises (kernels/cpu/flat_loops.h).
  static void for_each(const Executor& ex, int64_t n, const AdamWUpdate& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned) {
      for_each<AdamWUpdate>(ex, n, op);
      return;
    }
    constexpr int64_t kBlock = 16384;
#pragma omp parallel for schedule(static) if (n > kBlock)
    for (int64_t b = 0; b < n; b += kBlock) cpu::adamw_update_range(op, b, std::min(n, b + kBlock));
  }
  // The cross-entropy's prediction (its first largest logit) found with vectors
  // (kernels/cpu/first_argmax.h); the rest is the functor's.
  static void for_each(const Executor& ex, int64_t n, const CrossEntropyRow& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned) {
      for_each<CrossEntropyRow>(ex, n, op);
      return;
    }
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t row = 0; row < n; ++row)
      op.finish(row, cpu::first_argmax(op.logits + row * op.vocab, op.vocab));
  }
  // The functors that combine hash rounds, each index asking for the scattered rows of the index
  // a few ahead (kernels/cpu/round_prefetch.h).
  template <class Op>
  static void for_each_prefetching_rounds(const Executor& ex, int64_t n, const Op& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned) {
      for_each<Op>(ex, n, op);
      return;
    }
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
      if (i + cpu::kRoundPrefetchAhead < n)
        cpu::prefetch_round_rows(op, i + cpu::kRoundPrefetchAhead);
      op(i);
    }
  }
  // Shared-QK key scales walking the rows, each head of a row at once, where the launch has whole
  // examples (kernels/cpu/flat_loops.h).
  static void for_each(const Executor& ex, int64_t n, const KeyNormScales& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned || !cpu::key_norm_scales_by_position(op)) {
      for_each<KeyNormScales>(ex, n, op);
      return;
    }
    const int64_t rows = n / op.p.heads, block = std::max<int64_t>(1, 512 / op.p.heads);
#pragma omp parallel for schedule(static) if (rows > block)
    for (int64_t b = 0; b < rows; b += block)
      cpu::key_norm_scales_positions(op, b, std::min(rows, b + block));
  }
  static void for_each(const Executor& ex, int64_t n, const CombineRounds& op) {
    for_each_prefetching_rounds(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const CombineRoundsBackward& op) {
    for_each_prefetching_rounds(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const UngatherAttentionGrads& op) {
    for_each_prefetching_rounds(ex, n, op);
  }
  static void for_each(const Executor& ex, int64_t n, const EmbedForward& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned || n % op.d_model != 0) {
      for_each<EmbedForward>(ex, n, op);
      return;
    }
    const int64_t rows = n / op.d_model;
#pragma omp parallel for schedule(static) if (rows > 1)
    for (int64_t row = 0; row < rows; ++row) cpu::embed_forward_row(op, row);
  }
  // The embedding's gradients summing whole rows (kernels/cpu/embedding_grad_loops.h).
  static void for_each(const Executor& ex, int64_t n, const EmbedTokenBackward& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned || n % op.d_model != 0) {
      for_each<EmbedTokenBackward>(ex, n, op);
      return;
    }
    const int64_t tokens = n / op.d_model;
    // (Dynamic: a frequent token has many more rows than a rare one.)
#pragma omp parallel for schedule(dynamic, 4) if (tokens > 1)
    for (int64_t v = 0; v < tokens; ++v) cpu::embed_token_backward_row(op, v);
  }
  static void for_each(const Executor& ex, int64_t n, const AxialPositionBackward& op) {
    if (ex.kernel_variant() != KernelVariant::kTuned || n != op.n1 * op.d1 + op.n2 * op.d2) {
      for_each<AxialPositionBackward>(ex, n, op);
      return;
    }
#pragma omp parallel for schedule(static) if (op.n1 > 1)
    for (int64_t a = 0; a < op.n1; ++a) cpu::axial_first_row_grads(op, a);
    constexpr int64_t kBlock = cpu::kAxialColumnsAtOnce;
#pragma omp parallel for schedule(static) if (op.n2 > kBlock)
    for (int64_t j = 0; j < op.n2; j += kBlock)
      cpu::axial_second_rows_grads(op, j, std::min(op.n2, j + kBlock));
  }
};

CBLAS_TRANSPOSE cblas_trans(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

class CpuExecutor final : public KernelExecutor<CpuBackend> {
 public:
  CpuExecutor(int threads, GemmPrecision precision, int ranks_on_host)
      : ranks_on_host_(std::max(ranks_on_host, 1)), memory_limit_(buffer_limit() / ranks_on_host_) {
    // Each thread may call OpenBLAS at once (a product per thread inside a parallel loop): more
    // than it holds buffers for crash it, so a larger runtime.threads is refused and the
    // default (cores, or OMP_NUM_THREADS) is capped.
    const int blas_callers = openblas_caller_limit();
    if (blas_callers > 0 && threads > blas_callers)
      fail("runtime.threads = ", threads, " is more than the ", blas_callers,
           " threads this OpenBLAS can serve at once (it was built with ", blas_callers / 2,
           " as MAX_THREADS and keeps buffers for twice that)");
    if (threads > 0) omp_set_num_threads(threads);
    if (threads == 0 && blas_callers > 0 && omp_get_max_threads() > blas_callers)
      omp_set_num_threads(blas_callers);
    threads_ = omp_get_max_threads();
    if (precision == GemmPrecision::kTf32)
      fail(
          "runtime.precision = tf32 needs runtime.device = cuda (TF32 is a GPU tensor-core "
          "format); the CPU executor offers fp32 and bf16");
    cpu::prepare_openblas_buffers(threads_);  // (why: kernels/cpu/openblas_buffers.h)
    // oneDNN's AVX-512 fp32 matmul against OpenBLAS 0.3.21 (SkylakeX kernel) in the reference
    // model's 4K-token step (step_bench --profile-ops): 14-20% faster for the products whose B
    // is untransposed ([1024, 256] x [256, 1024] and the like; the whole step +6.5% at 4K and
    // +7-12% at 64K in alternated pairs, 2026-12-02), and 190-210 -> 268-304 GFLOP/s for the
    // weight gradients, whose B is transposed (`NT`; the whole step +4% at 4K, median of 5
    // pairs, and +7-9% at 64K, 2026-12-03). Batches (attention chunks) stay in OpenBLAS. Not
    // measured on CPUs without AVX-512: those keep OpenBLAS.
    if (precision == GemmPrecision::kFp32 && onednn_has_avx512())
      fp32_products_ = std::make_unique<OnednnMatmul>(OperandType::kFp32);
    if (precision == GemmPrecision::kBf16) {
      bf16_ = std::make_unique<Bf16Gemm>();
      tile_products_ =
          cpu::bf16_tile_products_available() ? cpu::TileProducts::kBf16 : cpu::TileProducts::kFp32;
    }
  }

  Device device() const override { return Device::kCpu; }

  std::string describe() const override {
    std::ostringstream s;
    s << "cpu, " << threads_ << " OpenMP threads, " << openblas_get_config() << ", "
      << openblas_kernel_report();
    if (bf16_) s << "; single products in " << bf16_->describe();
    if (fp32_products_) s << "; single products in " << fp32_products_->describe();
    if (tile_products_ == cpu::TileProducts::kBf16) s << "; attention tiles bf16 on AMX";
    return s.str();
  }

  std::string arithmetic() const override {
    std::ostringstream s;
    // (OpenBLAS's configuration names the kernel it runs: the core a DYNAMIC_ARCH build chose.)
    s << "cpu code for " << built_instruction_sets() << "; " << openblas_get_config();
    if (fp32_products_)
      s << ", single fp32 products in " << fp32_products_->describe();
    else
      s << ", fp32 products in " << cpu::openblas_block_count_here() << " blocks";
    if (bf16_) s << ", bf16 products in " << bf16_->describe();
    if (tile_products_ == cpu::TileProducts::kBf16) s << ", attention tiles bf16 on AMX";
    return s.str();
  }

  void* allocate(size_t bytes) override {
    // (Where Linux would grant the memory and kill the process at its first touch: kernels/cpu/
    // host_memory.h. The limit is what the machine had when this executor started.)
    if (bytes > memory_limit_ || bytes_in_use() > memory_limit_ - bytes)
      fail("out of host memory: this process's buffers would take ", gib(bytes_in_use() + bytes),
           " GiB, more than the ", gib(memory_limit_),
           " GiB it may take (MemAvailable + SwapFree when it started, less a reserve",
           ranks_on_host_ > 1
               ? ", shared by the " + std::to_string(ranks_on_host_) + " ranks on this host"
               : std::string(),
           "); lower train.batch_size, train.seq_len or the model's size, or run fewer ranks on "
           "this machine");
    void* p = cpu::allocate_host_buffer(bytes);
    if (!p) fail("out of host memory allocating ", bytes, " bytes");
    count_allocation(bytes);
    return p;
  }
  void release(void* ptr, size_t bytes) override {
    if (!ptr) return;
    std::free(ptr);
    count_release(bytes);
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    count_memory_operation();
    cpu::copy_bytes(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    count_memory_operation();
    cpu::copy_bytes(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    count_memory_operation();
    cpu::copy_bytes(dst, src, bytes);
  }
  void zero(void* ptr, size_t bytes) override {
    count_memory_operation();
    cpu::zero_bytes(ptr, bytes);
  }
  void synchronize() override {}

  bool rounds_operands_to_bf16() const override { return bf16_ != nullptr; }

  void gemm(const GemmDesc& d, const void* a_operand, const void* b_operand, float* c) override {
    const std::string problem = gemm_desc_problem(d);
    RF_CHECK(problem.empty(), problem);
    const bool bf16_operands = d.a_type == OperandType::kBf16 || d.b_type == OperandType::kBf16;
    RF_CHECK(!bf16_operands || bf16_,
             "a bf16 GEMM operand reached the CPU executor at runtime.precision = fp32");
    if (d.m == 0 || d.n == 0) return;
    count_launch();
    if (bf16_ && d.batch == 1 && d.k > 0) {
      bf16_->run(d, a_operand, b_operand, c);
      return;
    }
    if (fp32_products_ && d.batch == 1 && d.k > 0) {
      fp32_products_->multiply(d, a_operand, b_operand, c);
      return;
    }
    const auto* a = static_cast<const float*>(a_operand);
    const auto* b = static_cast<const float*>(b_operand);
    auto one = [&](int64_t i) {
      cblas_sgemm(CblasColMajor, cblas_trans(d.trans_a), cblas_trans(d.trans_b),
                  static_cast<int>(d.m), static_cast<int>(d.n), static_cast<int>(d.k), d.alpha,
                  a + i * d.stride_a, static_cast<int>(d.lda), b + i * d.stride_b,
                  static_cast<int>(d.ldb), d.beta, c + i * d.stride_c, static_cast<int>(d.ldc));
    };
    if (d.batch == 1) {
      // (blocks cut independently of the thread count: kernels/cpu/openblas_blocks.h)
      cpu::multiply_in_openblas_blocks(d, a, b, c, cpu::openblas_block_count_here());
      return;
    }
    // Many small products (attention chunks): one product per thread; OpenBLAS runs
    // single-threaded inside an OpenMP parallel region.
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < d.batch; ++i) one(i);
  }

  void set_gemm_operand_reuse(bool on) override {  // (scopes nest)
    reuse_depth_ += on ? 1 : -1;
    RF_CHECK(reuse_depth_ >= 0, "unbalanced GEMM operand reuse");
    if (bf16_ && reuse_depth_ == (on ? 1 : 0)) bf16_->set_operand_reuse(on);
  }

  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override {
    if (kernel_variant() == KernelVariant::kTuned && !p.bf16_products) {
      count_launch();
      cpu::chunk_attention_tiled(pass, p, tile_products_);
    } else {
      Executor::chunk_attention(pass, p);
    }
  }

  size_t sort_scratch_bytes(const BucketSort& s) override {
    return static_cast<size_t>(s.segments * (s.total_buckets + 1)) * sizeof(int32_t);
  }
  void sort_buckets(const BucketSort& s, void* scratch) override {
    run(s.segments, BucketCountingSort{s.buckets, s.perm, s.undo, static_cast<int32_t*>(scratch),
                                       s.n, s.total_buckets});
  }

 private:
  static std::string gib(size_t bytes) {
    std::ostringstream s;
    s.precision(3);
    s << static_cast<double>(bytes) / (1u << 30);
    return s.str();
  }
  // What the machine had, less a reserve for the rest of the process (its code, OpenBLAS's
  // buffers, the data) and of the machine: 1 GiB, or an eighth on a machine with less than 8 GiB
  // free (a reserve of 1 GiB would refuse every buffer where less than that is free).
  static size_t buffer_limit() {
    const size_t available = cpu::host_memory_available();
    return available - std::min<size_t>(available / 8, size_t{1} << 30);
  }
  // Ranks on one host start together and each sees the whole machine free, so each takes an
  // equal share of it: together they stay within what the machine has.
  int ranks_on_host_ = 1;
  size_t memory_limit_ = 0;
  int threads_ = 1;
  std::unique_ptr<Bf16Gemm> bf16_;               // null: products in fp32
  std::unique_ptr<OnednnMatmul> fp32_products_;  // null: every fp32 product in OpenBLAS
  // The attention tiles' products: bf16 at runtime.precision = bf16 where AMX is available.
  cpu::TileProducts tile_products_ = cpu::TileProducts::kFp32;
  int reuse_depth_ = 0;  // open GemmOperandReuse scopes
};

}  // namespace

std::unique_ptr<Executor> make_cpu_executor(int threads, GemmPrecision precision,
                                            int ranks_on_host) {
  return std::make_unique<CpuExecutor>(threads, precision, ranks_on_host);
}

std::string cpu_library_versions() {
  return std::string(openblas_get_config()) + ", " + openblas_kernel_report() + "; oneDNN " +
         onednn_version();
}

}  // namespace rf
