// Pieces of the config loader shared between its source files (config.cpp, config_values.cpp,
// config_checks.cpp); not for use elsewhere — the public interface is trainer/config.h.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "trainer/config.h"
#include "trainer/config_schema.h"

namespace rf {

// Where a YAML value came from, for the location that starts every error message: "PATH:LINE"
// for a file, "--set section.key=value" for a command-line override.
struct ValueOrigin {
  std::string path;           // the config file (also used for overrides' cross-field messages)
  std::string override_text;  // "section.key=value" when the value came from --set, else empty

  // The location of `node` (falling back to `key`'s line when node has no position).
  std::string where(const YAML::Node& node, const YAML::Node& key) const;
};

// ", got 'abc'": what the user wrote, quoted for "expected ..." messages (lists in flow style).
std::string got_text(const YAML::Node& node);

// Converts `value` to the type `spec` asks for, checks it, and stores it in the matching Config
// field. Throws rf::Error naming the key, the location and what is allowed.
void store_config_value(Config& config, const KeySpec& spec, const YAML::Node& value,
                        const YAML::Node& key, const ValueOrigin& origin);

// The fully resolved configuration as YAML: every key of every section with its final value
// (auto written as `auto`). Loading it back gives the same Config.
std::string render_resolved_yaml(const Config& config);

// The rules that involve several keys (divisibility, products, data and device requirements).
// Throws rf::Error "PATH: ..." naming every key involved, its value and why.
void check_cross_field_rules(const Config& config, const std::string& path);

}  // namespace rf
