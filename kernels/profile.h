// Wall time spent in groups of launchers (attention, hashing), collected only when a benchmark
// asks for it (step_bench --profile): each timed launcher synchronises its executor before and
// after, so device work is attributed to the launcher that issued it. Off, a timer costs one
// branch.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "kernels/executor.h"

namespace rf {

class LauncherProfile {
 public:
  static LauncherProfile& global() {
    static LauncherProfile profile;
    return profile;
  }
  bool enabled = false;
  std::map<std::string, double> seconds;  // by group
};

// Adds the time until its destruction to the group's total when profiling is on.
class ScopedLauncherTimer {
 public:
  ScopedLauncherTimer(Executor& ex, const char* group) : ex_(ex), group_(group) {
    if (!LauncherProfile::global().enabled) return;
    ex_.synchronize();
    start_ = std::chrono::steady_clock::now();
  }
  ~ScopedLauncherTimer() {
    LauncherProfile& p = LauncherProfile::global();
    if (!p.enabled) return;
    ex_.synchronize();
    p.seconds[group_] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  ScopedLauncherTimer(const ScopedLauncherTimer&) = delete;
  ScopedLauncherTimer& operator=(const ScopedLauncherTimer&) = delete;

 private:
  Executor& ex_;
  const char* group_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace rf
