// The schema table of the experiment file and the documented reference YAML rendered from it.
// Every key is declared once here (section, name, type, default, allowed values, meaning); the
// loader (config.cpp, config_values.cpp) checks against it and the reference is generated from it,
// so the documentation cannot drift from what is accepted.
#include "trainer/config_schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "kernels/ops/chunk_attention.h"  // kMaxHeadDim

namespace rf {
namespace {

constexpr int64_t k2Pow20 = int64_t{1} << 20;
constexpr int64_t k2Pow24 = int64_t{1} << 24;
constexpr int64_t k2Pow30 = int64_t{1} << 30;
constexpr int64_t k2Pow40 = int64_t{1} << 40;
constexpr int64_t k2Pow62 = int64_t{1} << 62;
constexpr size_t kReferenceWidth = 100;  // line width of the reference YAML

// --- builders: one per key type, so each table row reads as a sentence -----------------------

KeySpec key(const char* section, const char* name, KeyType type, const char* default_yaml,
            const char* doc) {
  KeySpec spec;
  spec.section = section;
  spec.name = name;
  spec.type = type;
  spec.default_yaml = default_yaml;
  spec.doc = doc;
  return spec;
}

KeySpec int_key(const char* section, const char* name, const char* def, int64_t min, int64_t max,
                const char* doc) {
  KeySpec spec = key(section, name, KeyType::kInt, def, doc);
  spec.ints = {min, max};
  return spec;
}

KeySpec int_or_auto_key(const char* section, const char* name, const char* def, int64_t min,
                        int64_t max, const char* doc) {
  KeySpec spec = int_key(section, name, def, min, max, doc);
  spec.type = KeyType::kIntOrAuto;
  return spec;
}

KeySpec float_key(const char* section, const char* name, const char* def, FloatRange range,
                  const char* doc) {
  KeySpec spec = key(section, name, KeyType::kFloat, def, doc);
  spec.floats = range;
  return spec;
}

KeySpec bool_key(const char* section, const char* name, const char* def, const char* doc) {
  return key(section, name, KeyType::kBool, def, doc);
}

KeySpec string_key(const char* section, const char* name, const char* def, bool non_empty,
                   const char* doc) {
  KeySpec spec = key(section, name, KeyType::kString, def, doc);
  spec.non_empty = non_empty;
  return spec;
}

KeySpec enum_key(const char* section, const char* name, const char* def,
                 std::vector<std::string> choices, const char* doc) {
  KeySpec spec = key(section, name, KeyType::kEnum, def, doc);
  spec.choices = std::move(choices);
  return spec;
}

KeySpec enum_list_key(const char* section, const char* name, const char* def,
                      std::vector<std::string> choices, const char* doc) {
  KeySpec spec = key(section, name, KeyType::kEnumList, def, doc);
  spec.choices = std::move(choices);
  spec.length = {1, kUnboundedLength};
  return spec;
}

KeySpec int_list_key(const char* section, const char* name, KeyType type, const char* def,
                     ListLength length, IntRange entries, const char* doc) {
  KeySpec spec = key(section, name, type, def, doc);
  spec.length = length;
  spec.ints = entries;
  return spec;
}

FloatRange closed(double min, double max) {
  return {min, max, false, false};
}
FloatRange closed_open(double min, double max) {
  return {min, max, false, true};
}
FloatRange open_closed(double min, double max) {
  return {min, max, true, false};
}

static_assert(kMaxHeadDim == 256, "model.d_head's description names the kernels' limit");

std::vector<KeySpec> build_schema() {
  const std::vector<std::string> attention_kinds = {"lsh", "local", "dense"};  // AttentionKind
  return {
      // model
      int_key("model", "vocab_size", "256", 2, k2Pow24, "tokens in the vocabulary"),
      int_key("model", "d_model", "256", 1, 65536, "width of each residual stream"),
      int_key("model", "d_ff", "1024", 1, k2Pow20, "feed-forward hidden width"),
      int_key("model", "n_layers", "6", 1, 1024, "layers (attention and feed-forward)"),
      int_key("model", "n_heads", "4", 1, 1024, "attention heads"),
      int_key("model", "d_head", "64", 1, kMaxHeadDim,
              "width of one head (the attention kernels hold at most 256 per row)"),
      enum_list_key("model", "attention", "[lsh]", attention_kinds,
                    "attention type per layer, cycled through the layers"),
      enum_key("model", "activation", "gelu", {"gelu", "relu"},  // Activation
               "feed-forward activation"),
      float_key("model", "dropout", "0.0", closed_open(0, 1),
                "residual, feed-forward hidden and embedding dropout rate"),
      float_key("model", "attention_dropout", "0.0", closed_open(0, 1),
                "dropout rate on attention probabilities"),
      enum_key("model", "position", "axial",
               {"axial", "learned", "none", "relative"},  // PositionMode
               "position embedding; relative: Transformer-XL's relative attention (sinusoids of "
               "the query-key distance through a learned projection, and per-head biases u, v; "
               "in dense and local layers; lsh layers beside them take none)"),
      int_key("model", "clamp_len", "0", 0, k2Pow30,
              "relative positions: distances above this share its encoding (0 = no clamp)"),
      int_key("model", "memory_len", "0", 0, k2Pow30,
              "Transformer-XL's segment-level recurrence: each layer's attention also sees its "
              "inputs at this many positions of the previous segments (no gradient; lsh layers "
              "only with lsh.sees_memory); each batch lane then "
              "reads its own contiguous stream; 0 = off"),
      bool_key("model", "same_length", "false",
               "with memory (training, and eval --memory-len): every query attends to the same "
               "number of keys, the memory's length (Transformer-XL's same_length)"),
      int_list_key("model", "axial_shape", KeyType::kIntList, "[64, 64]", {2, 2}, {1, k2Pow24},
                   "axial position shape; the product must equal train.seq_len"),
      int_list_key("model", "axial_dims", KeyType::kIntListOrAuto, "auto", {2, 2}, {1, 65536},
                   "features of each axial table, summing to model.d_model; "
                   "auto = [d_model/2, d_model - d_model/2]"),
      int_or_auto_key("model", "ff_chunk", "auto", 0, k2Pow30,
                      "tokens per feed-forward chunk; 0 = no chunking; auto = 1024 on a CPU, on a "
                      "GPU none unless a chunk's activations would pass 2 GiB"),
      int_or_auto_key("model", "head_chunk", "auto", 0, k2Pow30,
                      "tokens per loss-head chunk; 0 = no chunking; auto = 1024 on a CPU, on a "
                      "GPU none unless a chunk's logits would pass 2 GiB"),
      bool_key("model", "reversible", "true",
               "reversible residual layers (false keeps every layer's inputs, and its activations "
               "unless model.recompute: layers; needed by model.residual: single)"),
      enum_key("model", "residual", "two_streams", {"two_streams", "single"},  // ResidualMode
               "two_streams: Reformer's layers over two residual streams; single: one stream, "
               "h += Attention(LN h) then h += FF(LN h) (Transformer-XL's block; needs "
               "model.reversible: false)"),
      enum_key("model", "recompute", "auto", {"auto", "layers", "none"},  // RecomputeMode
               "layers: the backward runs each layer's forward again (reversible layers always "
               "do; with model.reversible: false from the stored inputs); none: the forward keeps "
               "the feed-forward activations and the attention's projections, outputs and "
               "statistics for the backward (a quarter less arithmetic than reversible layers, "
               "for more memory; needs "
               "model.reversible: false); auto: layers when reversible, none otherwise"),
      int_key("model", "stored_top_layers", "0", 0, k2Pow24,
              "reversible layers only: this many top layers keep their inputs and activations "
              "for the backward, as model.recompute: none does, instead of rebuilding them (each "
              "skips its forward's second run, for its activations' memory; at most "
              "model.n_layers)"),
      // lsh
      int_key("lsh", "bucket_size", "64", 1, k2Pow24, "chunk length of LSH attention"),
      int_list_key("lsh", "n_buckets", KeyType::kIntOrIntListOrAuto, "auto", {1, 3}, {1, k2Pow24},
                   "buckets per hash round, even; auto = 2 * train.seq_len / bucket_size; a single "
                   "count above 128 is split in two factors; a list gives the factors "
                   "([32, 16] = 512 buckets)"),
      int_key("lsh", "n_hashes", "2", 1, 32, "hash rounds"),
      int_key("lsh", "local_chunk", "128", 1, k2Pow24, "chunk length of local attention"),
      bool_key("lsh", "sees_memory", "false",
               "with Transformer-XL's memory (model.memory_len): true hashes the memory's "
               "positions with the segment's in lsh layers, which attend to them (the memory "
               "must then be a multiple of bucket_size; their attention costs (memory + "
               "seq_len) / seq_len as much; n_buckets auto still counts seq_len only); false: "
               "they see the segment alone and keep no memory"),
      // train
      int_key("train", "seq_len", "4096", 2, k2Pow30, "tokens per training sequence"),
      int_key("train", "batch_size", "8", 1, k2Pow20, "sequences per rank per micro-step"),
      int_key("train", "grad_accum", "1", 1, 65536, "micro-steps accumulated per optimizer step"),
      int_key("train", "steps", "10000", 1, k2Pow40, "optimizer steps"),
      float_key("train", "lr", "3.0e-4", open_closed(0, 10), "peak learning rate"),
      enum_key("train", "schedule", "cosine", {"constant", "cosine", "rsqrt"},  // ScheduleKind
               "learning-rate schedule after warmup"),
      int_key("train", "warmup", "1000", 0, k2Pow40, "steps of linear learning-rate warmup"),
      float_key("train", "min_lr_ratio", "0.1", closed(0, 1), "cosine decays to lr * min_lr_ratio"),
      float_key("train", "weight_decay", "0.01", closed(0, 10), "AdamW decoupled weight decay"),
      float_key("train", "adam_beta1", "0.9", closed_open(0, 1), "Adam first-moment decay"),
      float_key("train", "adam_beta2", "0.98", closed_open(0, 1), "Adam second-moment decay"),
      float_key("train", "adam_eps", "1.0e-9", open_closed(0, 1), "Adam denominator epsilon"),
      float_key("train", "grad_clip", "1.0", closed(0, 1e6),
                "global gradient-norm clipping threshold; 0 = no clipping"),
      int_key("train", "seed", "1", 0, k2Pow62, "seed of initialisation, dropout and hashing"),
      int_key("train", "log_every", "10", 1, k2Pow40, "steps between metric log lines"),
      int_key("train", "eval_every", "500", 0, k2Pow40,
              "steps between validation runs; 0 disables"),
      int_key("train", "eval_batches", "16", 1, k2Pow20, "batches per validation run"),
      int_key("train", "checkpoint_every", "1000", 0, k2Pow40,
              "steps between checkpoints; 0 = only the final model"),
      int_key("train", "keep_checkpoints", "3", 1, 1000000, "newest checkpoints kept on disk"),
      string_key("train", "out_dir", "runs/default", true,
                 "run directory: checkpoints/, metrics.jsonl, tb/, the resolved config"),
      bool_key("train", "tensorboard", "true",
               "rank 0 also writes the metrics as TensorBoard event files under out_dir/tb/"),
      bool_key("train", "report", "true",
               "end by reporting what the model learned (an evaluation of at most a quarter of the "
               "trained tokens, within 2^16 to 2^20 tokens); false skips it, as does train "
               "--no-report"),
      // data
      enum_key("data", "format", "synthetic", {"synthetic", "text", "bytes", "hdf5"},  // DataFormat
               "training data source"),
      string_key("data", "train", "\"\"", false, "file for text/bytes, shard manifest for hdf5"),
      enum_key("data", "order", "auto", {"auto", "shuffled", "streams"},  // DataOrder
               "training order: shuffled windows, or streams (each lane of the global batch reads "
               "consecutive windows of its own stretch of the data, as Transformer-XL's "
               "recurrence needs); auto = streams with model.memory_len > 0, else shuffled"),
      string_key("data", "val", "\"\"", false, "validation file or manifest"),
      enum_key("data", "synthetic", "duplication", {"duplication"},  // SyntheticTask
               "synthetic task (the Reformer paper's 0 w 0 w duplication)"),
      float_key("data", "val_fraction", "0.1", open_closed(0, 0.5),
                "tail of the train file used for validation when data.val is empty"),
      bool_key("data", "verify_checksums", "true",
               "hdf5: check every shard's checksum at start-up (one streaming pass)"),
      int_key("data", "prefetch", "2", 0, 64,
              "micro-batches read ahead by the loader thread; 0 = read on demand"),
      // runtime
      enum_key("runtime", "device", "cpu", {"cpu", "cuda"}, "executor device"),  // Device
      int_key("runtime", "threads", "0", 0, 4096,
              "CPU threads; 0 = cores available to this rank; at most the threads OpenBLAS "
              "holds buffers for (2 x its MAX_THREADS: 128 in Debian's build), where 0 stops"),
      enum_key("runtime", "precision", "fp32", {"fp32", "tf32", "bf16"},  // GemmPrecision
               "what products multiply (always accumulating in fp32; weights, optimizer state "
               "and every other kernel stay fp32): tf32 needs device cuda (GEMMs only); bf16 on "
               "the CPU needs AVX512-BF16 or AMX, and multiplies attention tiles in bf16 on AMX "
               "only; on a GPU see tensor_core_attention"),
      float_key("runtime", "collective_timeout_s", "600", open_closed(0, 86400),
                "a collective not finished within this many seconds aborts the job"),
      bool_key("runtime", "verify_kernels", "true",
               "device cuda: before training, evaluating or generating, compare every kernel "
               "op on the GPU with the CPU reference (a quick reformer selftest); fall back to "
               "reference kernels that pass, or refuse to run if none does"),
      bool_key("runtime", "tensor_core_attention", "true",
               "device cuda, precision bf16: the attention passes multiply bf16 operands on "
               "tensor cores (not yet run on a GPU; the start-up check falls back to the fp32 "
               "tiles where they differ); false: fp32 tiles on the CUDA cores"),
      bool_key("runtime", "step_graphs", "false",
               "capture each part of a training step once and replay it (CUDA graphs on a GPU; "
               "on a CPU a recorded replay, which trains bit for bit as without it); with "
               "several ranks the graph holds the gradient averages, each started as the "
               "backward pass finishes its bucket; with model.memory_len a micro-batch is "
               "captured once its memory is full (not yet run on a GPU)"),
  };
}

// Integer-valued bounds print as integers (1000000, not 1e+06); others in shortest form.
std::string bound_text(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

// "exactly 2 integers", "a non-empty list of entries", "1 to 3 integers".
std::string list_text(const KeySpec& spec, const std::string& entries) {
  const ListLength& length = spec.length;
  std::ostringstream out;
  if (length.min == length.max) {
    out << "a list of exactly " << length.min << " " << entries;
  } else if (length.max == kUnboundedLength) {
    if (length.min == 1) {
      out << "a non-empty list of " << entries;
    } else {
      out << "a list of at least " << length.min << " " << entries;
    }
  } else {
    out << "a list of " << length.min << " to " << length.max << " " << entries;
  }
  return out.str();
}

// The words of `text` in lines of at most `width` characters (a longer word gets its own line);
// a two-number range such as "[0, 1)" is kept on one line.
std::vector<std::string> wrapped(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::istringstream words(text);
  std::string word;
  std::string line;
  while (words >> word) {
    std::string rest;  // keep a range "[0, 1)" together
    if ((word.front() == '[' || word.front() == '(') && word.back() == ',' && words >> rest) {
      word += " " + rest;
    }
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

// The comment of a key in the reference: its meaning, then what it allows.
std::string reference_comment(const KeySpec& spec) {
  return spec.doc + ". Allowed: " + allowed_text(spec) + ".";
}

}  // namespace

const std::vector<SectionSpec>& config_sections() {
  static const std::vector<SectionSpec> sections = {
      {"model", "The network: sizes, attention per layer, positions, memory-saving chunks."},
      {"lsh", "LSH and local attention."},
      {"train", "Optimisation, schedule, logging, evaluation and checkpoints."},
      {"data", "Where training and validation tokens come from."},
      {"runtime", "Where and how the computation runs."},
  };
  return sections;
}

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> schema = build_schema();
  return schema;
}

const KeySpec* find_key_spec(const std::string& section, const std::string& name) {
  for (const KeySpec& spec : config_schema()) {
    if (spec.section == section && spec.name == name) return &spec;
  }
  return nullptr;
}

bool is_config_section(const std::string& section) {
  const auto& sections = config_sections();
  return std::any_of(sections.begin(), sections.end(),
                     [&](const SectionSpec& s) { return s.name == section; });
}

std::string range_text(const IntRange& range) {
  return "[" + std::to_string(range.min) + ", " + std::to_string(range.max) + "]";
}

std::string range_text(const FloatRange& range) {
  return std::string(range.min_open ? "(" : "[") + bound_text(range.min) + ", " +
         bound_text(range.max) + (range.max_open ? ")" : "]");
}

std::string choices_text(const KeySpec& spec) {
  std::string text;
  for (const std::string& choice : spec.choices) {
    text += (text.empty() ? "" : ", ") + choice;
  }
  return text;
}

std::string allowed_text(const KeySpec& spec) {
  const std::string each_int = ", each in " + range_text(spec.ints);
  switch (spec.type) {
    case KeyType::kInt:
      return "integer in " + range_text(spec.ints);
    case KeyType::kIntOrAuto:
      return "auto, or an integer in " + range_text(spec.ints);
    case KeyType::kFloat:
      return "number in " + range_text(spec.floats);
    case KeyType::kBool:
      return "true or false";
    case KeyType::kString:
      return spec.non_empty ? "non-empty string" : "string, may be empty";
    case KeyType::kEnum:
      return "one of " + choices_text(spec);
    case KeyType::kEnumList:
      return list_text(spec, "entries") + ", each one of " + choices_text(spec);
    case KeyType::kIntList:
      return list_text(spec, "integers") + each_int;
    case KeyType::kIntListOrAuto:
      return "auto, or " + list_text(spec, "integers") + each_int;
    case KeyType::kIntOrIntListOrAuto:
      return "auto, an integer in " + range_text(spec.ints) + ", or " +
             list_text(spec, "integers") + each_int;
  }
  return "";
}

bool in_range(int64_t value, const IntRange& range) {
  return value >= range.min && value <= range.max;
}

bool in_range(double value, const FloatRange& range) {
  const bool above_min = range.min_open ? value > range.min : value >= range.min;
  const bool below_max = range.max_open ? value < range.max : value <= range.max;
  return above_min && below_max;  // false for NaN
}

std::string render_reference_yaml() {
  // Comments start in one column, just right of the longest "  key: default", and wrap at
  // kReferenceWidth onto lines of their own in that column.
  size_t comment_column = 0;
  for (const KeySpec& spec : config_schema()) {
    comment_column = std::max(comment_column, 2 + spec.name.size() + 2 + spec.default_yaml.size());
  }
  comment_column += 2;

  std::ostringstream out;
  out << "# Reference experiment file: every key with its default value, its meaning and what it\n"
         "# allows. A missing section or key takes its default; override any key on the command\n"
         "# line with --set section.key=value (the value is read as YAML). Generated by\n"
         "# config_reference_yaml() from the schema in trainer/config_schema.cpp.\n";
  for (const SectionSpec& section : config_sections()) {
    out << "\n# " << section.doc << "\n" << section.name << ":\n";
    for (const KeySpec& spec : config_schema()) {
      if (spec.section != section.name) continue;
      std::string line = "  " + spec.name + ": " + spec.default_yaml;
      const std::vector<std::string> comment =
          wrapped(reference_comment(spec), kReferenceWidth - comment_column - 2);
      for (const std::string& part : comment) {
        line.resize(comment_column, ' ');
        out << line << "# " << part << "\n";
        line.clear();
      }
    }
  }
  return out.str();
}

}  // namespace rf
