// How much host memory a process can still take: MemAvailable plus SwapFree from /proc/meminfo.
// Linux grants allocations beyond that (overcommit) and kills the process (the OOM killer, exit
// 137, no message) once it touches the pages; the CPU executor checks its buffers against this
// figure instead and stops with an error that says what to change.
#pragma once

#include <cstddef>
#include <cstdint>
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

}  // namespace rf::cpu
