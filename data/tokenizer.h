// The tokenizers of text corpora: bytes (token = byte, vocabulary 256) and SentencePiece models
// (Debian's libsentencepiece; unigram or BPE), trained here by `reformer prepare --tokenizer
// sentencepiece` or given as a model file. A SentencePiece model travels as its serialized bytes:
// beside the shards (tokenizer.model), in every checkpoint, and as spiece.model in a Hugging Face
// export, so a checkpoint alone encodes prompts and decodes samples.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace rf {

inline constexpr const char* kSentencePieceTokenizer = "sentencepiece";
inline constexpr int64_t kByteVocabulary = 256;  // the byte tokenizer's: every byte a token
// U+2581, SentencePiece's mark for a space: text holding it comes back with a space there.
inline constexpr const char* kSentencePieceSpaceMark = "\xE2\x96\x81";

struct SentencePieceTraining {
  std::vector<std::string> inputs;  // text files, read in order
  int64_t vocab_size = 0;
  std::string model_type = "unigram";      // or "bpe"
  int64_t max_bytes = int64_t{256} << 20;  // the training text is at most this much of the inputs
};

class Tokenizer {
 public:
  // The model file a manifest names, checked against the manifest's checksum of its bytes.
  static Tokenizer from_model_file(const std::string& path, uint64_t expected_checksum,
                                   const std::string& where);
  static Tokenizer bytes();
  // A SentencePiece model from its serialized bytes; `where` names them in errors.
  static Tokenizer sentencepiece(const std::string& serialized_model, const std::string& where);
  // Trains a model on the inputs' lines. Its pieces decode to exactly the text they encode: every
  // byte is representable (byte fallback), whitespace is kept as is and a newline is a piece.
  static Tokenizer train_sentencepiece(const SentencePieceTraining& options,
                                       std::ostream& progress);

  bool is_sentencepiece() const { return sp_ != nullptr; }
  const char* name() const;  // "bytes" or "sentencepiece"
  int64_t vocab_size() const;
  std::vector<uint32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  // Bytes of text each token id stands for (0 for control pieces), for bits per byte.
  const std::vector<int32_t>& token_bytes() const { return token_bytes_; }
  // The model's serialized bytes ("" for bytes).
  const std::string& serialized_model() const { return serialized_; }

 private:
  std::shared_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string serialized_;
  std::vector<int32_t> token_bytes_;
};

}  // namespace rf
