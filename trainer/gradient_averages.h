// Averaging a step's gradients across the ranks, one bucket (a parameter group) at a time, as
// collectives among the executor's work (Executor::start_collective): the backward pass starts a
// bucket's average as soon as the bucket is final, so the communication overlaps the layers still
// to come, and with runtime.step_graphs the step's graph holds the averages (a CUDA graph the
// NCCL kernels, the CPU's recorded launches the call that starts them).
#pragma once

#include "comms/communicator.h"
#include "kernels/executor.h"
#include "trainer/params.h"

namespace rf {

// Starts averaging the gradients of `params`' group `group` across the ranks of `comm`. A graph
// keeps references to `comm` and `params`: both must outlive it.
void start_gradient_average(Executor& ex, Communicator& comm, ParamStore& params, int group);

// Ends device work that started averages: the device work after it waits for them, on the device
// (a CUDA graph's capture must end so). The host must then await them with comm.wait_all(),
// which has a deadline, before it waits for any device work (a download of the losses, say):
// that wait has none, and would hang on a rank that died.
void order_after_gradient_averages(Executor& ex, Communicator& comm);

}  // namespace rf
