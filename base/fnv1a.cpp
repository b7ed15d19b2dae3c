#include "base/fnv1a.h"

namespace rf {
namespace {
constexpr uint64_t kFnv1aPrime = 1099511628211ULL;
}  // namespace

uint64_t fnv1a_bytes(uint64_t hash, const uint8_t* bytes, int64_t count) {
  for (int64_t i = 0; i < count; ++i) hash = (hash ^ bytes[i]) * kFnv1aPrime;
  return hash;
}

uint64_t fnv1a_tokens(uint64_t hash, const uint32_t* tokens, int64_t count, int bytes_per_token) {
  for (int64_t i = 0; i < count; ++i)
    for (int b = 0; b < bytes_per_token; ++b)
      hash = (hash ^ ((tokens[i] >> (8 * b)) & 0xffu)) * kFnv1aPrime;
  return hash;
}

}  // namespace rf
