// Loading the experiment configuration (trainer/config.h): reads the YAML file, walks its sections
// and keys against the schema (unknown names get a "did you mean" suggestion), applies --set
// overrides in order, checks the cross-field rules, and records the resolved configuration.
// Also the small derived values of Config (LSH bucket factors, axial dims).
#include "trainer/config.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>

#include "base/error.h"
#include "trainer/config_internal.h"

namespace rf {
namespace {

// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
// neighbouring characters each cost 1 ("d_modle" is 1 away from "d_model").
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, substitution});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The candidate nearest to `name` when it is close enough to be a likely typo, else "".
std::string closest(const std::string& name, const std::vector<std::string>& candidates) {
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::vector<std::string> section_names() {
  std::vector<std::string> names;
  for (const SectionSpec& section : config_sections()) names.push_back(section.name);
  return names;
}

std::vector<std::string> key_names(const std::string& section) {
  std::vector<std::string> names;
  for (const KeySpec& spec : config_schema()) {
    if (spec.section == section) names.push_back(spec.name);
  }
  return names;
}

// yaml-cpp reads a merge key ('<<: *defaults') as a key of that name.
constexpr const char* kMergeKeyMessage =
    "YAML merge keys ('<<') are not supported: write the keys out (anchors and aliases of "
    "single values and lists work)";

// "unknown key 'model.d_modle' (did you mean 'model.d_model'?)"; a key of another section with
// the same name is suggested too ("model.seq_len" -> "train.seq_len").

std::string unknown_key_message(const std::string& section, const std::string& name) {
  if (name == "<<") return kMergeKeyMessage;
  const std::string message = "unknown key '" + section + "." + name + "' ";
  const std::string near = closest(name, key_names(section));
  if (!near.empty()) return message + "(did you mean '" + section + "." + near + "'?)";
  for (const KeySpec& spec : config_schema()) {
    if (spec.name == name) return message + "(did you mean '" + spec.full_name() + "'?)";
  }
  return message + "(valid keys of " + section + ": " + joined(key_names(section)) + ")";
}

std::string unknown_section_message(const std::string& section) {
  if (section == "<<") return kMergeKeyMessage;
  const std::string message = "unknown section '" + section + "' ";
  const std::string near = closest(section, section_names());
  if (!near.empty()) return message + "(did you mean '" + near + "'?)";
  return message + "(valid sections: " + joined(section_names()) + ")";
}

// The text of a mapping key, which must be a scalar.
std::string key_text(const YAML::Node& key, const ValueOrigin& origin, const std::string& where) {
  if (!key.IsScalar()) fail(origin.where(key, key), ": ", where, " has a key that is not a name");
  return key.Scalar();
}

// Fails on the second occurrence of a name within one mapping.
void check_not_repeated(std::map<std::string, int>* first_lines, const std::string& name,
                        const YAML::Node& key, const ValueOrigin& origin, const char* what) {
  const int line = key.Mark().line + 1;
  const auto [it, inserted] = first_lines->emplace(name, line);
  if (!inserted) {
    fail(origin.where(key, key), ": duplicate ", what, " '", name, "' (first given on line ",
         it->second, ")");
  }
}

void apply_section(Config& config, const std::string& section, const YAML::Node& section_key,
                   const YAML::Node& keys, const ValueOrigin& origin) {
  if (keys.IsNull()) return;  // `model:` with every key commented out: all defaults
  if (!keys.IsMap()) {
    fail(origin.where(keys, section_key), ": section '", section, "' must be a mapping of keys",
         got_text(keys));
  }
  std::map<std::string, int> first_lines;
  for (auto it = keys.begin(); it != keys.end(); ++it) {
    const std::string name = key_text(it->first, origin, "section '" + section + "'");
    const KeySpec* spec = find_key_spec(section, name);
    if (spec == nullptr)
      fail(origin.where(it->first, it->first), ": ", unknown_key_message(section, name));
    check_not_repeated(&first_lines, spec->full_name(), it->first, origin, "key");
    store_config_value(config, *spec, it->second, it->first, origin);
  }
}

void apply_document(Config& config, const YAML::Node& root, const ValueOrigin& origin) {
  if (root.IsNull()) return;  // empty file: all defaults
  if (!root.IsMap()) {
    fail(origin.where(root, root), ": the top level must be a mapping of sections (",
         joined(section_names()), ")", got_text(root));
  }
  std::map<std::string, int> first_lines;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string section = key_text(it->first, origin, "the top level");
    if (!is_config_section(section)) {
      fail(origin.where(it->first, it->first), ": ", unknown_section_message(section));
    }
    check_not_repeated(&first_lines, section, it->first, origin, "section");
    apply_section(config, section, it->first, it->second, origin);
  }
}

