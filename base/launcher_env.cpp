#include "base/launcher_env.h"

#include <climits>
#include <cstdlib>
#include <initializer_list>

namespace rf {

namespace {

// The variable's value when it is a whole number in [lowest, INT_MAX], else -1 (unset, empty or
// not a number: the caller tries the next launcher's variable).
int whole_number_in(const char* variable, long lowest) {
  const char* value = std::getenv(variable);
  if (value == nullptr || *value == '\0') return -1;
  char* end = nullptr;
  const long number = std::strtol(value, &end, 10);
  return *end == '\0' && number >= lowest && number <= INT_MAX ? static_cast<int>(number) : -1;
}

}  // namespace

LauncherSize launcher_size() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const int ranks = whole_number_in(variable, 1);
    if (ranks >= 1) return {ranks, variable};
  }
  return {};
}

int launcher_rank() {
  for (const char* variable : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    const int rank = whole_number_in(variable, 0);
    if (rank >= 0) return rank;
  }
  return 0;
}

bool launched_as_multi_rank_job() {
  return launcher_size().ranks > 1;
}

}  // namespace rf
