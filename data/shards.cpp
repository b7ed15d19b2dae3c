// HDF5 token shards (see shards.h for the format): FNV-1a checksums, the YAML manifest, the
// block-by-block shard writer used by `prepare`, and the window reader used for training. Every
// problem a user can cause (missing, damaged or mismatched files) is a one-line rf::Error naming
// the file.
#include "data/shards.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "base/error.h"
#include "base/fnv1a.h"
#include "data/file_seal.h"
#include "data/hdf5_io.h"
#include "data/open_file_limit.h"

namespace rf {
namespace fs = std::filesystem;

// --- checksums ---------------------------------------------------------------------------------

std::string checksum_to_hex(uint64_t checksum) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(checksum));
  return text;
}

int bytes_per_token_for_vocab(int64_t vocab_size) {
  if (vocab_size <= 256) return 1;
  if (vocab_size <= 65536) return 2;
  return 4;
}

// --- manifest ----------------------------------------------------------------------------------

namespace {

// "manifest 'p'" or "manifest 'p': train[2]", the start of an error about `where`.
std::string manifest_place(const std::string& path, const std::string& where) {
  return "manifest '" + path + "'" + (where.empty() ? "" : ": " + where);
}

// One key of a YAML map as T; a missing key or a value of the wrong type names the file.
// where: "" for the top level, "train[2]" for an entry of a shard list.
template <class T>
T manifest_value(const YAML::Node& map, const std::string& key, const std::string& where,
                 const std::string& path) {
  const YAML::Node value = map[key];
  if (!value) fail(manifest_place(path, where), " is missing the key '", key, "'");
  try {
    return value.as<T>();
  } catch (const YAML::Exception&) {
    fail(manifest_place(path, where), ": key '", key, "' has the wrong type");
  }
}

uint64_t parse_checksum(const std::string& text, const std::string& where,
                        const std::string& path) {
  const bool hex = !text.empty() && text.size() <= 16 &&
                   text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
  if (!hex) fail(manifest_place(path, where), ": checksum '", text, "' is not 16 hex digits");
  return std::stoull(text, nullptr, 16);
}

// The folder a manifest's relative paths start from: the manifest file's own, also when it is
// reached through a symbolic link (prepare writes the shards beside the manifest, not the link).
fs::path manifest_directory(const std::string& path) {
  std::error_code ec;
  if (fs::is_symlink(path, ec)) {
    const fs::path target = fs::canonical(path, ec);
    if (!ec) return target.parent_path();
  }
  return fs::path(path).parent_path();
}

// A map of a manifest (a shard's entry, tokenizer_model) holds only `known` keys, each once: an
// unknown or repeated key was ignored (a typo, or the second of two token counts).
void check_entry_keys(const YAML::Node& map, const std::vector<std::string>& known,
                      const std::string& where, const std::string& path) {
  std::set<std::string> seen;
  for (const auto& field : map) {
    const std::string key = field.first.as<std::string>("");
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string listed;
      for (const std::string& k : known) listed += (listed.empty() ? "" : ", ") + k;
      fail(manifest_place(path, where), ": unknown key '", key, "' (", listed, ")");
    }
    if (!seen.insert(key).second) fail(manifest_place(path, where), ": key '", key, "' twice");
  }
}

std::vector<ShardEntry> read_shard_list(const YAML::Node& root, const std::string& split,
                                        const std::string& path) {
  const YAML::Node list = root[split];
  if (!list) fail("manifest '", path, "' is missing the key '", split, "'");
  if (!list.IsSequence() && !list.IsNull())
    fail("manifest '", path, "': '", split, "' must be a list of shards");
  const fs::path directory = manifest_directory(path);
  std::vector<ShardEntry> entries;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = split + "[" + std::to_string(i) + "]";
    if (!list[i].IsMap())
      fail(manifest_place(path, where), " must be a map of file, tokens, checksum");
    check_entry_keys(list[i], {"file", "tokens", "checksum"}, where, path);
    ShardEntry e;
    e.path = (directory / manifest_value<std::string>(list[i], "file", where, path)).string();
    e.tokens = manifest_value<int64_t>(list[i], "tokens", where, path);
    e.checksum =
        parse_checksum(manifest_value<std::string>(list[i], "checksum", where, path), where, path);
    if (e.tokens < 0) fail(manifest_place(path, where), " has a negative token count");
    entries.push_back(e);
  }
  return entries;
}

