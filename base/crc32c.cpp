#include "base/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace rf {
namespace {

constexpr uint32_t kCastagnoliReflected = 0x82F63B78u;
constexpr uint32_t kMaskDelta = 0xa282ead8u;

// The CRC of each byte value, one table lookup per byte (a few hundred MB/s): the portable path.
constexpr std::array<uint32_t, 256> crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kCastagnoliReflected : 0u);
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = crc_table();

uint32_t crc32c_table(const uint8_t* bytes, size_t count, uint32_t crc) {
  for (size_t i = 0; i < count; ++i) crc = (crc >> 8) ^ kCrcTable[(crc ^ bytes[i]) & 0xffu];
  return crc;
}

#if defined(__x86_64__)
// SSE4.2's crc32 instruction computes this very CRC (Castagnoli), 8 bytes per instruction: whole
// checkpoints are checked before they are read (data/file_seal.h), gigabytes at a time.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* bytes, size_t count,
                                                        uint32_t crc) {
  uint64_t c = crc;
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    c = _mm_crc32_u64(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; i < count; ++i) c32 = _mm_crc32_u8(c32, bytes[i]);
  return c32;
}

bool have_sse42() {
  static const bool yes = [] {
    __builtin_cpu_init();  // (may run before the library's own constructors)
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return yes;
}
#endif

}  // namespace

uint32_t crc32c(const uint8_t* bytes, size_t count, uint32_t crc) {
#if defined(__x86_64__)
  if (have_sse42()) return ~crc32c_sse42(bytes, count, ~crc);
#endif
  return ~crc32c_table(bytes, count, ~crc);
}

uint32_t masked_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

}  // namespace rf
