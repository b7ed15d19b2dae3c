#include "trainer/batches.h"

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "data/byte_corpus.h"
#include "data/shards.h"
#include "data/synthetic_duplication.h"
#include "data/tokenizer.h"

namespace rf {

DataSources open_data(const Config& cfg, bool verify_checksums) {
  const DataConfig& d = cfg.data;
  const int64_t T = cfg.train.seq_len;
  DataSources s;
  switch (d.format) {
    case DataFormat::kSynthetic:
      // A file named for a generated task was ignored without a word (an imported model evaluated
      // on the duplication task). Checked where data is read, not where a config is loaded: a
      // checkpoint trained so still loads, and generates or exports.
      if (!d.train.empty() || !d.val.empty()) {
        const bool train = !d.train.empty();
        fail("data.", train ? "train" : "val", " = '", train ? d.train : d.val,
             "' names a file, but data.format = synthetic generates its windows and reads none: ",
             "set data.format (text, bytes or hdf5) to read it, or data.", train ? "train" : "val",
             "= (empty) for the synthetic task (what a run with this config trained on)");
      }
      s.train =
          std::make_unique<SyntheticDuplication>(T, cfg.model.vocab_size, cfg.train.seed, false);
      s.val = std::make_unique<SyntheticDuplication>(T, cfg.model.vocab_size, cfg.train.seed, true);
      s.task = DataTask::kDuplication;
      s.tokenizer = kDuplicationTokenizer;
      break;
    case DataFormat::kText:
    case DataFormat::kBytes:
      if (d.val.empty()) {
        const double split = 1.0 - d.val_fraction;
        s.train = std::make_unique<ByteCorpus>(d.train, "data.train", T, 0.0, split);
        s.val =
            std::make_unique<ByteCorpus>(d.train, "data.train (validation tail)", T, split, 1.0);
      } else {
        s.train = std::make_unique<ByteCorpus>(d.train, "data.train", T, 0.0, 1.0);
        s.val = std::make_unique<ByteCorpus>(d.val, "data.val", T, 0.0, 1.0);
      }
      s.task = DataTask::kByteText;
      s.tokenizer = kBytesTokenizer;
      break;
    case DataFormat::kHdf5: {
      const Manifest train = read_manifest(d.train);
      const Manifest val = d.val.empty() ? train : read_manifest(d.val);
      if (!d.val.empty()) check_no_shard_in_both(train, val);
      // (Checked for every tokenizer: bytes for training and SentencePiece pieces for
      // validation trained and scored without a word.)
      if (val.tokenizer != train.tokenizer ||
          val.tokenizer_model_checksum != train.tokenizer_model_checksum)
        fail("data.val '", d.val, "' was tokenised differently from data.train '", d.train, "' (",
             val.tokenizer, " against ", train.tokenizer,
             val.tokenizer == train.tokenizer ? " with another model" : "", ")");
      if (val.vocab_size != train.vocab_size)  // (the duplication task's, say: another task)
        fail("data.val '", d.val, "' has a vocabulary of ", val.vocab_size, ", data.train '",
             d.train, "' of ", train.vocab_size, ": they were prepared differently");
      const int64_t vocab = cfg.model.vocab_size;
      s.train = std::make_unique<ShardedWindows>(train, "train", T, vocab, verify_checksums);
      s.val = std::make_unique<ShardedWindows>(val, "val", T, vocab, verify_checksums);
      s.tokenizer = train.tokenizer;
      if (train.tokenizer == kSentencePieceTokenizer) {
        s.tokenizer_model = Tokenizer::from_model_file(train.tokenizer_model,
                                                       train.tokenizer_model_checksum, d.train)
                                .serialized_model();
      }
      s.task = train.tokenizer == kDuplicationTokenizer ? DataTask::kDuplication
               : train.tokenizer == kBytesTokenizer     ? DataTask::kByteText
                                                        : DataTask::kTokens;
      break;
    }
  }
  return s;
}

void check_validation_is_held_out(const Config& cfg) {
  const DataConfig& d = cfg.data;
  if (d.format != DataFormat::kText && d.format != DataFormat::kBytes) return;
  std::error_code ec;
  if (!d.val.empty() && std::filesystem::equivalent(d.train, d.val, ec))
    fail("data.val '", d.val, "' is data.train's file '", d.train, "': validation would score ",
         "the bytes training trains on; leave data.val empty to hold out the last ",
         "data.val_fraction of it");
}

void check_checkpoint_tokenizer(const std::string& checkpoint,
                                const std::string& checkpoint_tokenizer_model,
                                const DataSources& data, const Config& cfg) {
  if (!checkpoint_tokenizer_model.empty() && checkpoint_tokenizer_model != data.tokenizer_model)
    fail("the checkpoint ", checkpoint, " was trained with another tokenizer than data.train '",
         cfg.data.train, "' (prepare the data with --tokenizer-model of the checkpoint's model)");
}

std::vector<int32_t> text_bytes_per_token(const DataSources& data) {
  if (!data.tokenizer_model.empty())
    return Tokenizer::sentencepiece(data.tokenizer_model, "the data's tokenizer").token_bytes();
  if (data.task == DataTask::kByteText) return Tokenizer::bytes().token_bytes();
  return {};
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
  b.starts_stream = order.starts_stream(first_sample + geometry.first_example(micro));
  return b;
}

BatchStream::BatchStream(const WindowSource& source, const SampleOrder& order,
                         BatchGeometry geometry, int64_t first_sample, int64_t depth)
    : source_(source),
      order_(order),
      geometry_(geometry),
      first_sample_(first_sample),
      depth_(static_cast<size_t>(depth)) {
  if (depth_ > 0) thread_ = std::thread([this] { produce(); });
}

BatchStream::~BatchStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

TokenBatch BatchStream::read(int64_t index) const {
  const int64_t step = index / geometry_.accum, micro = index % geometry_.accum;
  return read_train_batch(source_, order_, geometry_, first_sample_ + step * geometry_.global(),
                          micro);
}

void BatchStream::produce() {
  for (;;) {
    int64_t index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < depth_; });
      if (stopping_) return;
      index = next_to_read_++;
    }
    try {
      TokenBatch batch = read(index);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      changed_.notify_all();
      return;
    }
    changed_.notify_all();
  }
}

TokenBatch BatchStream::next() {
  if (depth_ == 0) return read(next_to_read_++);
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty()) std::rethrow_exception(error_);
  TokenBatch batch = std::move(ready_.front());
  ready_.pop_front();
  changed_.notify_all();
  return batch;
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
