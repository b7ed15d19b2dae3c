// STUB: to be implemented (helper B).
#include "comms/mpi_communicator.h"
