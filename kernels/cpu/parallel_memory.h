// The CPU executor's copies and zero fills, split over the OpenMP threads when they are large:
// on the 2-core AVX-512 VM one thread's memcpy moved 15 GB/s (1 to 16 MiB, 2026-12-04) and two
// threads' 29 GB/s; below 256 KiB (in cache) the split gains little. Every byte is written once,
// as memcpy and memset would: the result does not depend on the split.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rf::cpu {

// Operations smaller than this stay on the calling thread.
constexpr size_t kParallelMemoryBytes = size_t{256} << 10;

// piece(first, count) over [0, bytes) in one run per thread, each run 64-byte aligned in
// offset (whole cache lines per thread).
template <class Piece>
void in_thread_pieces(size_t bytes, const Piece& piece) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (bytes < kParallelMemoryBytes || threads <= 1) {
    piece(size_t{0}, bytes);
    return;
  }
  const size_t n = static_cast<size_t>(threads);
  const size_t per = ((bytes + n - 1) / n + 63) / 64 * 64;  // (the last thread's run may be short)
#pragma omp parallel num_threads(threads)
  {
    const size_t first = std::min(bytes, per * static_cast<size_t>(omp_get_thread_num()));
    const size_t count = std::min(per, bytes - first);
    if (count > 0) piece(first, count);
  }
}

// Whether [a, a + bytes) and [b, b + bytes) share a byte.
inline bool overlapping(const void* a, const void* b, size_t bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bytes && y < x + bytes;
}

// memmove(dst, src, bytes); regions that do not overlap are copied in pieces on all threads.
inline void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (overlapping(dst, src, bytes)) {
    std::memmove(dst, src, bytes);
    return;
  }
  auto* to = static_cast<char*>(dst);
  const auto* from = static_cast<const char*>(src);
  in_thread_pieces(
      bytes, [&](size_t first, size_t count) { std::memcpy(to + first, from + first, count); });
}

// memset(ptr, 0, bytes) in pieces on all threads.
inline void zero_bytes(void* ptr, size_t bytes) {
  auto* to = static_cast<char*>(ptr);
  in_thread_pieces(bytes, [&](size_t first, size_t count) { std::memset(to + first, 0, count); });
}

}  // namespace rf::cpu
