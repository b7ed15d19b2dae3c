// `reformer --version`: what this binary was built from (base/build_info.h) and the versions of
// the libraries it runs with, as a bug report or an experiment's record needs them.
#pragma once

#include <string>

namespace rf {

// Several lines (no newline after the last), the first describe_build()'s.
std::string version_report();

}  // namespace rf
