#include "trainer/version_report.h"

#include <sstream>

#include "base/build_info.h"
#include "comms/mpi_communicator.h"
#include "comms/nccl_communicator.h"
#include "data/hdf5_io.h"
#include "kernels/executor.h"

namespace rf {

std::string version_report() {
  std::ostringstream out;
  out << describe_build() << "\n"
      << "  cpu: " << cpu_library_versions() << "\n"
      << "  data: HDF5 " << hdf5_library_version() << "\n"
      << "  comms: " << mpi_library_version();
  const std::string nccl = nccl_library_version();
  if (!nccl.empty()) out << "; NCCL " << nccl;
  const std::string cuda = cuda_versions();
  if (!cuda.empty()) out << "\n  cuda: " << cuda;
  return out.str();
}

}  // namespace rf
