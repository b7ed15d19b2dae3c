#include "base/launcher_env.h"

#include <climits>
#include <cstdlib>
#include <initializer_list>

namespace rf {

LauncherSize launcher_size() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const char* value = std::getenv(variable);
    if (value == nullptr) continue;
    char* end = nullptr;
    const long ranks = std::strtol(value, &end, 10);
    if (end != value && *end == '\0' && ranks >= 1 && ranks <= INT_MAX)
      return {static_cast<int>(ranks), variable};
  }
  return {};
}

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    const char* value = std::getenv(name);
    if (value && *value) return std::atoi(value);
  }
  return 0;
}

bool launched_as_multi_rank_job() {
  return launcher_size().ranks > 1;
}

}  // namespace rf
