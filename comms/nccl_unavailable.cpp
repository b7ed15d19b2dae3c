// Builds without CUDA have no NCCL communicator; asking for one is a clear error.
#include "base/error.h"
#include "comms/nccl_communicator.h"

namespace rf {

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, int, double) {
  fail(
      "NCCL was requested (runtime.device is cuda with several ranks), but this build has no "
      "CUDA support; rebuild where nvcc and NCCL are available");
}

std::string nccl_library_version() {
  return "";
}

}  // namespace rf