// A manifest is read as strictly as a config: a key this build does not know (a typo, or a
// manifest of another program) is an error, not ignored.
void check_manifest_keys(const YAML::Node& root, const std::string& path) {
  static const std::set<std::string> kKnown = {"format_version", "vocab_size",      "tokenizer",
                                               "source",         "tokenizer_model", "window_stride",
                                               "sealed_shards",  "train",           "val"};
  if (!root.IsMap()) return;  // (reported by the first value read)
  std::set<std::string> seen;
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>("");
    if (!kKnown.count(key)) fail("manifest '", path, "': unknown key '", key, "'");
    // (YAML keeps one of two: a second train list dropped the first's shards without a word.)
    if (!seen.insert(key).second) fail("manifest '", path, "': key '", key, "' twice");
  }
}

// What makes two listed shards the same data: the same file (by device and inode where it
// exists, so a hard link or another spelling of its path is caught), or the same contents (the
// token count and checksum the manifest lists for it: a copy).
struct ShardIdentity {
  std::string file;
  std::string contents;
};

ShardIdentity identity_of(const ShardEntry& entry) {
  struct stat st {};
  std::string file;
  if (::stat(entry.path.c_str(), &st) == 0) {
    file = concat("inode ", st.st_dev, ":", st.st_ino);
  } else {
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(entry.path, ec);
    file = ec ? entry.path : canonical.string();
  }
  return {file, concat(entry.tokens, " tokens, checksum ", checksum_to_hex(entry.checksum))};
}

// Fails when a shard of `lists` (each a name and its shards) is the same data as one listed
// before it; the error starts with `what` and ends with `rule`.
void check_shards_distinct(
    const std::vector<std::pair<std::string, const std::vector<ShardEntry>*>>& lists,
    const std::string& what, const std::string& rule) {
  std::map<std::string, std::string> files, contents;  // identity -> where it is listed
  for (const auto& [name, list] : lists)
    for (size_t i = 0; i < list->size(); ++i) {
      const ShardEntry& entry = (*list)[i];
      const ShardIdentity id = identity_of(entry);
      const std::string where = concat(name, "[", i, "] '", entry.path, "'");
      if (const auto [it, added] = files.emplace(id.file, where); !added)
        fail(what, where, " is the same file as ", it->second, "; ", rule);
      // A manifest written by hand for unchecked shards (data.verify_checksums false) may give
      // every checksum as 0: equal token counts alone are no copy.
      if (entry.checksum == 0) continue;
      if (const auto [it, added] = contents.emplace(id.contents, where); !added)
        fail(what, where, " holds the same tokens as ", it->second, " (", id.contents, "); ", rule);
    }
}

// A shard listed twice would be read twice an epoch; one in both lists would train on the
// validation tokens. Both used to be accepted, and then a hard link or a copy of a shard.
void check_each_shard_listed_once(const Manifest& m) {
  check_shards_distinct({{"train", &m.train}, {"val", &m.val}}, concat("manifest '", m.path, "': "),
                        "each shard may be listed once, in train or in val");
}

YAML::Node load_manifest_yaml(const std::string& path) {
  if (!fs::exists(path)) fail("manifest '", path, "' does not exist (run `reformer prepare`?)");
  // (A folder failed as "basic_filebuf::underflow error", a shard as YAML with unknown escapes.)
  if (fs::is_directory(path))
    fail("manifest '", path, "' is a directory: give the ", kManifestName, " in it");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("manifest '", path, "' cannot be read");
  char signature[8] = {};
  in.read(signature, sizeof signature);
  if (std::string_view(signature, static_cast<size_t>(in.gcount())) == kHdf5Signature)
    fail("manifest '", path, "' is an HDF5 file (a shard?), not a manifest: give the ",
         kManifestName, " beside it");
  in.clear();
  in.seekg(0);
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    fail("manifest '", path, "' is not valid YAML: ", e.what());
  }
  if (!root.IsMap()) fail("manifest '", path, "' is not a YAML map of manifest keys");
  return root;
}

}  // namespace

void check_no_shard_in_both(const Manifest& train, const Manifest& val) {
  check_shards_distinct(
      {{concat("train of '", train.path, "' "), &train.train},
       {concat("val of '", val.path, "' "), &val.val}},
      "data.train and data.val: ", "validation would score tokens that training trains on");
}

