#include "kernels/cpu/amx_tiles.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/prefetch.h"

// Only the functions marked RF_AMX_TARGET use AVX-512 and AMX instructions, and they run only after
// available() said yes: the rest of the build may target CPUs without them.
#define RF_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16,bmi2")))

namespace rf::cpu::amx {
namespace {

constexpr int kArchRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
constexpr int kTileDataFeature = 18;            // XFEATURE_XTILEDATA

bool cpu_reports_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool avx512bw = (b >> 30) & 1u, amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  const bool avx512_bf16 = (a >> 5) & 1u;
  return avx512bw && avx512_bf16 && amx_bf16 && amx_tile;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// One block of R x C output tiles (R, C in {1, 2}) at c over the whole depth.
template <int R, int C>
RF_AMX_TARGET void block(int64_t k_pad, const uint16_t* a, const uint16_t* b, int64_t n, float* c,
                         int64_t ldc, bool accumulate) {
  const int64_t a_stride = k_pad * 2, b_stride = n * 4, c_stride = ldc * 4;  // bytes
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    if constexpr (C > 1) _tile_loadd(1, c + 16, c_stride);
    if constexpr (R > 1) _tile_loadd(2, c + 16 * ldc, c_stride);
    if constexpr (R > 1 && C > 1) _tile_loadd(3, c + 16 * ldc + 16, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (C > 1) _tile_zero(1);
    if constexpr (R > 1) _tile_zero(2);
    if constexpr (R > 1 && C > 1) _tile_zero(3);
  }
  for (int64_t k0 = 0; k0 < k_pad; k0 += kDepthStep) {
    const uint16_t* b_rows = b + (k0 / 2) * n * 2;
    _tile_loadd(4, a + k0, a_stride);
    _tile_loadd(6, b_rows, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (C > 1) {
      _tile_loadd(7, b_rows + 32, b_stride);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (R > 1) {
      _tile_loadd(5, a + 16 * k_pad + k0, a_stride);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (C > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  if constexpr (C > 1) _tile_stored(1, c + 16, c_stride);
  if constexpr (R > 1) _tile_stored(2, c + 16 * ldc, c_stride);
  if constexpr (R > 1 && C > 1) _tile_stored(3, c + 16 * ldc + 16, c_stride);
}

// 32 bf16 (nearest even) of two 16-float vectors: lo's first.
RF_AMX_TARGET inline __m512i round_pair(__m512 lo, __m512 hi) {
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// The permutation of round_pair's 32 bf16 (16 of row p, then 16 of row p + 1) into the pairs
// layout: (p, j), (p + 1, j) for each j.
RF_AMX_TARGET inline __m512i pair_interleave() {
  return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                          6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

// Which of floats [c, c + 16) of a row lie before its end at cols.
RF_AMX_TARGET inline __mmask16 column_mask(int64_t c, int64_t cols) {
  const int64_t count = std::clamp<int64_t>(cols - c, 0, 16);
  return static_cast<__mmask16>(_bzhi_u32(0xffffu, static_cast<unsigned>(count)));
}

// Floats [c, c + 16) of a row, zeros from cols on (nothing past it is read), times `scale` when
// kScaled.
template <bool kScaled>
RF_AMX_TARGET inline __m512 load_columns(const float* row, __m512 scale, int64_t c, int64_t cols) {
  const __mmask16 mask = column_mask(c, cols);
  const __m512 x = _mm512_maskz_loadu_ps(mask, row + c);
  if constexpr (kScaled) return _mm512_maskz_mul_ps(mask, x, scale);
  return x;
}

// Columns [j, j + 16) of rows p and p + 1 of a rows layout (zeros for rows from count on), as
// round_pair lays out two rows: row p's 16 bf16, then row p + 1's.
RF_AMX_TARGET inline __m512i two_row_parts(const uint16_t* a_rows, int64_t depth, int64_t count,
                                           int64_t p, int64_t j) {
  __m512i v = _mm512_setzero_si512();
  if (p < count) v = _mm512_maskz_loadu_epi16(0x0000ffffu, a_rows + p * depth + j);
  // (Lanes 16-31 load from 16 values before row p + 1's column j; the masked-off lanes are not
  // read.)
  if (p + 1 < count) v = _mm512_mask_loadu_epi16(v, 0xffff0000u, a_rows + (p + 1) * depth + j - 16);
  return v;
}

// How many rows ahead pack_rows_from asks for a scattered source's rows: the rows of an LSH tile
// are scattered over the sequence, which the hardware prefetchers do not follow.
constexpr int64_t kPrefetchRowsAhead = 8;

// The rows layout of rows row_of(r), r < m, of `cols` floats (times scales[r] when kScaled), rows
// m .. m_pad - 1 zero; with kScattered the rows kPrefetchRowsAhead on are asked for first.
template <bool kScaled, bool kScattered, class RowOf>
RF_AMX_TARGET void pack_rows_from(const RowOf& row_of, const float* scales, int64_t m,
                                  int64_t m_pad, int64_t cols, uint16_t* out) {
  const int64_t k_pad = padded_depth(cols);
  for (int64_t r = 0; r < m; ++r) {
    if (kScattered && r + kPrefetchRowsAhead < m)
      prefetch_floats(row_of(r + kPrefetchRowsAhead), cols);
    const float* in = row_of(r);
    const __m512 scale = _mm512_set1_ps(kScaled ? scales[r] : 1.0f);
    uint16_t* row = out + r * k_pad;
    for (int64_t c = 0; c < k_pad; c += 32)
      _mm512_storeu_si512(row + c, round_pair(load_columns<kScaled>(in, scale, c, cols),
                                              load_columns<kScaled>(in, scale, c + 16, cols)));
  }
  std::memset(out + m * k_pad, 0, static_cast<size_t>((m_pad - m) * k_pad) * sizeof(uint16_t));
}

// The transpose of 16 rows of 16 32-bit words, in place. (GCC 12's unpack intrinsics start from
// an "undefined" vector that its -Wmaybe-uninitialized mistakes for a read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
RF_AMX_TARGET inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int64_t i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int64_t i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int64_t j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}
#pragma GCC diagnostic pop

}  // namespace

RF_AMX_TARGET void transpose_words(const void* in, int64_t ld_in, int64_t rows, int64_t cols,
                                   void* out, int64_t ld_out) {
  const auto* src = static_cast<const uint32_t*>(in);
  auto* dst = static_cast<uint32_t*>(out);
  for (int64_t r0 = 0; r0 < rows; r0 += 16)
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      __m512i block[16];
      for (int i = 0; i < 16; ++i) block[i] = _mm512_loadu_si512(src + (r0 + i) * ld_in + c0);
      transpose16(block);
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(dst + (c0 + i) * ld_out + r0, block[i]);
    }
}

bool available() {
  static const bool ok = cpu_reports_amx_bf16() &&
                         syscall(SYS_arch_prctl, kArchRequestPermission, kTileDataFeature) == 0;
  return ok;
}

// Tiles 0-3 hold a 2 x 2 block of C (16 x 16 floats each), 4-5 two A tiles (16 rows of 32 bf16),
// 6-7 two B tiles (16 pairs of rows, 16 columns).
RF_AMX_TARGET void load_tile_config() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.rows[t] = 16;
      c.bytes_per_row[t] = 64;
    }
    return c;
  }();
  _tile_loadconfig(&config);
}

RF_AMX_TARGET void pack_rows(const float* a, int64_t lda, int64_t m, int64_t m_pad, int64_t k,
                             uint16_t* out) {
  pack_rows_from<false, false>([=](int64_t r) { return a + r * lda; }, nullptr, m, m_pad, k, out);
}

RF_AMX_TARGET void pack_pairs(const float* b, int64_t ldb, int64_t k, int64_t n, uint16_t* out) {
  const int64_t k_pad = padded_depth(k);
  const __m512i interleave = pair_interleave();
  for (int64_t p = 0; p < k_pad; p += 2) {
    uint16_t* pair_row = out + (p / 2) * n * 2;
    for (int64_t j = 0; j < n; j += 16) {
      const __m512 first = p < k ? _mm512_loadu_ps(b + p * ldb + j) : _mm512_setzero_ps();
      const __m512 second =
          p + 1 < k ? _mm512_loadu_ps(b + (p + 1) * ldb + j) : _mm512_setzero_ps();
      _mm512_storeu_si512(pair_row + j * 2,
                          _mm512_permutexvar_epi16(interleave, round_pair(first, second)));
    }
  }
}

RF_AMX_TARGET void pack_rows_of(const float* const* rows, const float* scales, int64_t m,
                                int64_t m_pad, int64_t cols, uint16_t* out) {
  const auto row_of = [rows](int64_t r) { return rows[r]; };
  if (scales)
    pack_rows_from<true, true>(row_of, scales, m, m_pad, cols, out);
  else
    pack_rows_from<false, true>(row_of, scales, m, m_pad, cols, out);
}

RF_AMX_TARGET void pairs_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count, int64_t n,
                                 uint16_t* out) {
  const int64_t k_pad = padded_depth(count);
  const __m512i interleave = pair_interleave();
  for (int64_t p = 0; p < k_pad; p += 2) {
    uint16_t* pair_row = out + (p / 2) * n * 2;
    for (int64_t j = 0; j < n; j += 16) {
      const __m512i both = two_row_parts(a_rows, depth, count, p, j);
      _mm512_storeu_si512(pair_row + j * 2, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

void pairs_transposed_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count_pad,
                              uint16_t* out) {
  // Seen as 32-bit words (two bf16 of consecutive columns), the pairs layout of S^T is the
  // transpose of the rows layout of S.
  transpose_words(a_rows, depth / 2, count_pad, depth / 2, out, count_pad);
}

void rows_transposed_of_rows(const uint16_t* a_rows, int64_t depth, int64_t count, int64_t cols_pad,
                             uint16_t* out) {
  // Likewise the rows layout of S^T is the transpose of the pairs layout of S.
  const int64_t count_depth = padded_depth(count);
  static thread_local std::vector<uint16_t> pairs;
  pairs.resize(static_cast<size_t>(count_depth * cols_pad));
  pairs_of_rows(a_rows, depth, count, cols_pad, pairs.data());
  transpose_words(pairs.data(), cols_pad, count_depth / 2, cols_pad, out, count_depth / 2);
}

RF_AMX_TARGET void multiply(int64_t m, int64_t n, int64_t k_pad, const uint16_t* a_rows,
                            const uint16_t* b_pairs, float* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < m; i += 32) {
    const bool two_rows = i + 16 < m;
    const uint16_t* a = a_rows + i * k_pad;
    for (int64_t j = 0; j < n; j += 32) {
      const bool two_cols = j + 16 < n;
      const uint16_t* b = b_pairs + j * 2;
      float* out = c + i * ldc + j;
      if (two_rows && two_cols)
        block<2, 2>(k_pad, a, b, n, out, ldc, accumulate);
      else if (two_rows)
        block<2, 1>(k_pad, a, b, n, out, ldc, accumulate);
      else if (two_cols)
        block<1, 2>(k_pad, a, b, n, out, ldc, accumulate);
      else
        block<1, 1>(k_pad, a, b, n, out, ldc, accumulate);
    }
  }
}

}  // namespace rf::cpu::amx
