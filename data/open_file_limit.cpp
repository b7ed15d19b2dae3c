#include "data/open_file_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"

namespace rf {

namespace {

// Descriptors open now (HDF5, MPI, the logs' files, the loader thread's), from /proc/self/fd.
int64_t open_descriptors() {
  std::error_code ec;
  int64_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// Left over for what else opens files later (checkpoints, a validation split, TensorBoard).
constexpr int64_t kSpareDescriptors = 64;

}  // namespace

void reserve_open_files(int64_t count, const std::string& what) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;  // (unknown: open and see)
  const int64_t open_now = open_descriptors();
  const auto needed = static_cast<rlim_t>(open_now + count);
  if (limit.rlim_max != RLIM_INFINITY && needed > limit.rlim_max)
    fail(what, " keeps ", count, " files open at once, but this process may open ",
         static_cast<int64_t>(limit.rlim_max), " (the hard limit of ulimit -n), ", open_now,
         " of them open already: raise that limit, or prepare the data in fewer, larger shards ",
         "(reformer prepare --shards)");
  // With some to spare where the hard limit allows it (a validation split, checkpoints, the
  // loader thread's files open later).
  const rlim_t wanted = needed + kSpareDescriptors;
  if (limit.rlim_cur == RLIM_INFINITY || wanted <= limit.rlim_cur) return;
  rlimit raised = limit;
  raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
  if (raised.rlim_cur < needed || setrlimit(RLIMIT_NOFILE, &raised) != 0)
    fail(what, " keeps ", count, " files open at once, but this process may open ",
         static_cast<int64_t>(limit.rlim_cur), " (ulimit -n), ", open_now,
         " of them open already, and could not raise that limit");
}

}  // namespace rf
