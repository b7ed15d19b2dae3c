// The safetensors format (Hugging Face's weight files): an 8-byte little-endian header length, a
// JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
// raw little-endian tensor bytes. Tensors are read into fp32 (F32, and F64/F16/BF16 converted
// exactly or by rounding to nearest); writing is F32 only. Every malformed file is a one-line
// rf::Error naming the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rf {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major, product(shape) values
};

// Writes `tensors` (in this order) with `metadata` as "__metadata__" (string values). Fails on a
// write error; the caller writes into a temporary place and renames.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

// Reads every tensor of `path`, keyed by name. Checks the header length against the file size,
// the JSON, each entry's dtype, shape and offsets (inside the data, matching the shape's size).
std::map<std::string, NamedTensor> read_safetensors(const std::string& path);

}  // namespace rf
