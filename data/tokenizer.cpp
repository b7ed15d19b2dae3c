#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fnv1a.h"

namespace rf {
namespace {

// Lines of the training inputs, in order, up to a byte budget.
class InputLines : public sentencepiece::SentenceIterator {
 public:
  InputLines(const std::vector<std::string>& paths, int64_t max_bytes)
      : paths_(paths), left_(max_bytes) {
    advance();
  }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }
  int64_t bytes_read() const { return read_; }

 private:
  void advance() {
    while (true) {
      if (left_ <= 0) break;
      if (in_.is_open() && std::getline(in_, line_)) {
        // (+1 for the newline getline took, unless the file ended without one)
        const int64_t n = static_cast<int64_t>(line_.size()) + (in_.eof() ? 0 : 1);
        left_ -= n;
        read_ += n;
        return;
      }
      if (next_ >= paths_.size()) break;
      in_.close();
      in_.clear();
      in_.open(paths_[next_]);
      if (!in_) fail("prepare: cannot read '", paths_[next_], "' to train the tokenizer");
      ++next_;
    }
    done_ = true;
  }
  const std::vector<std::string>& paths_;
  std::ifstream in_;
  size_t next_ = 0;
  std::string line_;
  int64_t left_, read_ = 0;
  bool done_ = false;
};

// "▁" (U+2581), SentencePiece's visible space.

std::vector<int32_t> piece_bytes(const sentencepiece::SentencePieceProcessor& sp) {
  std::vector<int32_t> bytes(static_cast<size_t>(sp.GetPieceSize()));
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    if (sp.IsControl(id) || sp.IsUnknown(id)) continue;
    if (sp.IsByte(id)) {
      bytes[static_cast<size_t>(id)] = 1;
      continue;
    }
    const std::string& piece = sp.IdToPiece(id);
    int32_t n = 0;
    for (size_t i = 0; i < piece.size(); ++n)
      i += piece.compare(i, 3, kSentencePieceSpaceMark) == 0 ? 3
                                                             : 1;  // the mark stands for one space
    bytes[static_cast<size_t>(id)] = n;
  }
  return bytes;
}

}  // namespace

Tokenizer Tokenizer::from_model_file(const std::string& path, uint64_t expected_checksum,
                                     const std::string& where) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))  // (a stream "reads" it, then throws)
    fail(where, ": the tokenizer model '", path, "' is a folder, not a model file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(where, ": cannot read the tokenizer model '", path, "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const uint64_t checksum =
      fnv1a_bytes(kFnv1aOffsetBasis, reinterpret_cast<const uint8_t*>(bytes.data()),
                  static_cast<int64_t>(bytes.size()));
  if (checksum != expected_checksum)
    fail(where, ": the tokenizer model '", path, "' does not match its checksum (changed or ",
         "damaged since prepare)");
  return sentencepiece(bytes, "'" + path + "'");
}

namespace {

// SentencePiece's status without the source location it leads with ("Internal:
// ./src/trainer_interface.cc(660) [check] Vocabulary size too high ..."): what follows it, or ""
// where nothing does.
std::string sentencepiece_reason(const sentencepiece::util::Status& status) {
  const std::string text = status.message();
  const size_t check_end = text.rfind("] ");
  const std::string reason = text.find('[') != std::string::npos && check_end != std::string::npos
                                 ? text.substr(check_end + 2)
                                 : text;
  return reason.find_first_not_of(" \n") == std::string::npos ? "" : reason;
}

}  // namespace

Tokenizer Tokenizer::bytes() {
  Tokenizer t;
  t.token_bytes_.assign(256, 1);
  return t;
}

Tokenizer Tokenizer::sentencepiece(const std::string& serialized_model, const std::string& where) {
  Tokenizer t;
  t.sp_ = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = t.sp_->LoadFromSerializedProto(serialized_model);
  if (!status.ok()) {
    const std::string reason = sentencepiece_reason(status);
    fail(where, " is not a SentencePiece model", reason.empty() ? "" : " (" + reason + ")");
  }
  t.serialized_ = serialized_model;
  t.token_bytes_ = piece_bytes(*t.sp_);
  return t;
}

Tokenizer Tokenizer::train_sentencepiece(const SentencePieceTraining& o, std::ostream& progress) {
  if (o.model_type != "unigram" && o.model_type != "bpe")
    fail("prepare: --model-type must be unigram or bpe, got '", o.model_type, "'");
  if (o.vocab_size == 0)
    fail(
        "prepare: --tokenizer sentencepiece needs --vocab-size, the pieces of the model to "
        "train (260 to 1048576), or --tokenizer-model FILE");
  if (o.vocab_size < 260 || o.vocab_size > (int64_t{1} << 20))
    fail("prepare: --vocab-size for sentencepiece must be in [260, 1048576] (256 byte pieces, ",
         "<unk>, <s>, </s> and the newline come first), got ", o.vocab_size);
  InputLines lines(o.inputs, o.max_bytes);
  progress << "prepare: training a " << o.vocab_size << "-piece SentencePiece " << o.model_type
           << " model ..." << std::endl;
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      {{"vocab_size", std::to_string(o.vocab_size)},
       {"model_type", o.model_type},
       {"byte_fallback", "true"},  // every byte encodes: decode(encode(text)) == text
       {"character_coverage", "1.0"},
       {"normalization_rule_name", "identity"},
       {"remove_extra_whitespaces", "false"},
       {"add_dummy_prefix", "false"},
       {"user_defined_symbols", "\n"},  // lines are trained apart; the newline is its own piece
       {"max_sentence_length", "1000000"},
       {"num_threads", "2"},
       {"minloglevel", "2"}},
      &lines, &model);
  if (!status.ok()) {
    // (Its own wording, "... 300 vs 320. Increase vocab_size or decrease character_coverage with
    // --character_coverage option.", named an option this program does not have.)
    const std::string reason = sentencepiece_reason(status);
    const std::string too_small = "Vocabulary size is smaller than required_chars. ";
    const size_t at = reason.find(too_small);
    if (at != std::string::npos) {
      const size_t from = at + too_small.size();
      const std::string counts = reason.substr(from, reason.find('.', from) - from);  // 300 vs 320
      const size_t vs = counts.find(" vs ");
      fail("prepare: --vocab-size ", o.vocab_size, " is too small for this text: its characters ",
           "and the byte pieces need at least ",
           vs == std::string::npos ? counts : counts.substr(vs + 4), " pieces");
    }
    fail("prepare: training the SentencePiece model failed: ", reason);
  }
  progress << "prepare: trained the tokenizer on " << lines.bytes_read() << " bytes" << std::endl;
  return sentencepiece(model, "the trained tokenizer");
}

const char* Tokenizer::name() const {
  return sp_ ? kSentencePieceTokenizer : "bytes";
}

int64_t Tokenizer::vocab_size() const {
  return sp_ ? sp_->GetPieceSize() : 256;
}

std::vector<uint32_t> Tokenizer::encode(const std::string& text) const {
  if (!sp_) {
    std::vector<uint32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail("cannot encode text with the SentencePiece model: ", status.ToString());
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  if (!sp_) {
    std::string text;
    for (int32_t id : ids) text += static_cast<char>(static_cast<unsigned char>(id));
    return text;
  }
  std::string text;
  const auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) fail("cannot decode tokens with the SentencePiece model: ", status.ToString());
  return text;
}

}  // namespace rf
