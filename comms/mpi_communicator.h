// The MPI Communicator (CPU buffers) and the start-up of a multi-rank job.
#pragma once

#include <memory>
#include <string>

#include "base/launcher_env.h"
#include "comms/communicator.h"

namespace rf {

// Initialises MPI (once) and returns the communicator over MPI_COMM_WORLD. Collectives that do
// not complete within timeout_seconds abort the job with a message naming rank, step and
// operation. MPI is finalised when the last MPI communicator is destroyed.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds);

// The first line of the MPI library's own description, e.g. "Open MPI v4.1.4" (MPI allows asking
// before MPI_Init; for --version).
std::string mpi_library_version();

}  // namespace rf
