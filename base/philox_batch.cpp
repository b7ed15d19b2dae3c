#include "base/philox_batch.h"

#include <algorithm>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace rf {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

// What every block of a run shares: the key, and the counter's head, example and step words.
struct RunKey {
  uint32_t key0, key1, head, example, step;
};

// The counter's second word for a block whose index has bits 32 and up `high`
// (RngStream::block: the head above bits 32..47 of the index).
uint32_t counter_word1(uint32_t head, uint64_t high) {
  return (head << 16) | static_cast<uint32_t>(high & 0xFFFFu);
}

// Each instruction set gives a lane type (32-bit lanes, a GCC vector, or one uint32_t on other
// builds), its lanes' indices, m * a split into high and low words per lane, and a store that
// writes four lane registers' blocks in element order; the counter and the rounds are written
// once, below, for all three.
#if defined(__AVX512F__)
#define RF_PHILOX_BATCH_ISA "avx512"
// GCC 12's AVX-512 shift and blend intrinsics pass an undefined vector as the masked-off source,
// which -Wuninitialized reports once they are inlined: a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
typedef uint32_t Lanes __attribute__((vector_size(64)));
constexpr int64_t kBlocksPerPass = 16;  // a block per lane
constexpr Lanes kLaneIndex = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// vpmuludq multiplies the even lanes, and the odd ones shifted down.
inline void mul_hi_lo(uint32_t m, Lanes a, Lanes* hi, Lanes* lo) {
  const __m512i mv = _mm512_set1_epi32(static_cast<int>(m)), av = (__m512i)a;
  const __m512i even = _mm512_mul_epu32(av, mv);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(av, 32), mv);
  *hi = (Lanes)_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  *lo = (Lanes)_mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// Word k of block j is in lane j of register k; out[4 j + k] is word k of block j. Within each
