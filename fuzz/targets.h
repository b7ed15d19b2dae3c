// The fuzz targets: one function per reader of user files, each taking one input as bytes. An
// input must end in success or a user-facing rf::Error; anything else (a crash, a sanitizer
// report, an internal check, another exception, a hang) is a finding. libFuzzer calls them
// through fuzzer_main.cpp; tests/fuzz_regressions_test.cpp replays the committed inputs through
// them in the normal test suite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rf::fuzz {

void read_config_input(const uint8_t* data, size_t size);       // experiment file + --set
void read_manifest_input(const uint8_t* data, size_t size);     // shard manifest.yaml
void read_shard_input(const uint8_t* data, size_t size);        // token shard (HDF5)
void read_checkpoint_input(const uint8_t* data, size_t size);   // checkpoint (HDF5)
void read_safetensors_input(const uint8_t* data, size_t size);  // HF model.safetensors
void read_hf_config_input(const uint8_t* data, size_t size);    // HF config.json

struct Target {
  std::string name;  // its folder under fuzz/corpus/ and fuzz/regressions/
  void (*read)(const uint8_t* data, size_t size);
};

inline std::vector<Target> targets() {
  return {{"config", read_config_input},
          {"manifest", read_manifest_input},
          {"shard", read_shard_input},
          {"checkpoint", read_checkpoint_input},
          {"safetensors", read_safetensors_input},
          {"hf_config", read_hf_config_input}};
}

}  // namespace rf::fuzz
