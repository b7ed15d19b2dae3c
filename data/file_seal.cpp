#include "data/file_seal.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/crc32c.h"
#include "base/error.h"

namespace rf {
namespace {

constexpr char kMagic[17] = "reformer-seal-v1";  // 16 bytes and the terminator (not stored)
constexpr int64_t kTrailerBytes = 32;            // length (8), CRC-32C (4), zero (4), magic (16)
constexpr size_t kBlockBytes = size_t{1} << 20;

void put_u64(uint8_t* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

// CRC-32C of the first `length` bytes of `in`.
uint32_t crc_of_prefix(std::ifstream& in, int64_t length, const std::string& path) {
  std::vector<char> block(kBlockBytes);
  uint32_t crc = 0;
  in.seekg(0);
  for (int64_t left = length; left > 0;) {
    const auto n = static_cast<std::streamsize>(std::min<int64_t>(left, kBlockBytes));
    if (!in.read(block.data(), n)) fail("cannot read '", path, "' to check its checksum");
    crc = crc32c(reinterpret_cast<const uint8_t*>(block.data()), static_cast<size_t>(n), crc);
    left -= n;
  }
  return crc;
}

}  // namespace

void seal_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot open '", path, "' to seal it with its checksum");
  const int64_t length = static_cast<int64_t>(in.tellg());
  const uint32_t crc = crc_of_prefix(in, length, path);
  in.close();
  uint8_t trailer[kTrailerBytes] = {};
  put_u64(trailer, static_cast<uint64_t>(length));
  for (int i = 0; i < 4; ++i) trailer[8 + i] = static_cast<uint8_t>(crc >> (8 * i));
  std::copy_n(kMagic, 16, trailer + 16);  // (without the terminator)
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(reinterpret_cast<const char*>(trailer), kTrailerBytes);
  out.close();
  if (!out) fail("cannot append the checksum to '", path, "' (disk full?)");
}

bool check_file_seal(const std::string& path) {
  // (Opening a FIFO blocks until a writer comes: a FIFO listed as a shard hung the start-up. The
  // opener reports what is not a regular file.)
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;  // (the opener reports a missing file)
  const int64_t size = static_cast<int64_t>(in.tellg());
  if (size < kTrailerBytes) return false;
  uint8_t trailer[kTrailerBytes];
  in.seekg(size - kTrailerBytes);
  if (!in.read(reinterpret_cast<char*>(trailer), kTrailerBytes)) return false;
  if (std::memcmp(trailer + 16, kMagic, 16) != 0) return false;
  const uint64_t length = get_u64(trailer);
  if (length != static_cast<uint64_t>(size - kTrailerBytes))
    fail("'", path, "' is damaged: it holds ", size - kTrailerBytes, " bytes before its checksum, ",
         "which was sealed over ", length, " (truncated or appended to?)");
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= static_cast<uint32_t>(trailer[8 + i]) << (8 * i);
  const uint32_t actual = crc_of_prefix(in, static_cast<int64_t>(length), path);
  if (actual != stored) {
    char detail[80];
    std::snprintf(detail, sizeof detail, "CRC-32C %08x, sealed as %08x", actual, stored);
    fail("'", path, "' is damaged: its contents do not match the checksum it was written with (",
         detail, ")");
  }
  return true;
}

}  // namespace rf
