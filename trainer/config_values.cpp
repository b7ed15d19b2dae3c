// Reading one YAML value into its Config field, and writing every field back out as YAML.
// Each key's type and bounds come from the schema (config_schema.cpp); this file holds the strict
// conversions (an int must be a YAML integer, a bool true/false, ...), the one-line error messages
// that name the key, its location and what is allowed, and the binding of keys to Config fields.
#include <charconv>
#include <cmath>
#include <type_traits>
#include <utility>
#include <variant>

#include "base/error.h"
#include "trainer/config_internal.h"

namespace rf {
namespace {

// A pointer to the Config field that a key sets; enum-typed fields map choices[i] to enum value i.
using FieldRef = std::variant<int64_t*, double*, bool*, std::string*, std::vector<int64_t>*,
                              std::vector<AttentionKind>*, PositionMode*, ResidualMode*,
                              RecomputeMode*, ScheduleKind*, DataFormat*, Activation*,
                              SyntheticTask*, DataOrder*, Device*, GemmPrecision*>;

// Every key's field, keyed by "section.name".
std::vector<std::pair<std::string, FieldRef>> config_fields(Config& c) {
  ModelConfig& m = c.model;
  LshConfig& l = c.lsh;
  TrainConfig& t = c.train;
  DataConfig& d = c.data;
  RuntimeConfig& r = c.runtime;
  return {
      {"model.vocab_size", &m.vocab_size},
      {"model.d_model", &m.d_model},
      {"model.d_ff", &m.d_ff},
      {"model.n_layers", &m.n_layers},
      {"model.n_heads", &m.n_heads},
      {"model.d_head", &m.d_head},
      {"model.attention", &m.attention},
      {"model.activation", &m.activation},
      {"model.dropout", &m.dropout},
      {"model.attention_dropout", &m.attention_dropout},
      {"model.position", &m.position},
      {"model.clamp_len", &m.clamp_len},
      {"model.memory_len", &m.memory_len},
      {"model.same_length", &m.same_length},
      {"model.axial_shape", &m.axial_shape},
      {"model.axial_dims", &m.axial_dims},
      {"model.ff_chunk", &m.ff_chunk},
      {"model.head_chunk", &m.head_chunk},
      {"model.reversible", &m.reversible},
      {"model.residual", &m.residual},
      {"model.recompute", &m.recompute},
      {"model.stored_top_layers", &m.stored_top_layers},
      {"lsh.bucket_size", &l.bucket_size},
      {"lsh.n_buckets", &l.n_buckets},
      {"lsh.n_hashes", &l.n_hashes},
      {"lsh.local_chunk", &l.local_chunk},
      {"lsh.sees_memory", &l.sees_memory},
      {"train.seq_len", &t.seq_len},
      {"train.batch_size", &t.batch_size},
      {"train.grad_accum", &t.grad_accum},
      {"train.steps", &t.steps},
      {"train.lr", &t.lr},
      {"train.schedule", &t.schedule},
      {"train.warmup", &t.warmup},
      {"train.min_lr_ratio", &t.min_lr_ratio},
      {"train.weight_decay", &t.weight_decay},
      {"train.adam_beta1", &t.adam_beta1},
      {"train.adam_beta2", &t.adam_beta2},
      {"train.adam_eps", &t.adam_eps},
      {"train.grad_clip", &t.grad_clip},
      {"train.seed", &t.seed},
      {"train.log_every", &t.log_every},
      {"train.eval_every", &t.eval_every},
      {"train.eval_batches", &t.eval_batches},
      {"train.checkpoint_every", &t.checkpoint_every},
      {"train.keep_checkpoints", &t.keep_checkpoints},
      {"train.out_dir", &t.out_dir},
      {"train.tensorboard", &t.tensorboard},
      {"train.report", &t.report},
      {"data.format", &d.format},
      {"data.order", &d.order},
      {"data.train", &d.train},
      {"data.val", &d.val},
      {"data.synthetic", &d.synthetic},
      {"data.val_fraction", &d.val_fraction},
      {"data.verify_checksums", &d.verify_checksums},
      {"data.prefetch", &d.prefetch},
      {"runtime.device", &r.device},
      {"runtime.threads", &r.threads},
      {"runtime.precision", &r.precision},
      {"runtime.collective_timeout_s", &r.collective_timeout_s},
      {"runtime.verify_kernels", &r.verify_kernels},
      {"runtime.tensor_core_attention", &r.tensor_core_attention},
      {"runtime.step_graphs", &r.step_graphs},
  };
}

FieldRef field_of(Config& config, const KeySpec& spec) {
  const std::string name = spec.full_name();
  for (const auto& [key, field] : config_fields(config)) {
    if (key == name) return field;
  }
  fail("internal error: schema key '", name, "' has no Config field");
}

// A plain (unquoted, untagged) scalar: the only kind that may be a number or a bool.
bool is_plain_scalar(const YAML::Node& node) {
  return node.IsScalar() && node.Tag() == "?";
}

enum class IntParse { kOk, kNotInteger, kOverflow };

// Decimal YAML integers only ("12", "-3", "+4"); "1.5", "1e3", "0x10" are not integers.
IntParse parse_integer(const std::string& text, int64_t* value) {
  const size_t digits_from = (!text.empty() && (text[0] == '-' || text[0] == '+')) ? 1 : 0;
  if (digits_from == text.size()) return IntParse::kNotInteger;
  for (size_t i = digits_from; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return IntParse::kNotInteger;
  }
  const char* begin = text.data() + (text[0] == '+' ? 1 : 0);
  const auto result = std::from_chars(begin, text.data() + text.size(), *value);
  return result.ec == std::errc() ? IntParse::kOk : IntParse::kOverflow;
}

// Any finite YAML number ("1", "0.5", "3e-4", "+2.0").
bool parse_number(const std::string& text, double* value) {
  const char* begin = text.data() + (!text.empty() && text[0] == '+' ? 1 : 0);
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(begin, end, *value);
  return result.ec == std::errc() && result.ptr == end && begin != end && std::isfinite(*value);
}

// Reads the value of one key, failing with messages that name the key and where it was written.
class ValueReader {
 public:
  ValueReader(const KeySpec& spec, const YAML::Node& key, const ValueOrigin& origin)
      : spec_(spec), key_(key), origin_(origin) {}

