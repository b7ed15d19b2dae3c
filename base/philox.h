// Philox-4x32-10 counter-based random numbers (Salmon et al., SC'11), usable on host and device.
// Every random number of the project (LSH rotations, dropout masks, parameter init, synthetic data)
// is a pure function of (seed, purpose, layer) -> key and (step, example, head, element) ->
// counter, never of a rank or a thread. So the reversible backward replays dropout exactly, CPU and
// GPU draw the same numbers, and N ranks with batch b draw what 1 rank with batch N*b draws.
#pragma once

#include "base/hd.h"

namespace rf {

struct Philox4 {
  uint32_t v[4];
};

RF_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// Ten rounds of Philox-4x32 on counter c with key (k0, k1).
RF_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, c.v[0], &hi0, &lo0);
    philox_mulhilo(kMul1, c.v[2], &hi1, &lo1);
    const Philox4 next = {{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    c = next;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

// splitmix64 finaliser: mixes seed, purpose and layer into a 64-bit Philox key.
RF_HD uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// What a random stream is used for; part of the key so streams never overlap.
enum class RngPurpose : uint32_t {
  kParamInit = 1,
  kRotation = 2,
  kAttentionDropout = 3,
  kAttentionOutputDropout = 4,
  kFeedForwardDropout = 5,
  kFeedForwardOutputDropout = 6,
  kEmbeddingDropout = 7,
  kSyntheticData = 8,
  kShuffle = 9,
  kSampling = 10,
};

// One stream of random numbers: a key plus the fixed high counter words. Element i of the stream
// is drawn from counter (i / lanes, head | high bits of i, example, step).
struct RngStream {
  uint32_t key0 = 0, key1 = 0;
  uint32_t step = 0;
  uint32_t example = 0;
  uint32_t head = 0;
  // When set, the step word is read from here (executor memory) as numbers are drawn, instead of
  // `step`: a training step's launches then carry the same arguments every step, so they can be
  // captured once and replayed (a CUDA graph) while the host writes each step's number there.
  const uint32_t* step_source = nullptr;

  RF_HD uint32_t step_word() const { return step_source ? *step_source : step; }
  RF_HD Philox4 block(uint64_t block_index) const {
    const Philox4 counter = {{static_cast<uint32_t>(block_index),
                              (head << 16) | static_cast<uint32_t>((block_index >> 32) & 0xFFFFu),
                              example, step_word()}};
    return philox4x32_10(counter, key0, key1);
  }
  // Word k < 4 of a block, picked by selects rather than by indexing the block: a GPU keeps an
  // array indexed at run time in local memory, a store and a load per number drawn.
  RF_HD static uint32_t word(const Philox4& b, uint32_t k) {
    return k < 2 ? (k == 0 ? b.v[0] : b.v[1]) : (k == 2 ? b.v[2] : b.v[3]);
  }
  // 32 random bits for element i.
  RF_HD uint32_t bits(uint64_t i) const {
    return word(block(i >> 2), static_cast<uint32_t>(i & 3));
  }
  // Uniform in [0, 1) with 24 bits of resolution, from an element's 32 random bits.
  RF_HD static float uniform_from_bits(uint32_t b) {
    return static_cast<float>(b >> 8) * (1.0f / 16777216.0f);
  }
  RF_HD float uniform(uint64_t i) const { return uniform_from_bits(bits(i)); }
  // Standard normal for element i (Box-Muller over one Philox block, two normals per block half).
  // Its words are bits(i & ~1) and bits((i & ~1) + 1) of the stream.
  RF_HD float normal(uint64_t i) const {
    const Philox4 r = block(i >> 2);
    const uint32_t first = 2 * static_cast<uint32_t>((i >> 1) & 1);  // words 0-1 or 2-3
    return normal_from_words(word(r, first), word(r, first + 1), (i & 1) != 0);
  }
  // The normal of an even (cosine) or odd (sine) element from its pair's two words.
  RF_HD static float normal_from_words(uint32_t w1, uint32_t w2, bool odd) {
    const float u1 = (static_cast<float>(w1 >> 8) + 1.0f) * (1.0f / 16777216.0f);
    const float u2 = static_cast<float>(w2 >> 8) * (1.0f / 16777216.0f);
    const float radius = sqrtf(-2.0f * logf(u1));
    const float angle = 6.2831853071795864f * u2;
    return odd ? radius * sinf(angle) : radius * cosf(angle);
  }
};

// Builds the stream for (seed, purpose, layer) at (step, example, head).
RF_HD RngStream make_rng_stream(uint64_t seed, RngPurpose purpose, uint32_t layer, uint32_t step,
                                uint32_t example, uint32_t head) {
  const uint64_t key =
      mix64(seed ^ mix64((static_cast<uint64_t>(purpose) << 32) | static_cast<uint64_t>(layer)));
  RngStream s;
  s.key0 = static_cast<uint32_t>(key);
  s.key1 = static_cast<uint32_t>(key >> 32);
  s.step = step;
  s.example = example;
  s.head = head;
  return s;
}

}  // namespace rf
