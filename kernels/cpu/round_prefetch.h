// Software prefetches for the CPU loops of the functors that combine LSH hash rounds
// (CombineRounds, CombineRoundsBackward, UngatherAttentionGrads in kernels/ops/chunk_attention.h).
// Each index reads, for every round, a row of a per-slot array at the slot where that round's
// sort put its position: rows scattered over arrays of several megabytes, a pattern the hardware
// prefetchers do not follow, so each index waited for its misses one after another. The loop asks
// for the rows of the index kRoundPrefetchAhead ahead before it runs op(i); op(i) is unchanged,
// so are the bits.
#pragma once

#include <cstdint>

#include "kernels/cpu/prefetch.h"
#include "kernels/ops/chunk_attention.h"

namespace rf::cpu {

constexpr int64_t kRoundPrefetchAhead = 4;  // indices ahead (2 to 16 measured the same)

// visit(slot) for each round of position t of segment s.
template <class Visit>
void for_each_round_slot(const ChunkAttentionParams& p, const int32_t* undo, int64_t n_rounds,
                         int64_t s, int64_t t, const Visit& visit) {
  for (int64_t r = 0; r < n_rounds; ++r) visit(round_slot(p, undo, s, r, t));
}

// The rows and statistics that index i of CombineRounds or (backward) CombineRoundsBackward reads.
inline void prefetch_combine(const ChunkAttentionParams& p, const int32_t* undo, int64_t n_rounds,
                             int64_t i, bool backward) {
  const int64_t s = i / p.query_len(), t = p.memory_len + i % p.query_len();
  for_each_round_slot(p, undo, n_rounds, s, t, [&](int64_t slot) {
    prefetch_floats(p.o + slot * p.d, p.d);
    prefetch_line(p.row_max + slot);
    prefetch_line(p.row_log_sum + slot);
    if (backward) {
      prefetch_line(p.delta + slot);
      prefetch_line(p.dlse + slot);
    }
  });
}

// What index i of each functor reads.
inline void prefetch_round_rows(const CombineRounds& op, int64_t i) {
  prefetch_combine(op.p, op.undo, op.n_rounds, i, false);
}
inline void prefetch_round_rows(const CombineRoundsBackward& op, int64_t i) {
  prefetch_combine(op.p, op.undo, op.n_rounds, i, true);
}
inline void prefetch_round_rows(const UngatherAttentionGrads& op, int64_t i) {
  const ChunkAttentionParams& p = op.p;
  const int64_t s = i / p.layout.seq_len, t = i % p.layout.seq_len;
  for_each_round_slot(p, op.undo, op.n_rounds, s, t, [&](int64_t slot) {
    prefetch_floats(p.dk + slot * p.d, p.d);
    prefetch_floats(p.dv + slot * p.d, p.d);
    if (t >= p.memory_len) prefetch_floats(p.dq + slot * p.d, p.d);
  });
}

}  // namespace rf::cpu
