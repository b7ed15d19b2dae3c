// Introspection of the MPI communicator for tests: the order in which it completed its
// collectives. The Communicator contract says reductions complete in the order they were started;
// that order cannot be observed through the interface without racing on the buffers, so the MPI
// communicator keeps a short log that tests read through this function.
#pragma once

#include <string>
#include <vector>

#include "comms/communicator.h"

namespace rf {

// Descriptions of the collectives `comm` has completed, oldest first (the most recent 1024; the
// same text as in timeout messages, e.g. "all-reduce of gradient bucket 'layer3' (12 floats)").
// `comm` must come from make_mpi_communicator; anything else throws rf::Error.
std::vector<std::string> mpi_completed_collectives(Communicator& comm);

}  // namespace rf
