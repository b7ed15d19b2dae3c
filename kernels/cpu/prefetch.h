// Software prefetches that the compiler keeps. GCC treats __builtin_prefetch as free of side
// effects, and with -ffinite-loops (the default for C++ at -O2) it deletes a loop whose body is
// only prefetches, such as one over the cache lines of a row: tile gathers and round loops lost
// theirs that way (seen in the disassembly, GCC 12). An asm statement is never deleted.
#pragma once

#include <cstdint>

namespace rf::cpu {

// Asks for the cache line holding p (into every cache level).
inline void prefetch_line(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

// Asks for the cache lines of n floats from row.
inline void prefetch_floats(const float* row, int64_t n) {
  constexpr int64_t kFloatsPerLine = 64 / static_cast<int64_t>(sizeof(float));
  for (int64_t x = 0; x < n; x += kFloatsPerLine) prefetch_line(row + x);
}

}  // namespace rf::cpu
