// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TensorBoard's and
// TFRecord's record framing, and its "masked" form, which those formats store so that a CRC
// computed over data that itself holds CRCs does not degenerate.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rf {

// Continues a CRC-32C over bytes[0 .. count); start with crc = 0.
uint32_t crc32c(const uint8_t* bytes, size_t count, uint32_t crc = 0);

// ((crc >> 15) | (crc << 17)) + 0xa282ead8, as TensorFlow's record writer stores it.
uint32_t masked_crc32c(uint32_t crc);

}  // namespace rf