// One line of YAML text as the document counts below read it: a "---" (start) or "..." (end) line
// at column 0, then a space or the end, separates documents, which no YAML scalar may contain;
// content is anything but blanks, comments and directives ("%YAML 1.2"), after a separator too
// ("--- value").
struct YamlLine {
  bool start = false, end = false, content = false;
};

YamlLine read_yaml_line(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto separator = [&](const char* mark) {
    return line.rfind(mark, 0) == 0 && (line.size() == 3 || line[3] == ' ' || line[3] == '\t');
  };
  YamlLine l;
  l.start = separator("---");
  l.end = separator("...");
  if (l.start || l.end) line = line.substr(3);
  const size_t first = line.find_first_not_of(" \t");
  l.content =
      first != std::string::npos && line[first] != '#' && !(line[first] == '%' && first == 0);
  return l;
}

// How many documents of YAML `text` hold something. (yaml-cpp's LoadAll, which would count them,
// loops without end on some damaged input: a fuzzing run found one.)
int documents_with_content(const std::string& text) {
  int documents = 0;
  bool content = false;  // in the current document
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const YamlLine l = read_yaml_line(line);
    if (l.start || l.end) {
      documents += content ? 1 : 0;
      content = false;
    }
    content = content || l.content;  // ("--- value" starts the next document with content)
  }
  return documents + (content ? 1 : 0);
}

// Whether the first document of `text`, the one YAML::Load reads, holds something: it ends at a
// "..." line or at a "---" line after the one that may open it.
bool first_document_has_content(const std::string& text) {
  bool opened = false, content = false;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const YamlLine l = read_yaml_line(line);
    if (l.end || (l.start && (opened || content))) return content;
    opened = opened || l.start;
    content = content || l.content;  // ("--- value": the value is the first document's)
  }
  return content;
}

// The one YAML document of `text` (null when empty), or "WHAT holds N YAML documents": YAML::Load
// reads the first alone, and a second after `---` was silently ignored.
YAML::Node single_document(const std::string& text, const std::string& what) {
  YAML::Node document = YAML::Load(text);  // (a syntax error is reported first)
  const int documents = documents_with_content(text);
  if (documents > 1)
    fail(what, " holds ", documents,
         " YAML documents (separated by '---' or '...'); a config is one");
  // YAML::Load reads the first document: keys after an empty one ("---" twice, "..." first)
  // were ignored and the default experiment trained. (A null value alone, `--set data.val=~`,
  // is one document, not that.)
  if (documents == 1 && !first_document_has_content(text))
    fail(what, " starts with an empty YAML document: its keys follow a second '---' or a '...', ",
         "where they are not read; remove the separator before them");
  return document;
}

// Parses YAML text; a syntax error becomes "WHERE:LINE:COL: invalid YAML: ...".
YAML::Node parse_yaml(const std::string& text, const std::string& where) {
  try {
    return single_document(text, where);
  } catch (const YAML::ParserException& error) {
    fail(where, ":", error.mark.line + 1, ":", error.mark.column + 1,
         ": invalid YAML: ", error.msg);
  }
}

std::string trimmed(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const size_t end = text.find_last_not_of(" \t");
  return text.substr(begin, end - begin + 1);
}

