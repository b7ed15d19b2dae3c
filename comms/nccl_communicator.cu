// STUB
#include "comms/nccl_communicator.h"
