// Start-up checks that every rank of a job trains the same experiment on the same data. Ranks
// started with different config files or --set options would build models of different sizes
// (the gradient all-reduce then overruns a buffer), train with different settings while the
// README promises bit-identical replicas, or wait for each other at different steps until the
// collective deadline blames a dead rank; ranks reading different files would break the one
// pass over every window per epoch. Each check is a collective: call it on every rank, inside
// run_on_every_rank, so that the rank that differs reports (trainer/job.h).
#pragma once

#include <string>

#include "comms/communicator.h"
#include "trainer/batches.h"
#include "trainer/config.h"

namespace rf {

// Fails on a rank whose resolved config differs from rank 0's in any key but those that may name
// rank-local things (train.out_dir, data.train, data.val: paths; runtime.threads,
// data.prefetch: per-host resources).
void check_ranks_share_config(Communicator& comm, const Config& cfg);

// Fails on a rank whose training or validation windows differ from rank 0's: their count, their
// length, or the tokens of 64 windows spread over them (first and last included); or the
// SentencePiece model.
void check_ranks_share_data(Communicator& comm, const DataSources& data);

// The first key ("model.d_ff: 128 here, 64 on rank 0") where two resolved configs (as
// Config::source_text renders them) differ, skipping the rank-local keys; "" when none does.
std::string first_config_difference(const std::string& here, const std::string& on_root);

}  // namespace rf