  [[noreturn]] void fail_expected(const YAML::Node& node, const std::string& expected,
                                  const std::string& label) const {
    fail(origin_.where(node, key_), ": ", label, ": expected ", expected, got_text(node));
  }

  int64_t read_int(const YAML::Node& node, const std::string& label) const {
    int64_t value = 0;
    const IntParse parsed =
        is_plain_scalar(node) ? parse_integer(node.Scalar(), &value) : IntParse::kNotInteger;
    if (parsed == IntParse::kNotInteger) fail_expected(node, "an integer", label);
    if (parsed == IntParse::kOverflow || !in_range(value, spec_.ints)) {
      fail(origin_.where(node, key_), ": ", label, " = ", node.Scalar(), " is out of range ",
           range_text(spec_.ints));
    }
    return value;
  }

  // `auto` (kAutoInt) or an integer in range.
  int64_t read_int_or_auto(const YAML::Node& node) const {
    if (is_plain_scalar(node) && node.Scalar() == "auto") return kAutoInt;
    int64_t ignored = 0;
    if (!is_plain_scalar(node) || parse_integer(node.Scalar(), &ignored) == IntParse::kNotInteger)
      fail_expected(node, allowed_text(spec_), spec_.full_name());
    return read_int(node, spec_.full_name());
  }

  double read_float(const YAML::Node& node) const {
    double value = 0;
    if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value)) {
      fail_expected(node, "a number", spec_.full_name());
    }
    if (!in_range(value, spec_.floats)) {
      fail(origin_.where(node, key_), ": ", spec_.full_name(), " = ", node.Scalar(),
           " is out of range ", range_text(spec_.floats));
    }
    return value;
  }

