// Host memory for the CPU executor. How much a process can still take: MemAvailable plus SwapFree
// from /proc/meminfo. Linux grants allocations beyond that (overcommit) and kills the process (the
// OOM killer, exit 137, no message) once it touches the pages; the CPU executor checks its buffers
// against this figure instead and stops with an error that says what to change. And the buffers
// themselves, large ones in huge pages.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace rf::cpu {

// Bytes, or SIZE_MAX where /proc/meminfo cannot be read (not Linux): no limit.
inline size_t host_memory_available() {
  std::ifstream meminfo("/proc/meminfo");
  if (!meminfo) return std::numeric_limits<size_t>::max();
  uint64_t available_kib = 0, swap_kib = 0;
  bool found = false;
  for (std::string line; std::getline(meminfo, line);) {
    std::istringstream fields(line);
    std::string key;
    uint64_t kib = 0;
    if (!(fields >> key >> kib)) continue;
    if (key == "MemAvailable:") {
      available_kib = kib;
      found = true;
    } else if (key == "SwapFree:") {
      swap_kib = kib;
    }
  }
  if (!found) return std::numeric_limits<size_t>::max();
  return static_cast<size_t>((available_kib + swap_kib) * 1024);
}

// A buffer of `bytes` for the executor, or null: 64-byte aligned, and from 2 MiB on in 2 MiB
// huge pages where the kernel grants them (transparent huge pages in `madvise` mode, Debian's
// default, give them only to memory that asks). The attention tiles gather rows that the LSH
// order scatters over the whole sequence; with 4 KiB pages a 64K-token step's gathers miss the
// TLB on most rows.
constexpr size_t kHugePageBytes = size_t{2} << 20;
inline void* allocate_host_buffer(size_t bytes) {
  if (bytes < kHugePageBytes)
    return std::aligned_alloc(64, bytes == 0 ? 64 : (bytes + 63) / 64 * 64);
  const size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  void* p = std::aligned_alloc(kHugePageBytes, rounded);
#if defined(MADV_HUGEPAGE)
  if (p) madvise(p, rounded, MADV_HUGEPAGE);  // (a hint: where refused, 4 KiB pages as before)
#endif
  return p;
}

}  // namespace rf::cpu
