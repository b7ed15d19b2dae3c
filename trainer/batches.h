// From the data section of the config to micro-batches: opens the training and validation window
// sources, and cuts each optimizer step's global batch (per-rank batch x accumulation x ranks
// windows, in the SampleOrder) into this rank's micro-batches.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "data/sample_order.h"
#include "data/window_source.h"
#include "trainer/config.h"
#include "trainer/model.h"

namespace rf {

// What the tokens are, which decides how a run is scored and reported: the duplication task
// (copy accuracy on the second half), byte text (samples as text), or other tokens.
enum class DataTask { kDuplication, kByteText, kTokens };

struct DataSources {
  std::unique_ptr<WindowSource> train;
  std::unique_ptr<WindowSource> val;
  DataTask task = DataTask::kTokens;
  std::string tokenizer;  // as shards name it: "duplication", "bytes", or a manifest's
  // A SentencePiece model's serialized bytes (checksum-checked) when the shards were tokenised
  // with one; checkpoints carry it so generate and eval need nothing else.
  std::string tokenizer_model;
};
// verify_checksums: stream every shard once to check it (hdf5; usually rank 0 only).
DataSources open_data(const Config& cfg, bool verify_checksums);

// Training's validation is held out: a text file named as both data.train and data.val trained
// and validated on the same bytes without a word. (A manifest refuses a shard in both splits;
// `eval --set data.val=` the training file, scoring the training loss, is left to the user.)
void check_validation_is_held_out(const Config& cfg);

// Fails where a checkpoint trained with a SentencePiece model (its serialized bytes,
// `checkpoint_tokenizer_model`) meets data tokenised otherwise: its token ids would mean other
// pieces. A checkpoint without one (bytes, or imported without spiece.model) takes any data.
void check_checkpoint_tokenizer(const std::string& checkpoint,
                                const std::string& checkpoint_tokenizer_model,
                                const DataSources& data, const Config& cfg);

// Bytes of text each token of `data` stands for (bits per byte): 1 for byte text, each piece's
// length with a SentencePiece model, empty for other tokens (the synthetic task).
std::vector<int32_t> text_bytes_per_token(const DataSources& data);

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

// This rank's micro-batches in training order, (step, micro) = (0, 0), (0, 1), ..., starting
// with the step whose first global sample is `first_sample`. With depth > 0 a background thread
// reads up to `depth` micro-batches ahead (the source is then only read from that thread).
class BatchStream {
 public:
  BatchStream(const WindowSource& source, const SampleOrder& order, BatchGeometry geometry,
              int64_t first_sample, int64_t depth);
  ~BatchStream();
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;
  // The next micro-batch; rethrows an error the loader thread met.
  TokenBatch next();

 private:
  TokenBatch read(int64_t index) const;  // micro-batch number `index` from the start
  void produce();

  const WindowSource& source_;
  const SampleOrder& order_;
  BatchGeometry geometry_;
  int64_t first_sample_;
  size_t depth_;
  int64_t next_to_read_ = 0;  // the next micro-batch to read (by the loader thread, or on demand)
  std::deque<TokenBatch> ready_;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::thread thread_;
};

// Windows [first, first + count) of a source in their natural order (evaluation).
TokenBatch read_windows(const WindowSource& source, int64_t first, int64_t count);

// How many evaluation windows are scored: eval_batches * batch, capped at a bounded source's size.
int64_t eval_window_count(const WindowSource& source, int64_t eval_batches, int64_t batch);

}  // namespace rf
