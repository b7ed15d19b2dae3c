// HDF5 token shards and their manifest: the on-disk format written by `reformer prepare` and
// streamed by the trainer (data.format: hdf5), so corpora larger than memory can be trained on.
//
// Shard: one HDF5 file holding
//   tokens          1-D dataset [n_tokens] of unsigned integers: uint8 when vocab_size <= 256,
//                   uint16 when <= 65536, else uint32 (little-endian, chunked, Fletcher-32)
//   format_version  int attribute, 1
//   vocab_size      int attribute: every token is < vocab_size
//   tokenizer       string attribute, e.g. "bytes" or "duplication"
//   split           string attribute, "train" or "val"
// (Each attribute one value; strings fixed-length, as prepare writes them, or variable-length,
// as h5py writes a str.)
//
// Manifest: `manifest.yaml` next to the shards (written last by prepare, so a manifest never
// points to partial shards):
//   format_version: 1
//   vocab_size: 256
//   tokenizer: bytes
//   source: "bytes of corpus.txt (1115394 bytes)"     # human-readable provenance
//   window_stride: 0          # optional; 0 = windows overlap by one token (stride seq_len)
//   train:                    # in order; the global window index runs over them
//     - {file: train-00000.h5, tokens: 1003854, checksum: "9f3c2b1a0e4d5c6b"}
//   val:
//     - {file: val-00000.h5, tokens: 111540, checksum: "..."}
// `file` is relative to the manifest's directory; `checksum` is the 64-bit FNV-1a hash of the
// token values as little-endian bytes of the stored width, written as 16 hex digits.
//
// Windows: window i of a shard is tokens [i * stride, i * stride + seq_len + 1). With the
// default stride (seq_len) consecutive windows share one token, so every token of a window is a
// target once; windows never cross shards, so a shard's first token and the tokens after its
// last whole window (fewer than seq_len) are not.
// A nonzero window_stride (synthetic data stores independent windows back to back) must equal
// seq_len + 1: such shards can only be read with the seq_len they were prepared for.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/fnv1a.h"
#include "data/hdf5_io.h"
#include "data/window_source.h"

namespace rf {

inline constexpr int64_t kShardFormatVersion = 1;
inline constexpr const char* kShardDataset = "tokens";
inline constexpr const char* kManifestName = "manifest.yaml";
// The comment a manifest starts with (how a manifest given where text is expected is recognised).
inline constexpr const char* kManifestHeader =
    "Token shards written by `reformer prepare` (format: data/shards.h)";
// The tokenizer names `prepare` writes: bytes of text, and the synthetic duplication task.
inline constexpr const char* kBytesTokenizer = "bytes";
inline constexpr const char* kDuplicationTokenizer = "duplication";

// --- checksums ---------------------------------------------------------------------------------
// (FNV-1a, base/fnv1a.h, over the stored bytes.)
std::string checksum_to_hex(uint64_t checksum);  // 16 lowercase hex digits

// Stored width of a token for a vocabulary: 1, 2 or 4 bytes.
int bytes_per_token_for_vocab(int64_t vocab_size);

// --- manifest ----------------------------------------------------------------------------------
struct ShardEntry {
  std::string path;  // read_manifest: resolved against the manifest's directory
  int64_t tokens = 0;
  uint64_t checksum = 0;
};

struct Manifest {
  std::string path;  // of manifest.yaml itself
  int64_t format_version = kShardFormatVersion;
  int64_t vocab_size = 0;
  std::string tokenizer;
  // tokenizer "sentencepiece": the model file (resolved against the manifest's directory) and
  // the FNV-1a checksum of its bytes.
  std::string tokenizer_model;
  uint64_t tokenizer_model_checksum = 0;
  std::string source;         // provenance, informative only
  int64_t window_stride = 0;  // 0 = seq_len (overlapping text windows)
  // Every shard ends with a seal (data/file_seal.h), as `reformer prepare` writes them; then a
  // shard without one was replaced or cut short, and is refused before HDF5 parses it. False
  // (the key absent) for manifests of other tools or of versions before 2026-12-07.
  bool sealed_shards = false;
  std::vector<ShardEntry> train, val;
};

// Parses and checks a manifest; fails with one line naming the file on any problem.
Manifest read_manifest(const std::string& manifest_path);
// Fails with one line when a shard of train's train list is also one of val's val list (the same
// file, or a copy): data.val given as another manifest would score what data.train trains on.
void check_no_shard_in_both(const Manifest& train, const Manifest& val);
// Writes `manifest` to `manifest_path`; shard paths are written relative to its directory.
void write_manifest(const Manifest& manifest, const std::string& manifest_path);

// --- writing a shard ---------------------------------------------------------------------------
// Creates one shard file and fills it block by block (never holding it whole), hashing as it
// goes. `expected_tokens` only sizes the HDF5 chunks.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, int64_t vocab_size, const std::string& tokenizer,
              const std::string& split, int64_t expected_tokens);
  void append(const uint8_t* tokens, int64_t count);   // byte tokens (any vocabulary >= 256)
  void append(const uint32_t* tokens, int64_t count);  // each must be < vocab_size
  // Flushes and closes the file; returns its entry (path as given, count, checksum).
  ShardEntry finish();

 private:
  Hdf5File file_;
  std::string path_;
  int64_t vocab_size_;
  int bytes_per_token_;
  int64_t tokens_ = 0;
  uint64_t checksum_ = kFnv1aOffsetBasis;
};

// --- reading windows ---------------------------------------------------------------------------
// The windows of one split of a manifest. Window i of the split is found by prefix sums over
// the split's shards in manifest order; windows never cross shard boundaries. Every shard file
// stays open; read() reads exactly one window's hyperslab.
//
// Threads: read() is const and keeps no mutable state; it may run on a loader thread while the
// main thread does other work, including other HDF5 calls, when the HDF5 library is built
// thread-safe (it then serialises its calls; the trainer checks hdf5_is_thread_safe() and reads
// without a loader thread otherwise). Call read() from one thread at a time.
class ShardedWindows final : public WindowSource {
 public:
  // split: "train" or "val". model_vocab: the model's vocab_size; every token must be below it.
  // verify_checksums: check every shard's seal (data/file_seal.h), then stream it once and
  // compare with the manifest's checksum. Without, shards open unchecked (ranks other than 0).
  ShardedWindows(const Manifest& manifest, const std::string& split, int64_t seq_len,
                 int64_t model_vocab, bool verify_checksums);

  int64_t num_windows() const override { return num_windows_; }
  int64_t window_length() const override { return seq_len_ + 1; }
  void read(int64_t index, int32_t* out) const override;
  bool consecutive() const override { return stride_ == seq_len_; }
  std::string describe() const override;

  int64_t num_shards() const { return static_cast<int64_t>(shards_.size()); }
  int64_t num_tokens() const { return num_tokens_; }

 private:
  struct OpenShard {
    Hdf5File file;
    int64_t tokens;
    int64_t first_window;  // global index of this shard's window 0
    int64_t windows;
  };
  OpenShard open_shard(const ShardEntry& entry, bool verify_checksum) const;
  void verify_shard(const OpenShard& shard, const ShardEntry& entry) const;
  void check_tokens(const OpenShard& shard, const uint32_t* tokens, int64_t count,
                    int64_t first_position) const;

  std::string manifest_path_, split_;
  int64_t seq_len_, stride_, model_vocab_, manifest_vocab_;
  std::vector<OpenShard> shards_;
  int64_t num_tokens_ = 0, num_windows_ = 0;
};

}  // namespace rf
