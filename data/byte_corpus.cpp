#include "data/byte_corpus.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>

#include "base/error.h"
#include "data/hdf5_io.h"
#include "data/shards.h"

namespace rf {

namespace {

bool starts_with(const std::vector<uint8_t>& bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), bytes.begin(),
                    [](char p, uint8_t b) { return static_cast<uint8_t>(p) == b; });
}

// A shard manifest or an HDF5 file (a shard, a checkpoint) given where text is read would train
// on its bytes without a word (data.format text with a manifest from `reformer prepare`).
void refuse_files_that_are_not_text(const std::vector<uint8_t>& bytes, const std::string& path,
                                    const std::string& role) {
  const bool manifest = starts_with(bytes, concat("# ", kManifestHeader)) ||
                        std::filesystem::path(path).filename() == kManifestName;
  if (manifest)
    fail(role, ": '", path, "' is a shard manifest of `reformer prepare`, not text: set ",
         "data.format: hdf5 to train on its shards");
  if (starts_with(bytes, kHdf5Signature))
    fail(role, ": '", path, "' is an HDF5 file (a shard or a checkpoint?), not text: give its ",
         "shards' manifest with data.format: hdf5");
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, const std::string& role) {
  // A regular file only: a directory failed as "basic_filebuf::underflow error reading the file",
  // and /dev/zero or a pipe never ends (all of it is read into memory).
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    fail(role, ": '", path, "' is ",
         std::filesystem::is_directory(status) ? "a directory" : "not a regular file",
         " (a text or byte file is read whole)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(role, ": cannot read '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return bytes;
}

ByteCorpus::ByteCorpus(const std::string& path, const std::string& role, int64_t seq_len,
                       double begin_fraction, double end_fraction)
    : path_(path), seq_len_(seq_len) {
  std::vector<uint8_t> all = read_file_bytes(path, role);
  refuse_files_that_are_not_text(all, path, role);
  const int64_t n = static_cast<int64_t>(all.size());
  const int64_t begin = static_cast<int64_t>(begin_fraction * static_cast<double>(n));
  const int64_t end = static_cast<int64_t>(end_fraction * static_cast<double>(n));
  bytes_.assign(all.begin() + begin, all.begin() + end);
  num_windows_ = (static_cast<int64_t>(bytes_.size()) - 1) / seq_len_;
  if (num_windows_ < 1)
    fail(role, ": '", path, "' gives ", bytes_.size(), " bytes for this part, fewer than ",
         "train.seq_len + 1 = ", seq_len_ + 1, " (one window)");
}

void ByteCorpus::read(int64_t index, int32_t* out) const {
  const uint8_t* src = bytes_.data() + index * seq_len_;
  for (int64_t i = 0; i <= seq_len_; ++i) out[i] = src[i];
}

std::string ByteCorpus::describe() const {
  std::ostringstream s;
  s << "'" << path_ << "' (" << bytes_.size() << " bytes, " << num_windows_ << " windows)";
  return s.str();
}

}  // namespace rf
