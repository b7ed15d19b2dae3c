// The experiment configuration: typed values of every key of the YAML schema
// (trainer/config_schema.cpp; documented in configs/reference.yaml). load_config() reads a YAML
// file, applies --set overrides and checks every key, type, range and cross-field rule, failing
// with a one-line rf::Error that names the key, the file and line, and what is allowed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kinds.h"

namespace rf {
// What a config integer that may be `auto` holds for `auto`.
constexpr int64_t kAutoInt = -1;
}  // namespace rf

namespace rf {

enum class AttentionKind { kLsh, kLocal, kDense };
enum class PositionMode { kAxial, kLearned, kNone, kRelative };
enum class ResidualMode { kTwoStreams, kSingle };
// Whether the backward runs each layer's forward again (model.recompute): auto, layers, none.
enum class RecomputeMode { kAuto, kLayers, kNone };
enum class ScheduleKind { kConstant, kCosine, kRsqrt };
enum class DataFormat { kSynthetic, kText, kBytes, kHdf5 };
enum class SyntheticTask { kDuplication };
enum class DataOrder { kAuto, kShuffled, kStreams };

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 256;
  int64_t d_ff = 1024;
  int64_t n_layers = 6;
  int64_t n_heads = 4;
  int64_t d_head = 64;
  std::vector<AttentionKind> attention = {AttentionKind::kLsh};  // cycled through the layers
  Activation activation = Activation::kGelu;
  double dropout = 0.0;            // residual, feed-forward hidden and embedding dropout
  double attention_dropout = 0.0;  // on attention probabilities
  PositionMode position = PositionMode::kAxial;
  int64_t clamp_len = 0;     // relative positions: distances above it share its encoding (0: none)
  int64_t memory_len = 0;    // Transformer-XL's recurrence: positions each layer keeps (0: off)
  bool same_length = false;  // with memory: every query sees memory_len keys
  std::vector<int64_t> axial_shape = {64, 64};  // product = train.seq_len
  std::vector<int64_t> axial_dims;  // empty = auto: [d_model / 2, d_model - d_model / 2]
  int64_t ff_chunk = kAutoInt;      // 0 = no chunking; see Config::ff_chunk_rows
  int64_t head_chunk = kAutoInt;    // 0 = no chunking; see Config::head_chunk_rows
  bool reversible = true;           // false keeps every layer's inputs (see recompute)
  // two_streams: Reformer's layers over two residual streams (x1, x2); single: the classic
  // pre-norm block over one stream, h += Attention(LN h), h += FF(LN h) (Transformer-XL's)
  ResidualMode residual = ResidualMode::kTwoStreams;
  RecomputeMode recompute = RecomputeMode::kAuto;  // see Config::recomputes_layers
  // Reversible stacks: the top layers that keep their inputs and activations for the backward
  // (as model.reversible: false with model.recompute: none) instead of rebuilding them.
  int64_t stored_top_layers = 0;
};

struct LshConfig {
  int64_t bucket_size = 64;
  std::vector<int64_t> n_buckets;  // empty = auto (2 * seq_len / bucket_size); one entry or factors
  int64_t n_hashes = 2;
  int64_t local_chunk = 128;
  bool sees_memory = false;  // LSH layers hash Transformer-XL's memory with the segment
};

struct TrainConfig {
  int64_t seq_len = 4096;
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t steps = 10000;
  double lr = 3.0e-4;
  ScheduleKind schedule = ScheduleKind::kCosine;
  int64_t warmup = 1000;
  double min_lr_ratio = 0.1;  // cosine ends at lr * min_lr_ratio
  double weight_decay = 0.01;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.98;
  double adam_eps = 1e-9;
  double grad_clip = 1.0;  // 0 = no clipping
  int64_t seed = 1;
  int64_t log_every = 10;
  int64_t eval_every = 500;  // 0 = never
  int64_t eval_batches = 16;
  int64_t checkpoint_every = 1000;  // 0 = only the final model
  int64_t keep_checkpoints = 3;
  std::string out_dir = "runs/default";
  bool tensorboard = true;  // event files under out_dir/tb/ beside metrics.jsonl
  bool report = true;       // the end-of-run report of what the model learned
};

struct DataConfig {
  // Whether training reads windows in streams (Transformer-XL's lanes) rather than shuffled.
  bool streams(int64_t memory_len) const {
    return order == DataOrder::kStreams || (order == DataOrder::kAuto && memory_len > 0);
  }
  DataFormat format = DataFormat::kSynthetic;
  std::string train;  // file (text/bytes) or shard manifest (hdf5)
  std::string val;
  SyntheticTask synthetic = SyntheticTask::kDuplication;
  DataOrder order = DataOrder::kAuto;  // auto: streams with model.memory_len > 0, else shuffled
  double val_fraction = 0.1;           // text/bytes without a val file: the tail of the train file
  bool verify_checksums = true;        // hdf5: check shard checksums at start-up
  int64_t prefetch = 2;                // micro-batches read ahead on the loader thread
};

struct RuntimeConfig {
  Device device = Device::kCpu;
  int64_t threads = 0;  // 0 = the cores available to this rank
  GemmPrecision precision = GemmPrecision::kFp32;
  double collective_timeout_s = 600;  // a collective not done by then aborts the job
  bool verify_kernels = true;         // cuda: a quick selftest of the GPU's kernels before training
  bool tensor_core_attention = true;  // cuda at bf16: attention tiles on bf16 tensor cores
  bool step_graphs = false;           // capture each part of a training step once, then replay it
};