  bool read_bool(const YAML::Node& node) const {
    const std::string text = is_plain_scalar(node) ? node.Scalar() : "";
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
    fail_expected(node, "true or false", spec_.full_name());
  }

  // Any scalar as text; an empty value (`key:` or `~`) is "".
  std::string read_string(const YAML::Node& node) const {
    if (node.IsNull()) return check_non_empty(node, "");
    if (!node.IsScalar()) fail_expected(node, "a string", spec_.full_name());
    return check_non_empty(node, node.Scalar());
  }

  // The index of the value in spec.choices.
  size_t read_choice(const YAML::Node& node, const std::string& label) const {
    if (!node.IsScalar()) fail_expected(node, "one of " + choices_text(spec_), label);
    for (size_t i = 0; i < spec_.choices.size(); ++i) {
      if (spec_.choices[i] == node.Scalar()) return i;
    }
    fail(origin_.where(node, key_), ": ", label, " = '", node.Scalar(), "' is not one of ",
         choices_text(spec_));
  }

  // A list of choices; a single scalar is a one-entry list (`attention: lsh`).
  std::vector<size_t> read_choice_list(const YAML::Node& node) const {
    if (node.IsScalar()) return {read_choice(node, spec_.full_name())};
    if (!node.IsSequence()) fail_expected(node, allowed_text(spec_), spec_.full_name());
    check_length(node);
    std::vector<size_t> choices;
    choices.reserve(node.size());
    for (size_t i = 0; i < node.size(); ++i) {
      choices.push_back(read_choice(node[i], entry_label(i)));
    }
    return choices;
  }

  // An integer list; `auto` gives an empty list and a single integer a one-entry list where the
  // key's type allows them.
  std::vector<int64_t> read_int_list(const YAML::Node& node) const {
    const bool auto_allowed = spec_.type != KeyType::kIntList;
    const bool single_allowed = spec_.type == KeyType::kIntOrIntListOrAuto;
    if (auto_allowed && is_plain_scalar(node) && node.Scalar() == "auto") return {};
    int64_t ignored = 0;
    if (single_allowed && is_plain_scalar(node) &&
        parse_integer(node.Scalar(), &ignored) != IntParse::kNotInteger) {
      return {read_int(node, spec_.full_name())};
    }
    if (!node.IsSequence()) fail_expected(node, allowed_text(spec_), spec_.full_name());
    check_length(node);
    std::vector<int64_t> values;
    values.reserve(node.size());
    for (size_t i = 0; i < node.size(); ++i) values.push_back(read_int(node[i], entry_label(i)));
    return values;
  }

 private:
  std::string entry_label(size_t index) const {
    return spec_.full_name() + "[" + std::to_string(index) + "]";
  }

  void check_length(const YAML::Node& node) const {
    const auto size = static_cast<int64_t>(node.size());
    if (size < spec_.length.min || size > spec_.length.max) {
      fail_expected(node, allowed_text(spec_), spec_.full_name());
    }
  }

  std::string check_non_empty(const YAML::Node& node, const std::string& text) const {
    if (spec_.non_empty && text.empty()) {
      fail(origin_.where(node, key_), ": ", spec_.full_name(), " must not be empty");
    }
    return text;
  }

  const KeySpec& spec_;
  const YAML::Node& key_;
  const ValueOrigin& origin_;
};

// Stores into each kind of field; enum fields take the index of the choice.
struct FieldWriter {
  const KeySpec& spec;
  const ValueReader& reader;
  const YAML::Node& value;

