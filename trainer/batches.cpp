#include "trainer/batches.h"

#include <algorithm>

#include "data/byte_corpus.h"
#include "data/synthetic_duplication.h"
#include "kernels/error.h"

namespace rf {

DataSources open_data(const Config& cfg) {
  const DataConfig& d = cfg.data;
  const int64_t T = cfg.train.seq_len;
  DataSources s;
  switch (d.format) {
    case DataFormat::kSynthetic:
      s.train = std::make_unique<SyntheticDuplication>(T, cfg.model.vocab_size, cfg.train.seed,
                                                       false);
      s.val = std::make_unique<SyntheticDuplication>(T, cfg.model.vocab_size, cfg.train.seed,
                                                     true);
      break;
    case DataFormat::kText:
    case DataFormat::kBytes:
      if (d.val.empty()) {
        const double split = 1.0 - d.val_fraction;
        s.train = std::make_unique<ByteCorpus>(d.train, "data.train", T, 0.0, split);
        s.val = std::make_unique<ByteCorpus>(d.train, "data.train (validation tail)", T, split, 1.0);
      } else {
        s.train = std::make_unique<ByteCorpus>(d.train, "data.train", T, 0.0, 1.0);
        s.val = std::make_unique<ByteCorpus>(d.val, "data.val", T, 0.0, 1.0);
      }
      break;
    case DataFormat::kHdf5:
      fail("data.format: hdf5 shards are not supported by this build yet; use text or bytes");
  }
  return s;
}

namespace {

void split_window(const std::vector<int32_t>& window, int64_t T, TokenBatch& batch, int64_t i) {
  std::copy(window.begin(), window.begin() + T, batch.inputs.begin() + i * T);
  std::copy(window.begin() + 1, window.begin() + T + 1, batch.targets.begin() + i * T);
}

TokenBatch empty_batch(int64_t batch_size, int64_t seq_len) {
  TokenBatch b;
  b.batch = batch_size;
  b.seq_len = seq_len;
  b.inputs.resize(batch_size * seq_len);
  b.targets.resize(batch_size * seq_len);
  return b;
}

}  // namespace

TokenBatch read_train_batch(const WindowSource& source, const SampleOrder& order,
                            const BatchGeometry& geometry, int64_t first_sample, int64_t micro) {
  const int64_t T = source.window_length() - 1;
  TokenBatch b = empty_batch(geometry.per_rank, T);
  std::vector<int32_t> window(source.window_length());
  for (int64_t i = 0; i < geometry.per_rank; ++i) {
    const int64_t sample = first_sample + geometry.first_example(micro) + i;
    source.read(order.window_of_sample(sample), window.data());
    split_window(window, T, b, i);
  }
  return b;
}

TokenBatch read_windows(const WindowSource& source, int64_t first, int64_t count) {
  const int64_t T = source.window_length() - 1;
  TokenBatch b = empty_batch(count, T);
  std::vector<int32_t> window(source.window_length());
  for (int64_t i = 0; i < count; ++i) {
    source.read(first + i, window.data());
    split_window(window, T, b, i);
  }
  return b;
}

int64_t eval_window_count(const WindowSource& source, int64_t eval_batches, int64_t batch) {
  const int64_t wanted = eval_batches * batch;
  return source.num_windows() > 0 ? std::min(wanted, source.num_windows()) : wanted;
}

}  // namespace rf
