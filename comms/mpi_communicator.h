// The MPI Communicator (CPU buffers) and the start-up of a multi-rank job.
#pragma once

#include <memory>

#include "comms/communicator.h"

namespace rf {

// True when this process was started by mpirun/mpiexec or srun as part of a job of more than
// one rank (read from the launcher's environment, before MPI is initialised).
bool launched_as_multi_rank_job();

// Initialises MPI (once) and returns the communicator over MPI_COMM_WORLD. Collectives that do
// not complete within timeout_seconds abort the job with a message naming rank, step and
// operation. MPI is finalised when the last MPI communicator is destroyed.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds);

}  // namespace rf
