// What the job launcher (mpirun, mpiexec, srun) tells a process through its environment, read
// before MPI is initialised: how many ranks the job has and which one this process is. The trainer
// uses it to decide whether to start MPI at all and to prefix early errors with the rank.
#pragma once

namespace rf {

struct LauncherSize {
  int ranks = 1;
  const char* variable = nullptr;  // the environment variable that said so; null: not launched
};

// How many ranks the launcher started: Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, MPICH's and
// Intel MPI's Hydra PMI_SIZE, and srun (with --mpi=pmix, which Debian's Open MPI needs)
// SLURM_STEP_NUM_TASKS. SLURM_NTASKS is not used: a batch script has it without being a rank.
LauncherSize launcher_size();

// This process's rank as the launcher set it; 0 when not launched as a job (or when no variable
// holds a whole number).
int launcher_rank();

// True when this process is one rank of a job of more than one.
bool launched_as_multi_rank_job();

}  // namespace rf
