#include "kernels/cpu/bf16_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/onednn_matmul.h"
#include "kernels/ops/bf16_round.h"

namespace rf {

namespace {

// 32 values with AVX512-BF16's conversion (round to nearest even, NaN kept quiet: bf16_bits's
// rule), except that it reads subnormal inputs as zero; blocks holding one take the scalar rule,
// so the bits never depend on the instruction set.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void round_block_avx512_bf16(const float* x,
                                                                                    uint16_t* y) {
  const __m512i exponent = _mm512_set1_epi32(0x7F800000), mantissa = _mm512_set1_epi32(0x007FFFFF);
  const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
  const __m512i lo_bits = _mm512_castps_si512(lo), hi_bits = _mm512_castps_si512(hi);
  const __mmask16 lo_subnormal =
      _mm512_testn_epi32_mask(lo_bits, exponent) & _mm512_test_epi32_mask(lo_bits, mantissa);
  const __mmask16 hi_subnormal =
      _mm512_testn_epi32_mask(hi_bits, exponent) & _mm512_test_epi32_mask(hi_bits, mantissa);
  if (lo_subnormal | hi_subnormal) {
    for (int i = 0; i < 32; ++i) y[i] = bf16_bits(x[i]);
    return;
  }
  _mm512_storeu_si512(y, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

// Whether this CPU converts with AVX512-BF16 (measured 2.2x the scalar rule's rate on operands
// that stay in cache; memory-bound beyond).
bool cpu_converts_bf16() {
  static const bool yes = __builtin_cpu_supports("avx512bf16");
  return yes;
}

}  // namespace

void round_to_bf16(const float* x, uint16_t* y, int64_t n) {
  if (cpu_converts_bf16()) {
    const int64_t blocks = n / 32;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t b = 0; b < blocks; ++b) round_block_avx512_bf16(x + 32 * b, y + 32 * b);
    for (int64_t i = 32 * blocks; i < n; ++i) y[i] = bf16_bits(x[i]);
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_bits(x[i]);
}

namespace {
bool g_operand_reuse_checks = false;
int64_t g_checked_reuses = 0;
}  // namespace

int64_t checked_operand_reuses() {
  return g_checked_reuses;
}

void set_operand_reuse_checks(bool on) {
  g_operand_reuse_checks = on;
}

bool cpu_has_bf16_dot_products() {
  return onednn_has_bf16_dot_products();
}

struct Bf16Gemm::Impl {
  OnednnMatmul matmul{OperandType::kBf16};
  // Operands rounded to bf16: [0] and [1] hold the two operands of a product; with reuse on, all
  // are a cache of recent operands (by address and extent), least recently used replaced. Six
  // hold what a feed-forward chunk's or an attention layer's backward pass reads more than once.
  struct Rounded {
    const float* source = nullptr;  // null: holds nothing reusable
    int64_t span = 0;
    uint64_t used = 0;
    std::vector<uint16_t> bits;
  };
  Rounded rounded[6];
  std::vector<uint16_t> check;  // check_operand_reuse: the operand rounded again
  bool reuse = false;
  uint64_t clock = 0;
  int64_t largest_span = 0;  // of any operand rounded so far
  bool reuse_checks = g_operand_reuse_checks;

  // x[0 .. span) rounded, from the cache when reuse is on and it holds x; `busy` is not replaced.
  const Rounded& round(const float* x, int64_t span, const Rounded* busy) {
    ++clock;
    if (reuse)
      for (Rounded& r : rounded)
        if (r.source == x && r.span >= span) {
          r.used = clock;
          if (reuse_checks) {
            verify_unchanged(r, span);
            ++g_checked_reuses;
          }
          return r;
        }
    Rounded* slot = reuse                 ? reuse_slot(span, busy)
                    : busy == &rounded[0] ? &rounded[1]
                                          : &rounded[0];
    if (static_cast<int64_t>(slot->bits.size()) < span)
      slot->bits.resize(static_cast<size_t>(span));
    largest_span = std::max(largest_span, span);
    round_to_bf16(x, slot->bits.data(), span);
    slot->source = reuse ? x : nullptr;
    slot->span = span;
    slot->used = clock;
    return *slot;
  }
  // The slot for a new operand of `span` values while reusing: the least recently used that
  // holds it without growing; else the least recently used if growing it keeps all slots within
  // kept_values(); else the largest (the least growth). So at long sequences, where one
  // activation is tens of MB, the cache keeps about three of them, as it did with three slots.
  Rounded* reuse_slot(int64_t span, const Rounded* busy) {
    Rounded *fits = nullptr, *oldest = nullptr, *largest = nullptr;
    int64_t held = 0;
    for (Rounded& r : rounded) {
      held += static_cast<int64_t>(r.bits.size());
      if (&r == busy) continue;
      if (static_cast<int64_t>(r.bits.size()) >= span && (!fits || r.used < fits->used)) fits = &r;
      if (!oldest || r.used < oldest->used) oldest = &r;
      if (!largest || r.bits.size() > largest->bits.size()) largest = &r;
    }
    if (fits) return fits;
    if (held - static_cast<int64_t>(oldest->bits.size()) + span <= kept_values()) return oldest;
    return largest;
  }
  // Values all slots may hold together: three of the largest operand seen, at least 16M (32 MB).
  int64_t kept_values() const { return std::max<int64_t>(3 * largest_span, int64_t{16} << 20); }
  // The check of a reused operand: memory still holds what was rounded (a scope whose promise
  // was broken would multiply stale values).
  void verify_unchanged(const Rounded& r, int64_t span) {
    if (check.size() < static_cast<size_t>(span)) check.resize(static_cast<size_t>(span));
    round_to_bf16(r.source, check.data(), span);
    if (std::memcmp(check.data(), r.bits.data(), static_cast<size_t>(span) * 2) != 0)
      fail(
          "a bf16 GEMM operand reused inside a GemmOperandReuse scope changed after it was "
          "rounded (",
          span, " values): something other than the scope's products wrote to it");
  }

  // A product wrote c[0 .. span): forget what it overlaps.
  void written(const float* c, int64_t span) {
    for (Rounded& r : rounded)
      if (r.source && r.source < c + span && c < r.source + r.span) r.source = nullptr;
  }
};

Bf16Gemm::Bf16Gemm() {
  if (!onednn_has_bf16_dot_products())
    fail(
        "runtime.precision = bf16 needs a CPU with AVX512-BF16 or AMX instructions; this one "
        "offers ",
        onednn_isa_name(), " (use runtime.precision = fp32)");
  impl_ = std::make_unique<Impl>();
}

Bf16Gemm::~Bf16Gemm() = default;

std::string Bf16Gemm::describe() const {
  return impl_->matmul.describe();
}

void Bf16Gemm::run(const GemmDesc& d, const void* a, const void* b, float* c) {
  RF_CHECK(d.batch == 1, "Bf16Gemm::run takes one product, got a batch of ", d.batch);
  Impl& im = *impl_;
  // Elements each operand spans in memory (column-major with its leading dimension).
  const int64_t rows_a = d.trans_a ? d.k : d.m, cols_a = d.trans_a ? d.m : d.k;
  const int64_t rows_b = d.trans_b ? d.n : d.k, cols_b = d.trans_b ? d.k : d.n;
  const int64_t span_a = d.lda * (cols_a - 1) + rows_a, span_b = d.ldb * (cols_b - 1) + rows_b;
  // Operands as bf16: rounded here (or found in the cache) unless a producer wrote them so.
  const Impl::Rounded* a_rounded = nullptr;
  const uint16_t* a16 = static_cast<const uint16_t*>(a);
  if (d.a_type == OperandType::kFp32) {
    a_rounded = &im.round(static_cast<const float*>(a), span_a, nullptr);
    a16 = a_rounded->bits.data();
  }
  const uint16_t* b16 = static_cast<const uint16_t*>(b);
  if (d.b_type == OperandType::kFp32)
    b16 = im.round(static_cast<const float*>(b), span_b, a_rounded).bits.data();

  im.matmul.multiply(d, a16, b16, c);
  im.written(c, d.ldc * (d.n - 1) + d.m);
}

void Bf16Gemm::set_operand_reuse(bool on) {
  impl_->reuse = on;
  for (Impl::Rounded& r : impl_->rounded) r.source = nullptr;
}

}  // namespace rf
