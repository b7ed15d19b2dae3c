// Many consecutive numbers of one random stream at once, on the host: the Philox blocks are
// computed side by side in SIMD registers (16 blocks per AVX-512 pass, 8 per AVX2 pass, one at a
// time on other builds). The same bits as RngStream::bits, one element at a time. Dropout is
// where it matters: drawn element by element, a block of four numbers cost about 90 cycles, and a
// CPU training step with dropout on spent as long drawing masks as multiplying matrices.
#pragma once

#include <cstdint>

#include "base/philox.h"

namespace rf {

// words[k] = stream.bits(first + k) for k in [0, n).
void philox_stream_words(const RngStream& stream, uint64_t first, int64_t n, uint32_t* words);

// out[i] = stream.normal(i) for i in [0, n), bit for bit: each Philox block drawn once (by
// philox_stream_words) rather than once per element, as normal(i) alone must.
void philox_stream_normals(const RngStream& stream, int64_t n, float* out);

// Which of philox_stream_words's paths this build runs: "avx512", "avx2" or "scalar".
const char* philox_batch_isa();

}  // namespace rf
