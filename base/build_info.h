// What this binary was built from and how: the commit of its sources, the build type, the
// compiler and whether the CUDA executor is in it. `reformer --version` prints it, and training
// logs it, so that a result can be traced to the code that made it.
#pragma once

#include <string>

namespace rf {

struct BuildInfo {
  std::string commit;       // 12 hex digits, "+changes" when tracked files differed; or "unknown"
  std::string commit_date;  // YYYY-MM-DD of the commit, or "unknown"
  std::string build_type;   // CMAKE_BUILD_TYPE
  std::string compiler;     // e.g. "GNU 12.2.0"
  bool cuda = false;        // built with the CUDA executor
  std::string cuda_architectures;  // e.g. "80,90" (empty without CUDA)
};

const BuildInfo& build_info();

// One line: "reformer <commit> (<date>), <build type> build, <compiler>, CUDA <off | on (...)>".
std::string describe_build();

}  // namespace rf
