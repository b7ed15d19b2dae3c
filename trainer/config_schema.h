// The schema of the experiment file: one entry per key (section, name, type, default, allowed
// range or values, one-line meaning). It is the single description that the loader checks values
// against, that error messages quote, and that the documented reference YAML
// (configs/reference.yaml) is rendered from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace rf {

// What a key accepts in the YAML file.
enum class KeyType {
  kInt,                 // a YAML integer within `ints`
  kFloat,               // a number (integer or float syntax) within `floats`
  kBool,                // true | false
  kString,              // any scalar, taken as text
  kEnum,                // one of `choices`
  kEnumList,            // a list of entries of `choices` (a single scalar counts as a 1-entry list)
  kIntList,             // a list of `length` integers, each within `ints`
  kIntListOrAuto,       // `auto`, or as kIntList
  kIntOrIntListOrAuto,  // `auto`, one integer within `ints`, or as kIntList
  kIntOrAuto            // `auto` (stored as kAutoInt), or an integer within `ints`
};

// Inclusive integer bounds.
struct IntRange {
  int64_t min = 0;
  int64_t max = 0;
};

// Float bounds, each closed or open.
struct FloatRange {
  double min = 0;
  double max = 0;
  bool min_open = false;  // true: min itself is not allowed
  bool max_open = false;  // true: max itself is not allowed
};

// Allowed number of list entries (inclusive); max = kUnboundedLength means no upper limit.
struct ListLength {
  int64_t min = 0;
  int64_t max = 0;
};
constexpr int64_t kUnboundedLength = INT64_MAX;

struct KeySpec {
  std::string section;
  std::string name;
  KeyType type = KeyType::kInt;
  std::string default_yaml;          // the default, written as YAML ("256", "[lsh]", "auto")
  IntRange ints;                     // kInt and the entries of integer lists
  FloatRange floats;                 // kFloat
  std::vector<std::string> choices;  // kEnum, kEnumList; for enum-typed fields in enum order
  ListLength length;                 // list types
  bool non_empty = false;            // kString: "" is not allowed
  std::string doc;                   // one line: what the key means

  std::string full_name() const { return section + "." + name; }
};

struct SectionSpec {
  std::string name;
  std::string doc;
};

// The sections of the file, in reference order.
const std::vector<SectionSpec>& config_sections();
// Every key of every section, in reference order.
const std::vector<KeySpec>& config_schema();
// The spec of section.name, or nullptr when there is no such key.
const KeySpec* find_key_spec(const std::string& section, const std::string& name);
// True when `section` is one of config_sections().
bool is_config_section(const std::string& section);

// "[0, 1)", "[1, 65536]" — the bounds as written in messages and in the reference.
std::string range_text(const IntRange& range);
std::string range_text(const FloatRange& range);
// "gelu, relu"
std::string choices_text(const KeySpec& spec);
// What the key allows, in words: "integer in [1, 65536]", "one of gelu, relu", ...
std::string allowed_text(const KeySpec& spec);
// Whether a value is within the bounds.
bool in_range(int64_t value, const IntRange& range);
bool in_range(double value, const FloatRange& range);

// The documented reference YAML: every section and key with its default value and a comment giving
// its meaning and allowed values. configs/reference.yaml holds exactly this text.
std::string render_reference_yaml();

}  // namespace rf
