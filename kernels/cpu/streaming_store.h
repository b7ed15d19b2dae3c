// Rows written with non-temporal (streaming) stores: for outputs a pass writes once and does not
// read again, so the cache neither reads their lines in before the write nor keeps them after.
// The attention passes write their per-slot outputs this way: the forward O, the gradient pass
// dQ, dK and dV ([slots, d] arrays: 8 MB each at 4K tokens with 4 heads and 2 hash rounds), row
// by row; with ordinary stores the cache reads each line in before it is written and keeps the
// written lines, displacing other data. Measured with step_bench --profile-ops on the reference
// model (2026-12-05, alternated with the ordinary stores):
//   - dQ, dK, dV: the gradient pass 48-50 -> 41-43.5 ms per 4K bf16 step and 916-932 -> 798-825
//     ms per 64K bf16 step, whose attention forward passes also took 11% less; the whole 64K
//     bf16 step 5.43-5.47 -> 5.19-5.26 s;
//   - O, after that: the forward passes 983-1012 -> 858-893 ms per 64K bf16 step (the rounds'
//     combination that reads O unchanged), the step 5.37-5.44 -> 5.06-5.11 s; at 4K a wash (the
//     forward passes 1-2 ms less, the combination 1 ms more).
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace rf::cpu {

// Whether stream_row streams n floats to out: whole 64-byte lines only (a partly written line
// would go to memory in pieces).
inline bool streams_whole_lines(const float* out, int64_t n) {
#if defined(__x86_64__)
  return (reinterpret_cast<uintptr_t>(out) % 64) == 0 && (n * sizeof(float)) % 64 == 0;
#else
  (void)out;
  (void)n;
  return false;
#endif
}

// out[0 .. n) = in[0 .. n) (times `scale` with kScaled): streaming stores where they cover whole
// lines, else ordinary ones. The stores become visible to other threads only after
// finish_streamed_rows on this thread.
template <bool kScaled>
inline void stream_row_of(const float* in, float scale, int64_t n, float* out) {
#if defined(__x86_64__)
  if (streams_whole_lines(out, n)) {
    // (SSE's streaming store is in every x86-64 CPU; the write-combining buffers join a line's
    // four 16-byte parts before it leaves.)
    const __m128 factor = _mm_set1_ps(scale);
    for (int64_t x = 0; x < n; x += 4) {
      const __m128 v = _mm_loadu_ps(in + x);
      _mm_stream_ps(out + x, kScaled ? _mm_mul_ps(v, factor) : v);
    }
    return;
  }
#endif
  for (int64_t x = 0; x < n; ++x) out[x] = kScaled ? in[x] * scale : in[x];
}

inline void stream_row(const float* in, int64_t n, float* out) {
  stream_row_of<false>(in, 1.0f, n, out);
}

inline void stream_scaled_row(const float* in, float scale, int64_t n, float* out) {
  stream_row_of<true>(in, scale, n, out);
}

// Orders this thread's streaming stores before its later stores (streaming stores are weakly
// ordered): call it before the work item that made them ends, so the threads that meet at the
// pass's barrier see them.
inline void finish_streamed_rows() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

}  // namespace rf::cpu
