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

// round_to_bf16 on the calling thread.
void round_run(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  if (cpu_converts_bf16())
    for (; i + 32 <= n; i += 32) round_block_avx512_bf16(x + i, y + i);
  for (; i < n; ++i) y[i] = bf16_bits(x[i]);
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

// The values an operand's product reads (gemm_desc.h), and when a rounded copy covers another.
struct Extent : OperandLayout {
  bool contiguous() const { return ld == rows || cols == 1; }
  // Whether a product reading `other` at the same address reads only values this one covers.
  bool covers(const Extent& other) const {
    return other.span() <= span() &&
           (contiguous() || (other.ld == ld && other.rows <= rows && other.cols <= cols));
  }
};

// Rounds the values of x an operand of extent e reads into y (same layout); the gaps between
// columns of a strided operand (a head's columns of a wider matrix) are left as they are. The LSH
// hash's per-head products read 64 of 256 columns: rounding only those cut the bf16 step's
// rounding by 19M values per 4K-token step (of 145M).
void round_extent(const float* x, const Extent& e, uint16_t* y) {
  if (e.contiguous()) {
    round_to_bf16(x, y, e.span());
    return;
  }
#pragma omp parallel for schedule(static) if (e.rows * e.cols > 65536)
  for (int64_t j = 0; j < e.cols; ++j) round_run(x + j * e.ld, y + j * e.ld, e.rows);
}

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
    Extent extent;                  // of source, rounded into bits (same layout)
    uint64_t used = 0;
    std::vector<uint16_t> bits;
  };
  Rounded rounded[6];
  std::vector<uint16_t> check;  // check_operand_reuse: the operand rounded again
  bool reuse = false;
  uint64_t clock = 0;
  int64_t largest_span = 0;  // of any operand rounded so far
  bool reuse_checks = g_operand_reuse_checks;

  // The values of x in extent e rounded, from the cache when reuse is on and it holds them;
  // `busy` is not replaced.
  const Rounded& round(const float* x, const Extent& e, const Rounded* busy) {
    ++clock;
    const int64_t span = e.span();
    if (reuse)
      for (Rounded& r : rounded)
        if (r.source == x && r.extent.covers(e)) {
          r.used = clock;
          if (reuse_checks) {
            verify_unchanged(r, e);
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
    round_extent(x, e, slot->bits.data());
    slot->source = reuse ? x : nullptr;
    slot->extent = e;
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
  void verify_unchanged(const Rounded& r, const Extent& e) {
    const int64_t span = e.span();
    if (check.size() < static_cast<size_t>(span)) check.resize(static_cast<size_t>(span));
    round_extent(r.source, e, check.data());
    for (int64_t j = 0; j < e.cols; ++j) {
      const int64_t first = j * e.ld, count = e.contiguous() ? span : e.rows;
      if (std::memcmp(check.data() + first, r.bits.data() + first,
                      static_cast<size_t>(count) * 2) != 0)
        fail(
            "a bf16 GEMM operand reused inside a GemmOperandReuse scope changed after it was "
            "rounded (",
            span, " values): something other than the scope's products wrote to it");
      if (e.contiguous()) break;
    }
  }

  // A product wrote c[0 .. span): forget what it overlaps.
  void written(const float* c, int64_t span) {
    for (Rounded& r : rounded)
      if (r.source && r.source < c + span && c < r.source + r.extent.span()) r.source = nullptr;
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
  // The values each operand's product reads (column-major with its leading dimension).
  const Extent extent_a{operand_layout_a(d)};
  const Extent extent_b{operand_layout_b(d)};
  // Operands as bf16: rounded here (or found in the cache) unless a producer wrote them so.
  const Impl::Rounded* a_rounded = nullptr;
  const uint16_t* a16 = static_cast<const uint16_t*>(a);
  if (d.a_type == OperandType::kFp32) {
    a_rounded = &im.round(static_cast<const float*>(a), extent_a, nullptr);
    a16 = a_rounded->bits.data();
  }
  const uint16_t* b16 = static_cast<const uint16_t*>(b);
  if (d.b_type == OperandType::kFp32)
    b16 = im.round(static_cast<const float*>(b), extent_b, a_rounded).bits.data();

  im.matmul.multiply(d, a16, b16, c);
  im.written(c, d.ldc * (d.n - 1) + d.m);
}

void Bf16Gemm::set_operand_reuse(bool on) {
  impl_->reuse = on;
  for (Impl::Rounded& r : impl_->rounded) r.source = nullptr;
}

}  // namespace rf