Manifest read_manifest(const std::string& manifest_path) {
  const YAML::Node root = load_manifest_yaml(manifest_path);
  check_manifest_keys(root, manifest_path);
  Manifest m;
  m.path = manifest_path;
  m.format_version = manifest_value<int64_t>(root, "format_version", "", manifest_path);
  if (m.format_version != kShardFormatVersion)
    fail("manifest '", manifest_path, "' has format_version ", m.format_version,
         "; this build reads version ", kShardFormatVersion);
  m.vocab_size = manifest_value<int64_t>(root, "vocab_size", "", manifest_path);
  if (m.vocab_size < 1) fail("manifest '", manifest_path, "': vocab_size must be positive");
  m.tokenizer = manifest_value<std::string>(root, "tokenizer", "", manifest_path);
  if (root["source"]) m.source = manifest_value<std::string>(root, "source", "", manifest_path);
  if (root["tokenizer_model"]) {
    const YAML::Node model = root["tokenizer_model"];
    if (!model.IsMap()) fail("manifest '", manifest_path, "': tokenizer_model must be a map");
    check_entry_keys(model, {"file", "checksum"}, "tokenizer_model", manifest_path);
    const fs::path file =
        manifest_value<std::string>(model, "file", "tokenizer_model", manifest_path);
    m.tokenizer_model = (manifest_directory(manifest_path) / file).string();
    m.tokenizer_model_checksum = parse_checksum(
        manifest_value<std::string>(model, "checksum", "tokenizer_model", manifest_path),
        "tokenizer_model", manifest_path);
  }
  if (root["window_stride"])
    m.window_stride = manifest_value<int64_t>(root, "window_stride", "", manifest_path);
  if (m.window_stride < 0) fail("manifest '", manifest_path, "': window_stride must be >= 0");
  if (root["sealed_shards"])
    m.sealed_shards = manifest_value<bool>(root, "sealed_shards", "", manifest_path);
  if (m.tokenizer == "sentencepiece" && m.tokenizer_model.empty())
    fail("manifest '", manifest_path, "': tokenizer sentencepiece needs a tokenizer_model entry");
  m.train = read_shard_list(root, "train", manifest_path);
  m.val = read_shard_list(root, "val", manifest_path);
  check_each_shard_listed_once(m);
  return m;
}

