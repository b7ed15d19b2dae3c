// From the data section of the config to micro-batches: opens the training and validation window
// sources, and cuts each optimizer step's global batch (per-rank batch x accumulation x ranks
// windows, in the SampleOrder) into this rank's micro-batches.
#pragma once

#include <memory>

#include "data/sample_order.h"
#include "data/window_source.h"
#include "trainer/config.h"
#include "trainer/model.h"

namespace rf {

struct DataSources {
  std::unique_ptr<WindowSource> train;
  std::unique_ptr<WindowSource> val;
};
DataSources open_data(const Config& cfg);

struct BatchGeometry {
  int64_t per_rank = 1;  // train.batch_size
  int64_t accum = 1;     // train.grad_accum
  int64_t ranks = 1;
  int64_t rank = 0;
  int64_t global() const { return per_rank * accum * ranks; }
  // Index, within the step's global batch, of this rank's first sequence of micro-step `micro`.
  int64_t first_example(int64_t micro) const { return (micro * ranks + rank) * per_rank; }
};

// The windows `first_sample + first_example(micro) + i`, i < per_rank, of the sample order.
TokenBatch read_train_batch(const WindowSource& source, const SampleOrder& order,
                            const BatchGeometry& geometry, int64_t first_sample, int64_t micro);

// Windows [first, first + count) of a source in their natural order (evaluation).
TokenBatch read_windows(const WindowSource& source, int64_t first, int64_t count);

// How many evaluation windows are scored: eval_batches * batch, capped at a bounded source's size.
int64_t eval_window_count(const WindowSource& source, int64_t eval_batches, int64_t batch);

}  // namespace rf