// A chunk size as configured (model.ff_chunk or model.head_chunk), resolved per micro-batch:
// `auto` is 1024 rows on a CPU (a chunk's activations stay in cache) and, on a GPU, every row at
// once (one product per layer instead of one per chunk) unless a chunk's activations would pass
// kAutoChunkBytes.
struct ChunkSetting {
  static constexpr int64_t kAutoChunkBytes = int64_t{2} << 30;
  int64_t setting = kAutoInt;  // rows; 0 = no chunking; kAutoInt = auto
  Device device = Device::kCpu;
  int64_t bytes_per_row = 1;  // activation bytes a chunk holds per row
  // Rows per chunk of a micro-batch of `total` rows (total when there is no chunking).
  int64_t rows(int64_t total) const;
};

struct Config {
  ModelConfig model;
  LshConfig lsh;
  TrainConfig train;
  DataConfig data;
  RuntimeConfig runtime;

  std::string source_text;  // the resolved configuration as YAML (stored with runs/checkpoints)

  // Attention kind of layer i (model.attention cycled).
  AttentionKind attention_of_layer(int64_t layer) const {
    return model.attention[static_cast<size_t>(layer) % model.attention.size()];
  }
  // Whether some layer of the model has attention of this kind.
  bool any_layer_uses(AttentionKind kind) const {
    for (int64_t layer = 0; layer < model.n_layers; ++layer)
      if (attention_of_layer(layer) == kind) return true;
    return false;
  }
  // Whether every layer is LSH: then nothing carries relative positions, nor a memory unless
  // lsh.sees_memory.
  bool only_lsh_layers() const {
    return !any_layer_uses(AttentionKind::kDense) && !any_layer_uses(AttentionKind::kLocal);
  }
  // Whether layer i has Transformer-XL's relative term (W_R, u, v): with relative positions, its
  // dense and local layers; an LSH layer's sorted slots put no fixed distance between a query and
  // its keys, so beside them (the hybrid of Reformer and Transformer-XL) it takes none.
  bool layer_has_relative_term(int64_t layer) const {
    return model.position == PositionMode::kRelative &&
           attention_of_layer(layer) != AttentionKind::kLsh;
  }
  // Whether layer i attends to Transformer-XL's memory when there is one (model.memory_len, or
  // `eval --memory-len`): its dense and local layers, and its LSH layers with lsh.sees_memory
  // (otherwise they see the segment alone and keep no memory). An LSH layer that sees it hashes
  // the memory's positions with the segment's and sorts them together.
  bool layer_sees_memory(int64_t layer) const {
    return attention_of_layer(layer) != AttentionKind::kLsh || lsh.sees_memory;
  }
  // Whether no layer would keep a memory: every layer LSH, and LSH layers see none.
  bool no_layer_sees_memory() const { return only_lsh_layers() && !lsh.sees_memory; }
  // The length a memory must be a multiple of (1: any): local layers see it in whole chunks, and
  // LSH layers that see it sort memory and segment together in whole chunks (lsh.bucket_size).
  int64_t memory_unit() const;
  // What memory_unit() says, for messages: "a multiple of lsh.local_chunk = 8 (local layers see
  // the memory in whole chunks)", or of both settings.
  std::string memory_unit_rule() const;
  // The LSH bucket factors actually used (n_buckets resolved from auto and factorised).
  std::vector<int64_t> bucket_factors() const;
  std::vector<int64_t> axial_dims() const;
  // The feed-forward and loss-head chunking (model.ff_chunk, model.head_chunk) on runtime.device.
  ChunkSetting ff_chunking() const;
  ChunkSetting head_chunking() const;
  // The loss head's input per position: both streams (2 * d_model), or one (d_model) with
  // model.residual = single.
  int64_t head_width() const;
  // Whether the backward recomputes each layer's forward (reversible layers always do; stored
  // ones with model.recompute: layers), or reads what the forward kept (model.recompute: none,
  // the default without reversible layers).
  bool recomputes_layers() const;
  // Whether layer `layer` keeps its inputs for the backward (every layer without reversible
  // layers; the top model.stored_top_layers of a reversible stack), and whether it also keeps
  // its activations, so that the backward runs none of its forward again.
  bool stores_layer(int64_t layer) const;
  bool keeps_layer_activations(int64_t layer) const;
};

// Loads `path`, applies overrides ("section.key=value", value parsed as YAML), validates. Throws
// rf::Error on any problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides);
// Same from YAML text (path is used in messages only).
Config load_config_text(const std::string& yaml_text, const std::string& path,
                        const std::vector<std::string>& overrides);

// What an error of load_config says about a key when `setting` ("section.key=value", one of its
// overrides) gave it, without naming that --set: "model.d_model = 0 must be ..." from
// "--set model.d_model=0: ..." (a check of the key alone) or "--set model.d_model=0 (with F): ..."
// (a check across keys). "" when the error is not about that override.
std::string error_about_override(const std::string& message, const std::string& setting);

// The first line of every resolved config this program writes (config.yaml of a run directory):
// how a file the user wrote is told from one the trainer may replace.
inline constexpr const char* kResolvedConfigHeader =
    "# Resolved configuration: every key with its final value.\n";

// `config` with train.seed = seed (its source_text rendered again): what a resumed run trains,
// evaluates and records when its checkpoint was written under another seed.
Config with_seed(const Config& config, int64_t seed);

// The documented reference of every key with its default and allowed values, as YAML text;
// configs/reference.yaml is this text.
std::string config_reference_yaml();

const char* attention_name(AttentionKind kind);
const char* position_name(PositionMode mode);  // as model.position spells it
const char* residual_name(ResidualMode mode);  // as model.residual spells it
// A list of integers as the config text writes it: "[64, 64]".
std::string int_list_text(const std::vector<int64_t>& values);

}  // namespace rf