namespace {

void emit_shard_list(YAML::Emitter& out, const std::vector<ShardEntry>& entries,
                     const fs::path& directory) {
  out << YAML::BeginSeq;
  for (const ShardEntry& e : entries) {
    const fs::path absolute = fs::absolute(e.path).lexically_normal();
    fs::path relative = absolute.lexically_relative(directory);
    if (relative.empty()) relative = absolute;
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "file" << YAML::Value << relative.string()
        << YAML::Key << "tokens" << YAML::Value << static_cast<long long>(e.tokens) << YAML::Key
        << "checksum" << YAML::Value << YAML::DoubleQuoted << checksum_to_hex(e.checksum)
        << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

}  // namespace

void write_manifest(const Manifest& m, const std::string& manifest_path) {
  const fs::path directory = fs::absolute(manifest_path).parent_path().lexically_normal();
  YAML::Emitter out;
  out << YAML::Comment(kManifestHeader);
  out << YAML::BeginMap;
  out << YAML::Key << "format_version" << YAML::Value << static_cast<long long>(m.format_version);
  out << YAML::Key << "vocab_size" << YAML::Value << static_cast<long long>(m.vocab_size);
  out << YAML::Key << "tokenizer" << YAML::Value << m.tokenizer;
  if (!m.tokenizer_model.empty()) {
    out << YAML::Key << "tokenizer_model" << YAML::Value << YAML::Flow << YAML::BeginMap
        << YAML::Key << "file" << YAML::Value << fs::path(m.tokenizer_model).filename().string()
        << YAML::Key << "checksum" << YAML::Value << YAML::DoubleQuoted
        << checksum_to_hex(m.tokenizer_model_checksum) << YAML::EndMap;
  }
  out << YAML::Key << "source" << YAML::Value << YAML::DoubleQuoted << m.source;
  out << YAML::Key << "window_stride" << YAML::Value << static_cast<long long>(m.window_stride);
  if (m.sealed_shards) out << YAML::Key << "sealed_shards" << YAML::Value << true;
  out << YAML::Key << "train" << YAML::Value;
  emit_shard_list(out, m.train, directory);
  out << YAML::Key << "val" << YAML::Value;
  emit_shard_list(out, m.val, directory);
  out << YAML::EndMap;
  RF_CHECK(out.good(), out.GetLastError());

  // Temp + rename: the manifest appears whole or not at all.
  const std::string temp = manifest_path + ".partial";
  {
    std::ofstream file(temp, std::ios::trunc);
    file << out.c_str() << "\n";
    file.flush();
    if (!file) fail("cannot write manifest '", temp, "' (disk full or not writable?)");
  }
  std::error_code error;
  fs::rename(temp, manifest_path, error);
  if (error) fail("cannot rename '", temp, "' to '", manifest_path, "': ", error.message());
}

// --- writing a shard ---------------------------------------------------------------------------

namespace {

constexpr int64_t kChunkTokens = 1 << 16;  // HDF5 chunk: a window read touches one or two

hid_t stored_type_for(int bytes_per_token) {
  if (bytes_per_token == 1) return H5T_STD_U8LE;
  if (bytes_per_token == 2) return H5T_STD_U16LE;
  return H5T_STD_U32LE;
}

}  // namespace

ShardWriter::ShardWriter(const std::string& path, int64_t vocab_size, const std::string& tokenizer,
                         const std::string& split, int64_t expected_tokens)
    : file_(Hdf5File::create(path)),
      path_(path),
      vocab_size_(vocab_size),
      bytes_per_token_(bytes_per_token_for_vocab(vocab_size)) {
  file_.create_extendible(kShardDataset, stored_type_for(bytes_per_token_),
                          std::clamp<int64_t>(expected_tokens, 1, kChunkTokens));
  file_.set_int("format_version", kShardFormatVersion);
  file_.set_int("vocab_size", vocab_size);
  file_.set_string("tokenizer", tokenizer);
  file_.set_string("split", split);
}

void ShardWriter::append(const uint8_t* tokens, int64_t count) {
  RF_CHECK(vocab_size_ >= 256, "byte tokens need a vocabulary of at least 256");
  file_.append(kShardDataset, H5T_NATIVE_UINT8, tokens, count);
  if (bytes_per_token_ == 1) {
    checksum_ = fnv1a_bytes(checksum_, tokens, count);
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const uint32_t token = tokens[i];
      checksum_ = fnv1a_tokens(checksum_, &token, 1, bytes_per_token_);
    }
  }
  tokens_ += count;
}

void ShardWriter::append(const uint32_t* tokens, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    RF_CHECK(tokens[i] < static_cast<uint64_t>(vocab_size_), "token ", tokens[i], " >= vocab");
  file_.append(kShardDataset, H5T_NATIVE_UINT32, tokens, count);
  checksum_ = fnv1a_tokens(checksum_, tokens, count, bytes_per_token_);
  tokens_ += count;
}

ShardEntry ShardWriter::finish() {
  file_.close();
  seal_file(path_);
  return ShardEntry{path_, tokens_, checksum_};
}

// --- reading windows ---------------------------------------------------------------------------

namespace {

constexpr int64_t kVerifyBlockTokens = 1 << 20;  // tokens per read while verifying a checksum

std::string describe_element_type(H5T_class_t type_class, size_t size, bool is_unsigned) {
  std::ostringstream s;
  if (type_class == H5T_INTEGER)
    s << (is_unsigned ? "unsigned" : "signed") << " integers of " << size << " bytes";
  else if (type_class == H5T_FLOAT)
    s << "floating-point numbers of " << size << " bytes";
  else
    s << "elements of HDF5 type class " << static_cast<int>(type_class);
  return s.str();
}

// The `tokens` dataset must be a 1-D array of unsigned 1-, 2- or 4-byte integers.
void check_token_dataset(const Hdf5File& file) {
  if (!file.has_dataset(kShardDataset))
    fail("'", file.path(), "' has no '", kShardDataset, "' dataset (not a token shard?)");
  H5T_class_t type_class;
  size_t size = 0;
  int rank = 0;
  file.dataset_type(kShardDataset, &type_class, &size, &rank);
  if (rank != 1)
    fail("'", file.path(), "': dataset '", kShardDataset, "' has rank ", rank, ", expected 1-D");
  const bool is_unsigned = file.dataset_is_unsigned(kShardDataset);
  if (type_class != H5T_INTEGER || !is_unsigned || (size != 1 && size != 2 && size != 4))
    fail("'", file.path(), "': dataset '", kShardDataset, "' holds ",
         describe_element_type(type_class, size, is_unsigned),
         ", expected unsigned integers of 1, 2 or 4 bytes");
}

int64_t count_windows(int64_t tokens, int64_t seq_len, int64_t stride) {
  return tokens < seq_len + 1 ? 0 : (tokens - (seq_len + 1)) / stride + 1;
}

}  // namespace

ShardedWindows::ShardedWindows(const Manifest& manifest, const std::string& split, int64_t seq_len,
                               int64_t model_vocab, bool verify_checksums)
    : manifest_path_(manifest.path),
      split_(split),
      seq_len_(seq_len),
      stride_(manifest.window_stride > 0 ? manifest.window_stride : seq_len),
      model_vocab_(model_vocab),
      manifest_vocab_(manifest.vocab_size) {
  RF_CHECK(split == "train" || split == "val", "unknown split '", split, "'");
  RF_CHECK(seq_len >= 1 && model_vocab >= 1);
  if (manifest.vocab_size > model_vocab)
    fail("manifest '", manifest.path, "' has vocab_size ", manifest.vocab_size,
         " but model.vocab_size is ", model_vocab, ": raise model.vocab_size to at least ",
         manifest.vocab_size);
  if (manifest.window_stride > 0 && manifest.window_stride != seq_len + 1)
    fail("manifest '", manifest.path, "' stores independent windows of ", manifest.window_stride,
         " tokens (window_stride): set train.seq_len = ", manifest.window_stride - 1, " (it is ",
         seq_len, ")");
  const std::vector<ShardEntry>& entries = split == "train" ? manifest.train : manifest.val;
  if (entries.empty()) fail("manifest '", manifest.path, "' lists no '", split, "' shards");

  // Every seal first: HDF5 opens none of the shards unless all of them are intact. (A missing
  // shard is reported by open_shard.)
  if (verify_checksums)
    for (const ShardEntry& entry : entries) {
      std::error_code ec;
      if (fs::exists(entry.path, ec) && !fs::is_regular_file(entry.path, ec))
        fail("shard '", entry.path, "' is not a regular file (a folder, a FIFO or a device)");
      if (!check_file_seal(entry.path) && manifest.sealed_shards && fs::exists(entry.path, ec))
        fail("shard '", entry.path, "' has no checksum seal, though manifest '", manifest.path,
             "' lists sealed shards (reformer prepare's): it was replaced or cut short since; ",
             "prepare the data again, or set data.verify_checksums: false to read it unchecked");
    }
  reserve_open_files(static_cast<int64_t>(entries.size()),
                     concat("the '", split, "' split of manifest '", manifest.path, "' (",
                            entries.size(), " shards, each kept open)"));
  int64_t largest = 0;
  for (const ShardEntry& entry : entries) {
    shards_.push_back(open_shard(entry, verify_checksums));
    OpenShard& shard = shards_.back();
    shard.first_window = num_windows_;
    shard.windows = count_windows(shard.tokens, seq_len_, stride_);
    num_windows_ += shard.windows;
    num_tokens_ += shard.tokens;
    largest = std::max(largest, shard.tokens);
  }
  if (num_windows_ == 0)
    fail("manifest '", manifest.path, "': the '", split, "' split has ", num_tokens_, " tokens in ",
         shards_.size(), " shard(s), the largest ", largest,
         " tokens, but train.seq_len = ", seq_len, " needs at least ", seq_len + 1,
         " tokens in one shard (windows never cross shards)");
}

ShardedWindows::OpenShard ShardedWindows::open_shard(const ShardEntry& entry,
                                                     bool verify_checksum) const {
  if (!fs::exists(entry.path))
    fail("shard '", entry.path, "' listed in manifest '", manifest_path_, "' is missing");
  try {
    // (With verify_checksum, ShardedWindows checked every shard's seal before opening any.)
    OpenShard shard{Hdf5File::open_read(entry.path, false), 0, 0, 0};
    const Hdf5File& file = shard.file;
    check_token_dataset(file);
    shard.tokens = file.dataset_length(kShardDataset);
    if (shard.tokens != entry.tokens)
      fail("'", entry.path, "' holds ", shard.tokens, " tokens but the manifest lists ",
           entry.tokens, " (shard replaced or manifest stale?)");
    if (!file.has_attribute("vocab_size"))
      fail("'", entry.path, "' has no 'vocab_size' attribute (not a token shard?)");
    const int64_t vocab = file.get_int("vocab_size");
    if (vocab > model_vocab_)
      fail("'", entry.path, "' has vocab_size ", vocab, " but model.vocab_size is ", model_vocab_,
           ": raise model.vocab_size to at least ", vocab);
    if (vocab != manifest_vocab_)
      fail("'", entry.path, "' has vocab_size ", vocab, " but its manifest says ", manifest_vocab_,
           " (shards from another prepare?)");
    // (prepare names each shard's split: a validation shard listed for training, from another
    // manifest say, would train on the tokens it scores.)
    if (file.has_attribute("split") && file.get_string("split") != split_)
      fail("'", entry.path, "' was written as a ", file.get_string("split"),
           " shard (its split attribute) but is listed for ", split_);
    if (verify_checksum) verify_shard(shard, entry);
    return shard;
  } catch (const Error& e) {
    fail(e.what(), " [", split_, " shard of manifest '", manifest_path_, "']");
  }
}

// Streams the whole shard once, in blocks, checking token range and the manifest's checksum.
void ShardedWindows::verify_shard(const OpenShard& shard, const ShardEntry& entry) const {
  H5T_class_t type_class;
  size_t bytes_per_token = 0;
  int rank = 0;
  shard.file.dataset_type(kShardDataset, &type_class, &bytes_per_token, &rank);
  std::vector<uint32_t> block(static_cast<size_t>(std::min(kVerifyBlockTokens, shard.tokens)));
  uint64_t checksum = kFnv1aOffsetBasis;
  for (int64_t first = 0; first < shard.tokens; first += kVerifyBlockTokens) {
    const int64_t count = std::min(kVerifyBlockTokens, shard.tokens - first);
    shard.file.read(kShardDataset, H5T_NATIVE_UINT32, first, count, block.data());
    check_tokens(shard, block.data(), count, first);
    checksum = fnv1a_tokens(checksum, block.data(), count, static_cast<int>(bytes_per_token));
  }
  if (checksum != entry.checksum)
    fail("'", entry.path, "': checksum mismatch (manifest ", checksum_to_hex(entry.checksum),
         ", data ", checksum_to_hex(checksum), "): the shard is damaged or changed since prepare");
}

void ShardedWindows::check_tokens(const OpenShard& shard, const uint32_t* tokens, int64_t count,
                                  int64_t first_position) const {
  // (The shard's own vocabulary too: a token past it is damage, even where the model's is
  // larger and would train on it.)
  for (int64_t i = 0; i < count; ++i) {
    if (tokens[i] >= static_cast<uint64_t>(model_vocab_))
      fail("'", shard.file.path(), "': token ", tokens[i], " at position ", first_position + i,
           " is >= model.vocab_size = ", model_vocab_,
           " (raise model.vocab_size or re-prepare the data)");
    if (tokens[i] >= static_cast<uint64_t>(manifest_vocab_))
      fail("'", shard.file.path(), "': token ", tokens[i], " at position ", first_position + i,
           " is >= the vocab_size ", manifest_vocab_, " of its manifest (damaged, or written by ",
           "another tokenizer?)");
  }
}

void ShardedWindows::read(int64_t index, int32_t* out) const {
  RF_CHECK(index >= 0 && index < num_windows_, "window ", index, " of ", num_windows_);
  // The last shard whose first window is <= index (shards without windows are skipped over).
  const auto after =
      std::upper_bound(shards_.begin(), shards_.end(), index,
                       [](int64_t i, const OpenShard& shard) { return i < shard.first_window; });
  const OpenShard& shard = *(after - 1);
  const int64_t first_token = (index - shard.first_window) * stride_;
  // int32_t and uint32_t may alias; tokens are < model_vocab <= INT32_MAX once checked.
  uint32_t* tokens = reinterpret_cast<uint32_t*>(out);
  shard.file.read(kShardDataset, H5T_NATIVE_UINT32, first_token, seq_len_ + 1, tokens);
  check_tokens(shard, tokens, seq_len_ + 1, first_token);
}

std::string ShardedWindows::describe() const {
  std::ostringstream s;
  s << "'" << manifest_path_ << "' " << split_ << " split (" << shards_.size() << " shard"
    << (shards_.size() == 1 ? "" : "s") << ", " << num_tokens_ << " tokens, " << num_windows_
    << " windows of " << seq_len_ + 1 << " tokens, stride " << stride_ << ")";
  return s.str();
}

}  // namespace rf