  void operator()(int64_t* field) const {
    *field = spec.type == KeyType::kIntOrAuto ? reader.read_int_or_auto(value)
                                              : reader.read_int(value, spec.full_name());
  }
  void operator()(double* field) const { *field = reader.read_float(value); }
  void operator()(bool* field) const { *field = reader.read_bool(value); }
  void operator()(std::string* field) const {
    *field = spec.type == KeyType::kEnum ? spec.choices[reader.read_choice(value, spec.full_name())]
                                         : reader.read_string(value);
  }
  void operator()(std::vector<int64_t>* field) const { *field = reader.read_int_list(value); }
  void operator()(std::vector<AttentionKind>* field) const {
    field->clear();
    for (size_t choice : reader.read_choice_list(value)) {
      field->push_back(static_cast<AttentionKind>(choice));
    }
  }
  template <class Enum, class = std::enable_if_t<std::is_enum_v<Enum>>>
  void operator()(Enum* field) const {
    *field = static_cast<Enum>(reader.read_choice(value, spec.full_name()));
  }
};

// Shortest text that reads back as the same double, always with float syntax ("1.0", "0.0003").
std::string float_text(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

// A YAML double-quoted string, so any text (empty, "null", "123", "a: b") reads back unchanged.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Writes each kind of field as YAML that FieldWriter reads back to the same value.
struct FieldRenderer {
  const KeySpec& spec;

  std::string operator()(const int64_t* field) const {
    return spec.type == KeyType::kIntOrAuto && *field == kAutoInt ? "auto" : std::to_string(*field);
  }
  std::string operator()(const double* field) const { return float_text(*field); }
  std::string operator()(const bool* field) const { return *field ? "true" : "false"; }
  std::string operator()(const std::string* field) const {
    return spec.type == KeyType::kEnum ? *field : quoted(*field);
  }
  std::string operator()(const std::vector<int64_t>* field) const {
    if (field->empty()) return "auto";
    if (field->size() == 1 && spec.type == KeyType::kIntOrIntListOrAuto) {
      return std::to_string(field->front());
    }
    return int_list_text(*field);
  }
  std::string operator()(const std::vector<AttentionKind>* field) const {
    std::string text;
    for (const AttentionKind kind : *field) {
      text += (text.empty() ? "" : ", ") + spec.choices[static_cast<size_t>(kind)];
    }
    return "[" + text + "]";
  }
  template <class Enum, class = std::enable_if_t<std::is_enum_v<Enum>>>
  std::string operator()(const Enum* field) const {
    return spec.choices[static_cast<size_t>(*field)];
  }
};

}  // namespace

std::string got_text(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return ", got an empty value";
  if (node.IsScalar() && !is_plain_scalar(node))
    return ", got the string \"" + node.Scalar() + "\"";
  if (node.IsScalar()) return ", got '" + node.Scalar() + "'";
  YAML::Emitter flow;
  flow.SetSeqFormat(YAML::Flow);
  flow.SetMapFormat(YAML::Flow);
  flow << node;
  return ", got '" + std::string(flow.c_str()) + "'";
}

std::string ValueOrigin::where(const YAML::Node& node, const YAML::Node& key) const {
  if (!override_text.empty()) return "--set " + override_text;
  YAML::Mark mark = node.IsDefined() && !node.IsNull() ? node.Mark() : key.Mark();
  if (mark.is_null() && key.IsDefined()) mark = key.Mark();
  return mark.is_null() ? path : path + ":" + std::to_string(mark.line + 1);
}

void store_config_value(Config& config, const KeySpec& spec, const YAML::Node& value,
                        const YAML::Node& key, const ValueOrigin& origin) {
  const ValueReader reader(spec, key, origin);
  std::visit(FieldWriter{spec, reader, value}, field_of(config, spec));
}

std::string render_resolved_yaml(const Config& config) {
  Config fields = config;  // field_of() hands out writable pointers; render from a copy
  std::string text = kResolvedConfigHeader;
  std::string section;
  for (const KeySpec& spec : config_schema()) {
    if (spec.section != section) {
      section = spec.section;
      text += section + ":\n";
    }
    text +=
        "  " + spec.name + ": " + std::visit(FieldRenderer{spec}, field_of(fields, spec)) + "\n";
  }
  return text;
}

}  // namespace rf