// Applies one --set override "section.key=value"; the value is read as YAML.
void apply_override(Config& config, const std::string& setting, const std::string& path) {
  const std::string where = "--set " + setting;
  const size_t equals = setting.find('=');
  const std::string key = trimmed(setting.substr(0, std::min(equals, setting.size())));
  const size_t dot = key.find('.');
  if (equals == std::string::npos || dot == std::string::npos || dot == 0 ||
      dot + 1 == key.size() || key.find('.', dot + 1) != std::string::npos) {
    fail("malformed override '", setting,
         "' (expected section.key=value, e.g. --set model.d_model=512)");
  }
  const std::string section = key.substr(0, dot);
  const std::string name = key.substr(dot + 1);
  if (!is_config_section(section)) fail(where, ": ", unknown_section_message(section));
  const KeySpec* spec = find_key_spec(section, name);
  if (spec == nullptr) fail(where, ": ", unknown_key_message(section, name));

  YAML::Node value;
  try {
    value = single_document(setting.substr(equals + 1), where + ": the value");
  } catch (const YAML::ParserException& error) {
    fail(where, ": invalid YAML value: ", error.msg);
  }
  store_config_value(config, *spec, value, YAML::Node(), ValueOrigin{path, setting});
}

// A cross-field error says "<path>: <key> = <value> ..." of the key it is about; when the last
// --set of that key gave it, the message names that override instead of the file, which may not
// even mention the key.
std::string blame_override(const std::string& message, const std::string& path,
                           const std::vector<std::string>& overrides) {
  const std::string prefix = path + ": ";
  if (message.compare(0, prefix.size(), prefix) != 0) return message;
  const std::string body = message.substr(prefix.size());
  const std::string subject = body.substr(0, body.find(" = "));
  for (auto it = overrides.rbegin(); it != overrides.rend(); ++it) {
    const size_t equals = it->find('=');
    if (equals != std::string::npos && trimmed(it->substr(0, equals)) == subject)
      return concat("--set ", *it, " (with ", path, "): ", body);
  }
  // A rule about two keys names the other one later ("train.seq_len = 256 must be a multiple of
  // lsh.bucket_size = 48"): the override of that one is to blame, not the file that says 32.
  for (auto it = overrides.rbegin(); it != overrides.rend(); ++it) {
    const size_t equals = it->find('=');
    if (equals != std::string::npos &&
        body.find(" " + trimmed(it->substr(0, equals)) + " = ") != std::string::npos)
      return concat("--set ", *it, " (with ", path, "): ", body);
  }
  return message;
}

// The whole file as text; "cannot read config file 'PATH': <reason>" when it cannot be read.
std::string read_file(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) fail("cannot read config file '", path, "': ", std::strerror(errno));
  std::string text;
  char buffer[65536];
  size_t got = 0;
  do {  // a short read is the end of the file or an error (ferror tells which): read no further
    got = std::fread(buffer, 1, sizeof buffer, file);
    text.append(buffer, got);
  } while (got == sizeof buffer);
  const int read_error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (read_error != 0) fail("cannot read config file '", path, "': ", std::strerror(read_error));
  return text;
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config_text(read_file(path), path, overrides);
}

Config load_config_text(const std::string& yaml_text, const std::string& path,
                        const std::vector<std::string>& overrides) {
  Config config;  // the member initialisers are the schema defaults
  apply_document(config, parse_yaml(yaml_text, path), ValueOrigin{path, ""});
  for (const std::string& setting : overrides) apply_override(config, setting, path);
  try {
    check_cross_field_rules(config, path);
  } catch (const Error& e) {
    throw Error(blame_override(e.what(), path, overrides));
  }
  config.source_text = render_resolved_yaml(config);
  return config;
}

std::string error_about_override(const std::string& message, const std::string& setting) {
  const std::string alone = "--set " + setting + ": ";
  if (message.rfind(alone, 0) == 0) return message.substr(alone.size());
  if (message.rfind("--set " + setting + " (with ", 0) != 0) return "";
  // (blame_override's form: the body starts with the key, after the file's name, which may hold
  // anything)
  const std::string key = trimmed(setting.substr(0, setting.find('=')));
  const size_t body = message.find("): " + key + " = ");
  return body == std::string::npos ? "" : message.substr(body + 3);
}

Config with_seed(const Config& config, int64_t seed) {
  Config c = config;
  c.train.seed = seed;
  c.source_text = render_resolved_yaml(c);
  return c;
}

std::string config_reference_yaml() {
  return render_reference_yaml();
}

const char* attention_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kLsh:
      return "lsh";
    case AttentionKind::kLocal:
      return "local";
    case AttentionKind::kDense:
      return "dense";
  }
  return "unknown";
}

