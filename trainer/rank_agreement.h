// Start-up checks that every rank of a job trains the same experiment on the same data. Ranks
// started with different config files or --set options would build models of different sizes
// (the gradient all-reduce then overruns a buffer), train with different settings while the
// README promises bit-identical replicas, or wait for each other at different steps until the
// collective deadline blames a dead rank; ranks reading different files would break the one
// pass over every window per epoch. Each check is a collective: call it on every rank, inside
// run_on_every_rank, so that the rank that differs reports (trainer/job.h); nothing that can
// fail on one rank may come before the collective inside that call.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "comms/communicator.h"
#include "trainer/batches.h"
#include "trainer/config.h"

namespace rf {

// Fails on a rank whose resolved config differs from rank 0's in any key but those that may name
// rank-local things (train.out_dir, data.train, data.val: paths; runtime.threads,
// data.prefetch: per-host resources).
void check_ranks_share_config(Communicator& comm, const Config& cfg);

// Fails on a rank whose options that steer the steps (--stop-at-step, and the tests'
// verify_replicas: name and value, -1 for not given, the same list on every rank) differ from
// rank 0's. A rank
// stopped at another step than the others waited for them until the collective deadline, which
// then blamed a dead rank or the network.
void check_ranks_share_options(Communicator& comm,
                               const std::vector<std::pair<std::string, int64_t>>& options);

// What check_ranks_share_data compares: hashes of the training and validation windows (their
// count, their length and the tokens of 64 windows spread over them, first and last included)
// and of the SentencePiece model. Reading the windows may fail (a damaged node-local shard):
// compute it in a run_on_every_rank of its own, so that no rank fails inside the collective below.
struct DataFingerprint {
  int64_t train = 0, val = 0, tokenizer_model = 0;
  int64_t train_windows = 0;
};
DataFingerprint data_fingerprint(const DataSources& data);

// Fails on a rank whose fingerprint differs from rank 0's (a collective: it broadcasts first).
void check_ranks_share_data(Communicator& comm, const DataFingerprint& mine,
                            const DataSources& data);

// The first key ("model.d_ff: 128 here, 64 on rank 0") where two resolved configs (as
// Config::source_text renders them) differ, skipping the rank-local keys; "" when none does.
std::string first_config_difference(const std::string& here, const std::string& on_root);

}  // namespace rf
