// Transformer-XL's recurrence during training: one SegmentMemory per micro-batch of a step (each
// micro-batch holds its own lanes of the global batch, which read consecutive segments of their
// streams step after step; data/sample_order.h), and the memory's way into and out of a
// checkpoint: every rank's lanes gathered in global lane order, and a checkpoint's lanes handed
// back to the ranks that hold them now, so a resumed run continues bit for bit.
#pragma once

#include <string>
#include <vector>

#include "comms/communicator.h"
#include "trainer/batches.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/segment_memory.h"

namespace rf {

class TrainingMemory {
 public:
  // model.memory_len positions per lane for each of cfg's layers that sees the memory.
  TrainingMemory(const Config& cfg, const BatchGeometry& geometry);

  // The memory of micro-batch `micro`, cleared first when the batch starts its lanes' streams.
  SegmentMemory& for_batch(int64_t micro, const TokenBatch& batch);

  // Every rank's lanes into state.memory ([lanes, layers, held, d_model]) on every rank: a
  // collective. Layers that see no memory (LSH without lsh.sees_memory) hold zeros there, so the
  // layout does not depend on the kinds of the layers.
  void gather(Communicator& host, Executor& ex, TrainingState& state) const;
  // Rank 0's checkpoint memory (root_state, read on rank 0) to the lanes of every rank: a
  // collective. Returns rank 0's note when the checkpoint's memory does not fit this run (another
  // global batch, a shorter memory_len, a length that is not a whole number of this run's chunks,
  // or other layers that see it), which then starts with empty memory; "" otherwise.
  std::string restore(Communicator& host, Executor& ex, const TrainingState& root_state);

 private:
  // Offset of (lane, layer) in the gathered layout with `held` positions.
  size_t offset(int64_t lane, int64_t layer, int64_t held) const;

  BatchGeometry geometry_;
  int64_t layers_, d_model_;
  std::vector<bool> sees_memory_;        // per layer: Config::layer_sees_memory
  std::string memory_layers_;            // the same as TrainingState::memory_layers writes it
  int64_t memory_unit_;                  // Config::memory_unit: a memory holds whole chunks
  std::string memory_unit_rule_;         // (for the note)
  std::vector<SegmentMemory> memories_;  // per micro-batch
};

}  // namespace rf