// 128-bit lane L, r_j becomes block 4 L + j's four words; then the lanes are gathered so that
// each output register holds four consecutive blocks.
inline void store_blocks(Lanes w0, Lanes w1, Lanes w2, Lanes w3, uint32_t* out) {
  const __m512i v0 = (__m512i)w0, v1 = (__m512i)w1, v2 = (__m512i)w2, v3 = (__m512i)w3;
  const __m512i t0 = _mm512_unpacklo_epi32(v0, v1), t1 = _mm512_unpackhi_epi32(v0, v1);
  const __m512i t2 = _mm512_unpacklo_epi32(v2, v3), t3 = _mm512_unpackhi_epi32(v2, v3);
  const __m512i r0 = _mm512_unpacklo_epi64(t0, t2), r1 = _mm512_unpackhi_epi64(t0, t2);
  const __m512i r2 = _mm512_unpacklo_epi64(t1, t3), r3 = _mm512_unpackhi_epi64(t1, t3);
  const __m512i a01 = _mm512_shuffle_i32x4(r0, r1, 0x44), b01 = _mm512_shuffle_i32x4(r2, r3, 0x44);
  const __m512i a23 = _mm512_shuffle_i32x4(r0, r1, 0xEE), b23 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
  _mm512_storeu_si512(out, _mm512_shuffle_i32x4(a01, b01, 0x88));
  _mm512_storeu_si512(out + 16, _mm512_shuffle_i32x4(a01, b01, 0xDD));
  _mm512_storeu_si512(out + 32, _mm512_shuffle_i32x4(a23, b23, 0x88));
  _mm512_storeu_si512(out + 48, _mm512_shuffle_i32x4(a23, b23, 0xDD));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#elif defined(__AVX2__)
#define RF_PHILOX_BATCH_ISA "avx2"
typedef uint32_t Lanes __attribute__((vector_size(32)));
constexpr int64_t kBlocksPerPass = 8;  // a block per lane
constexpr Lanes kLaneIndex = {0, 1, 2, 3, 4, 5, 6, 7};

inline void mul_hi_lo(uint32_t m, Lanes a, Lanes* hi, Lanes* lo) {
  const __m256i mv = _mm256_set1_epi32(static_cast<int>(m)), av = (__m256i)a;
  const __m256i even = _mm256_mul_epu32(av, mv);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(av, 32), mv);
  *hi = (Lanes)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  *lo = (Lanes)_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// As the AVX-512 version: r_j holds block 4 L + j of 128-bit lane L, then pairs of blocks.
inline void store_blocks(Lanes w0, Lanes w1, Lanes w2, Lanes w3, uint32_t* out) {
  const __m256i v0 = (__m256i)w0, v1 = (__m256i)w1, v2 = (__m256i)w2, v3 = (__m256i)w3;
  const __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpackhi_epi32(v0, v1);
  const __m256i t2 = _mm256_unpacklo_epi32(v2, v3), t3 = _mm256_unpackhi_epi32(v2, v3);
  const __m256i r0 = _mm256_unpacklo_epi64(t0, t2), r1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i r2 = _mm256_unpacklo_epi64(t1, t3), r3 = _mm256_unpackhi_epi64(t1, t3);
  auto* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o, _mm256_permute2x128_si256(r0, r1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(r2, r3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(r0, r1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(r2, r3, 0x31));
}

#else
#define RF_PHILOX_BATCH_ISA "scalar"
using Lanes = uint32_t;
constexpr int64_t kBlocksPerPass = 1;
constexpr Lanes kLaneIndex = 0;

inline void mul_hi_lo(uint32_t m, Lanes a, Lanes* hi, Lanes* lo) {
  philox_mulhilo(m, a, hi, lo);
}

inline void store_blocks(Lanes w0, Lanes w1, Lanes w2, Lanes w3, uint32_t* out) {
  out[0] = w0;
  out[1] = w1;
  out[2] = w2;
  out[3] = w3;
}
#endif

static_assert(sizeof(Lanes) == kBlocksPerPass * sizeof(uint32_t), "a block per 32-bit lane");

// Blocks first_block .. first_block + kBlocksPerPass - 1, one per lane, their words in element
// order: out[4 j + k] is word k of block first_block + j. philox4x32_10's rounds on every lane.
void blocks(const RunKey& run, uint64_t first_block, uint32_t* out) {
  const uint32_t low = static_cast<uint32_t>(first_block);
  const uint64_t high = first_block >> 32;
  Lanes v0 = kLaneIndex + low;
  // (a lane whose low word wrapped carries into the index's high bits)
  Lanes v1 = v0 < low ? Lanes{} + counter_word1(run.head, high + 1)
                      : Lanes{} + counter_word1(run.head, high);
  Lanes v2 = Lanes{} + run.example, v3 = Lanes{} + run.step;
  uint32_t k0 = run.key0, k1 = run.key1;
  for (int round = 0; round < 10; ++round) {
    Lanes hi0, lo0, hi1, lo1;
    mul_hi_lo(kMul0, v0, &hi0, &lo0);
    mul_hi_lo(kMul1, v2, &hi1, &lo1);
    v0 = hi1 ^ v1 ^ k0;
    v1 = lo1;
    v2 = hi0 ^ v3 ^ k1;
    v3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  store_blocks(v0, v1, v2, v3, out);
}

constexpr int64_t kWordsPerPass = 4 * kBlocksPerPass;

}  // namespace

void philox_stream_words(const RngStream& stream, uint64_t first, int64_t n, uint32_t* words) {
  if (n <= 0) return;
  const RunKey run = {stream.key0, stream.key1, stream.head, stream.example, stream.step_word()};
  const uint64_t end = first + static_cast<uint64_t>(n);
  uint32_t pass[kWordsPerPass];
  for (uint64_t block = first >> 2; 4 * block < end; block += kBlocksPerPass) {
    const uint64_t e0 = 4 * block, e1 = e0 + kWordsPerPass;
    if (e0 >= first && e1 <= end) {  // a whole pass inside the run: straight to its place
      blocks(run, block, words + (e0 - first));
      continue;
    }
    blocks(run, block, pass);
    const uint64_t from = std::max(e0, first), to = std::min(e1, end);
    std::copy(pass + (from - e0), pass + (to - e0), words + (from - first));
  }
}

void philox_stream_normals(const RngStream& stream, int64_t n, float* out) {
  // Element i's pair of words is bits(i & ~1) and bits((i & ~1) + 1) (RngStream::normal).
  std::vector<uint32_t> words(static_cast<size_t>(2 * ((n + 1) / 2)));
  philox_stream_words(stream, 0, static_cast<int64_t>(words.size()), words.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t even = i & ~int64_t{1};
    out[i] = RngStream::normal_from_words(words[even], words[even + 1], (i & 1) != 0);
  }
}

const char* philox_batch_isa() {
  return RF_PHILOX_BATCH_ISA;
}

}  // namespace rf