const char* position_name(PositionMode mode) {
  switch (mode) {
    case PositionMode::kAxial:
      return "axial";
    case PositionMode::kLearned:
      return "learned";
    case PositionMode::kNone:
      return "none";
    case PositionMode::kRelative:
      return "relative";
  }
  return "unknown";
}

const char* residual_name(ResidualMode mode) {
  return mode == ResidualMode::kSingle ? "single" : "two_streams";
}

std::string int_list_text(const std::vector<int64_t>& values) {
  std::string text;
  for (const int64_t v : values) text += (text.empty() ? "" : ", ") + std::to_string(v);
  return "[" + text + "]";
}

int64_t Config::memory_unit() const {
  int64_t unit = 1;
  if (any_layer_uses(AttentionKind::kLocal)) unit = lsh.local_chunk;
  if (any_layer_uses(AttentionKind::kLsh) && lsh.sees_memory)
    unit = std::lcm(unit, lsh.bucket_size);
  return unit;
}

std::string Config::memory_unit_rule() const {
  const bool local = any_layer_uses(AttentionKind::kLocal);
  const bool lsh_memory = any_layer_uses(AttentionKind::kLsh) && lsh.sees_memory;
  const std::string local_rule = "lsh.local_chunk = " + std::to_string(lsh.local_chunk) +
                                 " (local layers see the memory in whole chunks)";
  const std::string lsh_rule = "lsh.bucket_size = " + std::to_string(lsh.bucket_size) +
                               " (LSH layers sort the memory with the segment in whole chunks)";
  if (local && lsh_memory)
    return "a multiple of " + std::to_string(memory_unit()) + ", of " + local_rule + " and of " +
           lsh_rule;
  if (local) return "a multiple of " + local_rule;
  if (lsh_memory) return "a multiple of " + lsh_rule;
  return "any length";
}

std::vector<int64_t> Config::bucket_factors() const {
  if (lsh.n_buckets.size() > 1) return lsh.n_buckets;  // factors given explicitly
  const int64_t n =
      lsh.n_buckets.empty() ? 2 * train.seq_len / lsh.bucket_size : lsh.n_buckets.front();
  if (n > 128) {
    // As trax: f1 = 2^ceil(log2(sqrt(n))), the smallest power of two with f1 * f1 >= n.
    int64_t f1 = 1;
    while (f1 * f1 < n) f1 *= 2;
    const int64_t f2 = n / f1;
    if (f1 * f2 == n && f1 % 2 == 0 && f2 % 2 == 0) return {f1, f2};
  }
  return {n};
}

int64_t ChunkSetting::rows(int64_t total) const {
  int64_t chunk = setting;
  if (setting == kAutoInt)
    chunk = device == Device::kCuda ? std::max<int64_t>(1, kAutoChunkBytes / bytes_per_row) : 1024;
  return chunk > 0 && chunk < total ? chunk : total;
}

ChunkSetting Config::ff_chunking() const {
  // The hidden activation before and after the activation function, and its gradient.
  return {model.ff_chunk, runtime.device, 3 * model.d_ff * int64_t{4}};
}

int64_t Config::head_width() const {
  return (model.residual == ResidualMode::kSingle ? 1 : 2) * model.d_model;
}

bool Config::recomputes_layers() const {
  if (model.reversible) return true;
  return model.recompute == RecomputeMode::kLayers;
}

bool Config::stores_layer(int64_t layer) const {
  return !model.reversible || layer >= model.n_layers - model.stored_top_layers;
}

bool Config::keeps_layer_activations(int64_t layer) const {
  return stores_layer(layer) && (model.reversible || !recomputes_layers());
}

ChunkSetting Config::head_chunking() const {
  // The logits (their gradient overwrites them), the concatenated input and its normalisation
  // (one stream: the normalisation only).
  const int64_t input = model.residual == ResidualMode::kSingle ? head_width() : 2 * head_width();
  return {model.head_chunk, runtime.device, (model.vocab_size + input) * int64_t{4}};
}

std::vector<int64_t> Config::axial_dims() const {
  if (!model.axial_dims.empty()) return model.axial_dims;
  return {model.d_model / 2, model.d_model - model.d_model / 2};
}

}  // namespace rf
