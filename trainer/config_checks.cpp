// The cross-field rules of the configuration: constraints between keys that no single key's range
// can express (sequence length vs. chunk lengths and axial shape, data format vs. vocabulary,
// precision vs. device). Checked after the file and every override are applied; each failure
// names all keys involved, their values and why the rule exists.
#include <string>

#include "base/error.h"
#include "trainer/config_internal.h"

namespace rf {
namespace {

bool even_and_at_least_2(int64_t n) {
  return n >= 2 && n % 2 == 0;
}

void check_lsh(const Config& c, const std::string& path) {
  if (c.train.seq_len % c.lsh.bucket_size != 0) {
    fail(path, ": train.seq_len = ", c.train.seq_len,
         " must be a multiple of lsh.bucket_size = ", c.lsh.bucket_size,
         " (LSH attention cuts the sorted sequence into chunks of bucket_size)");
  }
  // auto (empty) resolves to 2 * seq_len / bucket_size, even and >= 2 once seq_len divides.
  const std::vector<int64_t>& n_buckets = c.lsh.n_buckets;
  if (n_buckets.size() == 1 && !even_and_at_least_2(n_buckets[0])) {
    fail(path, ": lsh.n_buckets = ", n_buckets[0],
         " must be even and at least 2 (each hash projects onto n_buckets / 2 random directions "
         "and their negatives)");
  }
  if (n_buckets.size() > 3) {
    fail(path, ": lsh.n_buckets = ", int_list_text(n_buckets), " has ", n_buckets.size(),
         " factors; at most 3 are supported");
  }
  int64_t product = 1;  // each factor <= 2^24, at most 3: no overflow
  for (const int64_t factor : n_buckets) {
    if (n_buckets.size() > 1 && !even_and_at_least_2(factor)) {
      fail(path, ": lsh.n_buckets = ", int_list_text(n_buckets), ": factor ", factor,
           " must be even and at least 2 (each factor hashes with its own random rotation onto "
           "factor / 2 directions and their negatives)");
    }
    product *= factor;
  }
  // Bucket ids are 32-bit and count on across the hash rounds (round r adds r * n_buckets).
  constexpr int64_t kMaxBucketsPerRound = int64_t{1} << 24;
  if (product > kMaxBucketsPerRound) {
    fail(path, ": lsh.n_buckets = ", int_list_text(n_buckets), " makes ", product,
         " buckets per hash round; at most ", kMaxBucketsPerRound,
         " are supported (bucket ids are 32-bit integers counted across up to 32 rounds)");
  }
}

void check_local(const Config& c, const std::string& path) {
  if (c.train.seq_len % c.lsh.local_chunk != 0) {
    fail(path, ": train.seq_len = ", c.train.seq_len,
         " must be a multiple of lsh.local_chunk = ", c.lsh.local_chunk,
         " (local attention cuts the sequence into chunks of local_chunk)");
  }
}

void check_axial(const Config& c, const std::string& path) {
  int64_t product = 1;
  for (const int64_t extent : c.model.axial_shape) product *= extent;  // each <= 2^24, 2 entries
  if (product != c.train.seq_len) {
    fail(path, ": model.axial_shape = ", int_list_text(c.model.axial_shape), " has product ",
         product, " but must equal train.seq_len = ", c.train.seq_len,
         " (axial position embeddings give one vector per position)");
  }
  const std::vector<int64_t> dims = c.axial_dims();
  const std::string dims_text =
      c.model.axial_dims.empty() ? "auto (" + int_list_text(dims) + ")" : int_list_text(dims);
  if (dims.size() != 2 || dims[0] < 1 || dims[1] < 1) {
    fail(path, ": model.axial_dims = ", dims_text,
         " must be 2 entries each at least 1 (one per axial table); model.d_model = ",
         c.model.d_model);
  }
  if (dims[0] + dims[1] != c.model.d_model) {
    fail(path, ": model.axial_dims = ", dims_text, " sums to ", dims[0] + dims[1],
         " but must equal model.d_model = ", c.model.d_model,
         " (the two axial tables are concatenated into one embedding)");
  }
}

const char* format_name(DataFormat format) {
  switch (format) {
    case DataFormat::kSynthetic:
      return "synthetic";
    case DataFormat::kText:
      return "text";
    case DataFormat::kBytes:
      return "bytes";
    case DataFormat::kHdf5:
      return "hdf5";
  }
  return "unknown";
}

void check_data(const Config& c, const std::string& path) {
  const DataFormat format = c.data.format;
  const bool byte_tokens = format == DataFormat::kText || format == DataFormat::kBytes;
  if (c.data.order == DataOrder::kStreams && format == DataFormat::kSynthetic)
    fail(path, ": data.order = streams needs a text or token corpus; data.format = synthetic ",
         "draws independent windows without end");
  if (byte_tokens && c.model.vocab_size < 256) {
    fail(path, ": model.vocab_size = ", c.model.vocab_size,
         " must be at least 256 when data.format = ", format_name(format),
         " (every byte 0..255 is a token)");
  }
  if (format != DataFormat::kSynthetic && c.data.train.empty()) {
    fail(path, ": data.train must name ",
         format == DataFormat::kHdf5 ? "the shard manifest" : "the training file",
         " when data.format = ", format_name(format));
  }
  if (format == DataFormat::kSynthetic && c.data.synthetic == SyntheticTask::kDuplication) {
    if (c.model.vocab_size < 3) {
      fail(path, ": model.vocab_size = ", c.model.vocab_size,
           " must be at least 3 for data.synthetic = duplication (token 0 separates the halves "
           "and the symbols are drawn from 1..vocab_size-1)");
    }
    if (c.train.seq_len < 4 || c.train.seq_len % 2 != 0) {
      fail(path, ": train.seq_len = ", c.train.seq_len,
           " must be even and at least 4 for data.synthetic = duplication (each sequence is "
           "0 w 0 w: two equal halves)");
    }
  }
}

// Slot, bucket and row indices are int32 in the kernels (as on the GPU); refuse sizes that
// would overflow them rather than corrupt memory.
void check_index_ranges(const Config& c, const std::string& path) {
  constexpr int64_t kInt32Limit = int64_t{1} << 31;
  const int64_t rows = c.train.batch_size * c.train.seq_len;
  if (rows >= kInt32Limit) {
    fail(path, ": train.batch_size x train.seq_len = ", rows, " tokens per micro-batch must be ",
         "below 2^31 (token rows are indexed with 32-bit integers)");
  }
  const int64_t slots = c.lsh.n_hashes * c.train.seq_len;
  if (slots >= kInt32Limit) {
    fail(path, ": lsh.n_hashes x train.seq_len = ", slots, " must be below 2^31 (LSH sort ",
         "slots are indexed with 32-bit integers)");
  }
}

// Relative positions need the original order of dense and local attention: LSH's sorted slots put
// no fixed distance between a query and its keys, so LSH layers take no relative term. A model
// that mixes them (the hybrid) gets its order from the dense and local layers; one made of LSH
// layers alone would have no position anywhere. (Said so rather than silently ignored.)
void check_relative(const Config& c, const std::string& path) {
  if (c.only_lsh_layers())
    fail(path, ": model.position = relative needs dense or local layers, but every layer of ",
         "model.attention is lsh (LSH sorts positions by bucket and takes no relative term: use ",
         "axial or learned positions, or mix in local layers, e.g. [local, lsh])");
  if (c.model.d_model % 2 != 0)
    fail(path, ": model.position = relative needs an even model.d_model (sine and cosine halves), ",
         "got ", c.model.d_model);
}

// Transformer-XL's recurrence keeps each layer's inputs at the memory's positions (LSH layers'
// too unless lsh.sees_memory is false: they hash the memory with the segment); a model whose
// layers would all see the segment alone would keep nothing. Positions that restart at every
// segment would make the memory's positions collide with the segment's.
void check_memory(const Config& c, const std::string& path) {
  if (c.no_layer_sees_memory())
    fail(path, ": model.memory_len = ", c.model.memory_len, " needs a layer that sees it, but ",
         "every layer of model.attention is lsh and lsh.sees_memory is false (set it true, or ",
         "mix in local layers, e.g. [local, lsh])");
  if (c.model.memory_len % c.memory_unit() != 0)
    fail(path, ": model.memory_len = ", c.model.memory_len, " must be ", c.memory_unit_rule());
  if (c.any_layer_uses(AttentionKind::kLsh) && c.lsh.sees_memory) {
    const int64_t slots = c.lsh.n_hashes * (c.train.seq_len + c.model.memory_len);
    if (slots >= int64_t{1} << 31)
      fail(path, ": lsh.n_hashes x (train.seq_len + model.memory_len) = ", slots,
           " must be below 2^31 (LSH sort slots are indexed with 32-bit integers)");
  }
  if (c.model.position != PositionMode::kRelative && c.model.position != PositionMode::kNone)
    fail(path, ": model.memory_len = ", c.model.memory_len, " needs model.position relative (or ",
         "none); ", position_name(c.model.position), " positions restart at every segment");
  if (c.data.format == DataFormat::kSynthetic)
    fail(path, ": model.memory_len = ", c.model.memory_len, " needs a text or token stream; ",
         "data.format = synthetic draws independent windows");
  if (c.data.order == DataOrder::kShuffled)
    fail(path, ": model.memory_len = ", c.model.memory_len, " needs data.order streams (or auto): ",
         "in shuffled order a lane's previous window is not the text before its next one");
}

// One residual stream cannot be rebuilt from a layer's output (x = y - F(x) has x on both sides):
// the reversible backward needs Reformer's two streams.
void check_residual(const Config& c, const std::string& path) {
  if (c.model.residual == ResidualMode::kSingle && c.model.reversible)
    fail(path, ": model.residual = single needs model.reversible: false (one residual stream ",
         "cannot be rebuilt from the layer's output; reversible layers need two_streams)");
  if (c.model.reversible && c.model.recompute == RecomputeMode::kNone)
    fail(path, ": model.recompute = none needs model.reversible: false (reversible layers keep ",
         "no activations: their backward rebuilds each layer's inputs by running it again; ",
         "model.stored_top_layers stores the top ones)");
  if (c.model.stored_top_layers > c.model.n_layers)
    fail(path, ": model.stored_top_layers = ", c.model.stored_top_layers,
         " is more than model.n_layers = ", c.model.n_layers);
  if (c.model.stored_top_layers > 0 && !c.model.reversible)
    fail(path, ": model.stored_top_layers = ", c.model.stored_top_layers,
         " needs model.reversible: true (without reversible layers every layer is stored; ",
         "model.recompute says what they keep)");
}

void check_runtime(const Config& c, const std::string& path) {
  if (c.runtime.precision == GemmPrecision::kTf32 && c.runtime.device != Device::kCuda) {
    fail(path, ": runtime.precision = tf32 requires runtime.device = cuda, got ",
         device_name(c.runtime.device),
         " (TF32 is a GPU tensor-core format; the CPU executor offers fp32 and bf16)");
  }
}

}  // namespace

void check_cross_field_rules(const Config& config, const std::string& path) {
  if (config.any_layer_uses(AttentionKind::kLsh)) check_lsh(config, path);
  if (config.any_layer_uses(AttentionKind::kLocal)) check_local(config, path);
  if (config.model.position == PositionMode::kAxial) check_axial(config, path);
  if (config.model.position == PositionMode::kRelative) check_relative(config, path);
  if (config.model.memory_len > 0) check_memory(config, path);
  check_residual(config, path);
  check_data(config, path);
  check_index_ranges(config, path);
  check_runtime(config, path);
}

}  // namespace rf
