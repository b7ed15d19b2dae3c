// FNV-1a, the 64-bit hash the project uses for checksums: of token shards (their manifest lists
// one per shard) and of parameter buffers (all ranks hold bit-identical replicas).
#pragma once

#include <cstdint>

namespace rf {

inline constexpr uint64_t kFnv1aOffsetBasis = 14695981039346656037ULL;

// Continues an FNV-1a hash over bytes[0 .. count).
uint64_t fnv1a_bytes(uint64_t hash, const uint8_t* bytes, int64_t count);
// Continues an FNV-1a hash over tokens[0 .. count), each as its low `bytes_per_token` bytes
// (1, 2 or 4), little-endian: the same hash as fnv1a_bytes over the bytes a shard stores.
uint64_t fnv1a_tokens(uint64_t hash, const uint32_t* tokens, int64_t count, int bytes_per_token);

}  // namespace rf
