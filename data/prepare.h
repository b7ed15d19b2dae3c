// `reformer prepare`: turns input files (bytes as tokens, vocabulary 256) or the paper's synthetic
// duplication task into HDF5 token shards plus a manifest (format: data/shards.h).
//
// Text/bytes: the inputs are concatenated in order; the last val_fraction of all bytes is the
// validation split (one shard), the rest is cut into `shards` nearly equal training shards.
// Inputs are streamed in 16 MiB blocks, never held whole. With a SentencePiece tokenizer each
// split is encoded in blocks cut after a newline, into a temporary token file, which is then cut
// into shards of uint16/uint32 tokens as above.
// Synthetic duplication: `sequences` training windows of seq_len + 1 tokens from the training
// stream and max(1, sequences * val_fraction) from the validation stream, stored back to back
// (manifest window_stride = seq_len + 1, so they read back exactly as generated).
//
// Safety: nothing existing is overwritten (a directory with a manifest.yaml, or with a file of a
// shard's name, is refused); shards are written under temporary names, renamed when all are
// complete, and the manifest is written last (temp + rename), so an interrupted or failed
// prepare never leaves a manifest pointing to partial shards; on an error every file this
// prepare created is removed.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace rf {

struct PrepareOptions {
  std::vector<std::string> inputs;  // text or binary files, tokenised as bytes (vocab 256)
  std::string output_dir;           // created if missing
  int64_t shards = 1;               // training shards (validation gets its own shard)
  double val_fraction = 0.1;        // in (0, 0.5]: tail of the inputs / share of sequences
  std::string synthetic;            // "" or "duplication"
  // Synthetic: windows to generate, their seq_len (even, >= 4) and vocabulary (>= 3).
  // Text: seq_len > 0 additionally requires every shard to hold one window of seq_len + 1.
  int64_t sequences = 0, seq_len = 0, vocab_size = 0;
  uint64_t seed = 1;  // synthetic only: the same seed as train.seed gives the trainer's stream
  // Text: "bytes" (vocabulary 256) or "sentencepiece": a model of vocab_size pieces trained on the
  // inputs (model_type unigram or bpe), or the model file tokenizer_model. The model is written
  // beside the shards as tokenizer.model and named in the manifest.
  std::string tokenizer = "bytes";
  std::string model_type = "unigram";
  std::string tokenizer_model;
};

// Writes the shards and `<output_dir>/manifest.yaml`; prints one line per shard and, for long
// inputs, a "done / total, rate, ETA" line at most every 2 s to `progress`. Throws rf::Error
// (one line) on bad options, unreadable or too small inputs, or an occupied output directory.
void prepare_shards(const PrepareOptions& options, std::ostream& progress);

}  // namespace rf
