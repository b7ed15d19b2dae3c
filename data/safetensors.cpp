#include "data/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace rf {
namespace {

using Json = nlohmann::json;

// The header may not be larger than this (the format's reference implementation caps it at
// 100 MB): a bigger length field means a damaged or foreign file, not a big model.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

void write_le64(uint64_t v, unsigned char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const int exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
  else if (exponent == 31)
    magnitude =
        mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// Bytes per element of the dtypes this reader converts to fp32; 0 for any other dtype.
int element_bytes(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F64") return 8;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

float element_value(const std::string& dtype, const unsigned char* p) {
  if (dtype == "F32") {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (dtype == "F64") {
    double v;
    std::memcpy(&v, p, 8);
    return static_cast<float>(v);
  }
  const uint16_t bits = static_cast<uint16_t>(p[0] | p[1] << 8);
  if (dtype == "F16") return half_to_float(bits);
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;  // BF16: the top half of an fp32
  float v;
  std::memcpy(&v, &wide, 4);
  return v;
}

// Where a tensor's bytes lie in the file's data section.
struct DataRange {
  uint64_t begin = 0, end = 0;
  std::string name;
};

NamedTensor parse_entry(const std::string& path, const std::string& name, const Json& entry,
                        const std::vector<unsigned char>& data, DataRange* range) {
  auto bad = [&](const std::string& what) -> void {
    fail("safetensors file '", path, "': tensor '", name, "' ", what);
  };
  if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
      !entry.contains("data_offsets"))
    bad("lacks dtype, shape or data_offsets");
  if (!entry["dtype"].is_string()) bad("has a dtype that is not a string");
  const std::string dtype = entry["dtype"].get<std::string>();
  const int bytes = element_bytes(dtype);
  if (bytes == 0) bad("has dtype " + dtype + " (readable: F32, F64, F16, BF16)");
  NamedTensor t;
  t.name = name;
  uint64_t count = 1;
  if (!entry["shape"].is_array()) bad("has a shape that is not a list");
  for (const Json& d : entry["shape"]) {
    if (!d.is_number_unsigned()) bad("has a shape entry that is not a non-negative integer");
    const uint64_t extent = d.get<uint64_t>();
    if (extent > (uint64_t{1} << 40) || (extent > 0 && count > (uint64_t{1} << 40) / extent))
      bad("has an impossible shape");
    count *= extent;
    t.shape.push_back(static_cast<int64_t>(extent));
  }
  const Json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    bad("has data_offsets that are not [begin, end]");
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (begin > end || end > data.size())
    bad("has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
        "] outside the file's " + std::to_string(data.size()) + " data bytes (truncated?)");
  if (end - begin != count * static_cast<uint64_t>(bytes))
    bad("holds " + std::to_string(end - begin) + " bytes, its shape and dtype need " +
        std::to_string(count * static_cast<uint64_t>(bytes)));
  t.values.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    t.values[i] = element_value(dtype, data.data() + begin + i * static_cast<uint64_t>(bytes));
    if (!std::isfinite(t.values[i]))  // (trained weights are finite: the file is damaged)
      bad("has a non-finite value (" + std::to_string(t.values[i]) + ") at element " +
          std::to_string(i));
  }
  *range = {begin, end, name};
  return t;
}

// The tensors' data must tile the data section as the format requires (safetensors' own reader
// refuses anything else): in order of offset, each starts where the one before ends, from 0 to
// the section's end. Overlapping tensors read each other's bytes.
void check_offsets_tile_the_data(const std::string& path, std::vector<DataRange> ranges,
                                 uint64_t data_bytes) {
  std::sort(ranges.begin(), ranges.end(), [](const DataRange& a, const DataRange& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (const DataRange& r : ranges) {
    if (r.begin != at)
      fail("safetensors file '", path, "': tensor '", r.name, "' has data_offsets [", r.begin, ", ",
           r.end, "], which ", r.begin < at ? "overlap" : "leave a gap after",
           " the tensor before it (ending at ", at, ")");
    at = r.end;
  }
  if (at != data_bytes)
    fail("safetensors file '", path, "': its tensors end at byte ", at, " of a data section of ",
         data_bytes, " bytes");
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    uint64_t count = 1;
    for (int64_t d : t.shape) count *= static_cast<uint64_t>(d);
    RF_CHECK(count == t.values.size(), t.name, ": shape and values disagree");
    const uint64_t bytes = count * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Readers may map the data; align its start to 8 bytes with trailing spaces, as the format
  // allows.
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create '", path, "'");
  unsigned char length[8];
  write_le64(text.size(), length);
  out.write(reinterpret_cast<const char*>(length), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  static_assert(sizeof(float) == 4, "fp32 tensors");
  for (const NamedTensor& t : tensors)  // (this is a little-endian machine, as the format is)
    out.write(reinterpret_cast<const char*>(t.values.data()),
              static_cast<std::streamsize>(t.values.size() * sizeof(float)));
  out.flush();
  if (!out) fail("cannot write '", path, "' (disk full?)");
}

std::map<std::string, NamedTensor> read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot open safetensors file '", path, "'");
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char length_bytes[8];
  if (size < 8 || !in.read(reinterpret_cast<char*>(length_bytes), 8))
    fail("safetensors file '", path, "' is shorter than its 8-byte header length");
  const uint64_t header_bytes = read_le64(length_bytes);
  if (header_bytes > kMaxHeaderBytes || header_bytes > size - 8)
    fail("safetensors file '", path, "' declares a ", header_bytes, "-byte header in a ", size,
         "-byte file (truncated or not safetensors)");
  std::string text(header_bytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_bytes));
  std::vector<unsigned char> data(size - 8 - header_bytes);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!in) fail("cannot read safetensors file '", path, "'");
  Json header;
  try {
    header = Json::parse(text);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    fail("safetensors file '", path, "' has a header that is not JSON (", e.what(), ")");
  }
  if (!header.is_object()) fail("safetensors file '", path, "' has a header that is not an object");
  std::map<std::string, NamedTensor> tensors;
  std::vector<DataRange> ranges;
  ranges.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    tensors.emplace(name, parse_entry(path, name, entry, data, &ranges.emplace_back()));
  }
  check_offsets_tile_the_data(path, std::move(ranges), data.size());
  return tensors;
}

}  // namespace rf
