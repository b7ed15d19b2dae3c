// `reformer prepare` (see prepare.h): plans the shards, streams inputs or generated windows into
// them block by block, and commits the result (renames, then the manifest) only when everything
// was written, removing its own files when anything fails.
#include "data/prepare.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "base/fnv1a.h"
#include "base/utf8.h"
#include "data/interrupt_cleanup.h"
#include "data/shards.h"
#include "data/synthetic_duplication.h"
#include "data/tokenizer.h"

namespace rf {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kReadBlockBytes = 16 << 20;       // input bytes read at a time
constexpr int64_t kSyntheticBlockTokens = 1 << 20;  // generated tokens buffered before a write
constexpr double kProgressEverySeconds = 2.0;

// --- options and inputs --------------------------------------------------------------------

void check_common_options(const PrepareOptions& o) {
  if (o.output_dir.empty()) fail("prepare: --output is required");
  if (o.shards < 1) fail("prepare: --shards must be at least 1, got ", o.shards);
  if (!(o.val_fraction > 0.0 && o.val_fraction <= 0.5))
    fail("prepare: --val-fraction must be in (0, 0.5], got ", o.val_fraction);
  if (!o.synthetic.empty() && !o.inputs.empty())
    fail("prepare: give either --input files or --synthetic, not both");
  if (o.synthetic.empty() && o.inputs.empty())
    fail("prepare: give --input files or --synthetic duplication");
  if (!o.synthetic.empty() && o.synthetic != kDuplicationTokenizer)
    fail("prepare: unknown --synthetic task '", o.synthetic, "' (known: duplication)");
  if (o.seq_len < 0) fail("prepare: --seq-len must be positive, got ", o.seq_len);
  // The same file twice, by any name (device and inode; one stat each, for globs of many files):
  // its shards could hold the same tokens, which training then refused, a manifest prepare wrote
  // that train would not read.
  std::map<std::pair<dev_t, ino_t>, const std::string*> seen;
  for (const std::string& input : o.inputs) {
    struct stat info;
    if (::stat(input.c_str(), &info) != 0) continue;  // (measure_inputs names a missing one)
    const auto [at, inserted] = seen.emplace(std::make_pair(info.st_dev, info.st_ino), &input);
    if (!inserted)
      fail("prepare: --input '", input, "' is '", *at->second,
           "' again: list each file once (shards of the same text are refused in training)");
  }
}

constexpr int64_t kMaxModelVocab = int64_t{1} << 24;  // model.vocab_size's maximum

void check_synthetic_options(const PrepareOptions& o) {
  if (o.seq_len < 4 || o.seq_len % 2 != 0)
    fail("prepare: the duplication task needs an even --seq-len >= 4, got ", o.seq_len);
  if (o.vocab_size < 3)
    fail("prepare: the duplication task needs --vocab-size >= 3, got ", o.vocab_size);
  if (o.vocab_size > kMaxModelVocab)
    fail("prepare: --vocab-size ", o.vocab_size, " is more than any model can read (",
         "model.vocab_size is at most ", kMaxModelVocab, ")");
  if (o.sequences < 1) fail("prepare: --sequences must be at least 1, got ", o.sequences);
  if (o.shards > o.sequences)
    fail("prepare: --shards ", o.shards, " is more than the ", o.sequences, " --sequences");
}

struct InputFile {
  std::string path;
  int64_t bytes;
};

// Sizes every input up front, so a missing one fails before anything is written.
std::vector<InputFile> measure_inputs(const std::vector<std::string>& paths) {
  std::vector<InputFile> inputs;
  for (const std::string& path : paths) {
    std::error_code error;
    if (!fs::exists(path, error)) fail("prepare: input '", path, "' does not exist");
    if (fs::is_directory(path, error)) fail("prepare: input '", path, "' is a directory");
    std::ifstream probe(path, std::ios::binary);
    if (!probe) fail("prepare: input '", path, "' cannot be read (permissions?)");
    const auto bytes = fs::file_size(path, error);
    if (error) fail("prepare: cannot get the size of input '", path, "': ", error.message());
    inputs.push_back({path, static_cast<int64_t>(bytes)});
  }
  return inputs;
}

// --- the plan ----------------------------------------------------------------------------

struct ShardPlan {
  std::string split;  // "train" | "val"
  std::string name;   // file name inside the output directory
  int64_t tokens;
};

std::string shard_name(const std::string& split, int64_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "%s-%05lld.h5", split.c_str(), static_cast<long long>(index));
  return name;
}

// Cuts `units` (bytes or windows) into `count` nearly equal parts of units * unit_tokens tokens.
void plan_split(const std::string& split, int64_t units, int64_t count, int64_t unit_tokens,
                std::vector<ShardPlan>& plans) {
  for (int64_t k = 0; k < count; ++k) {
    const int64_t begin = units * k / count, end = units * (k + 1) / count;
    plans.push_back({split, shard_name(split, k), (end - begin) * unit_tokens});
  }
}

std::vector<ShardPlan> plan_text_shards(int64_t total_bytes, const PrepareOptions& o) {
  if (total_bytes == 0) fail("prepare: the inputs are empty (0 bytes)");
  const int64_t window = o.seq_len > 0 ? o.seq_len + 1 : 2;  // tokens in the smallest window
  const auto val = static_cast<int64_t>(static_cast<double>(total_bytes) * o.val_fraction);
  const int64_t train = total_bytes - val;
  if (val < window)
    fail("prepare: the inputs hold ", total_bytes, " bytes; the validation tail (--val-fraction ",
         o.val_fraction, ") gets ", val, ", fewer than one window of ", window, " tokens");
  if (train / o.shards < window)
    fail("prepare: ", train, " training bytes are too few for ", o.shards,
         " shards: each needs at least one window of ", window, " tokens");
  std::vector<ShardPlan> plans;
  plan_split("train", train, o.shards, 1, plans);
  plan_split("val", val, 1, 1, plans);
  return plans;
}

int64_t synthetic_val_windows(const PrepareOptions& o) {
  return std::max<int64_t>(1,
                           static_cast<int64_t>(static_cast<double>(o.sequences) * o.val_fraction));
}

// --- output directory: temporary names, commit, cleanup -----------------------------------

// The files of one prepare. Shards are written under "<name>.partial" and renamed by commit(),
// which writes the manifest last; unless commit() completed, the destructor removes every file
// this prepare created (temporary or renamed), leaving the directory as it found it.
class StagedOutput {
 public:
  StagedOutput(const std::string& directory, const std::vector<ShardPlan>& plans,
               const std::vector<std::string>& other_files = {})
      : directory_(directory) {
    std::error_code error;
    // The directories this creates, deepest first: a failed prepare removes them again (empty).
    for (fs::path p = fs::absolute(directory_, error); !p.empty() && !fs::exists(p, error);
         p = p.parent_path())
      made_directories_.push_back(p);
    // (Registered shallowest first: a signal's clean-up removes newest first, files before the
    // folders that hold them.)
    for (auto it = made_directories_.rbegin(); it != made_directories_.rend(); ++it)
      remove_on_interrupt(it->string());
    fs::create_directories(directory_, error);
    if (!fs::is_directory(directory_))
      fail("prepare: cannot create the output directory '", directory, "'");
    if (fs::exists(directory_ / kManifestName))
      fail("prepare: '", (directory_ / kManifestName).string(),
           "' already exists; prepare overwrites nothing: choose another --output or remove it");
    std::vector<std::string> names = other_files;
    for (const ShardPlan& plan : plans) names.push_back(plan.name);
    for (const std::string& name : names)
      if (fs::exists(directory_ / name))
        fail("prepare: '", (directory_ / name).string(),
             "' already exists; prepare overwrites nothing: choose another --output or remove it");
  }
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  ~StagedOutput() {
    if (!committed_) {
      std::error_code ignored;
      for (const fs::path& path : created_) fs::remove(path, ignored);
      for (const fs::path& dir : made_directories_)  // (fs::remove leaves a non-empty one)
        if (fs::is_directory(dir, ignored) && fs::is_empty(dir, ignored)) fs::remove(dir, ignored);
    }
    for (const fs::path& path : created_) keep_on_interrupt(path.string());
    for (const fs::path& dir : made_directories_) keep_on_interrupt(dir.string());
  }

  std::string temp_path(const std::string& name) {
    created_.push_back(directory_ / (name + ".partial"));
    remove_on_interrupt(created_.back().string());
    return created_.back().string();
  }

  // Renames every shard to its final name, points the manifest at them and writes it.
  void commit(Manifest& manifest) {
    for (std::vector<ShardEntry>* split : {&manifest.train, &manifest.val})
      for (ShardEntry& entry : *split) entry.path = rename_to_final(entry.path);
    if (!manifest.tokenizer_model.empty())
      manifest.tokenizer_model = rename_to_final(manifest.tokenizer_model);
    write_manifest(manifest, (directory_ / kManifestName).string());
    committed_ = true;
  }

  std::string manifest_path() const { return (directory_ / kManifestName).string(); }

 private:
  std::string rename_to_final(const std::string& temp) {
    fs::path final_path = temp;
    final_path.replace_extension();  // drops ".partial"
    std::error_code error;
    remove_on_interrupt(final_path.string());  // (until the manifest is written)
    fs::rename(temp, final_path, error);
    if (error) fail("prepare: cannot rename '", temp, "' to '", final_path.string(), "'");
    created_.push_back(final_path);
    return final_path.string();
  }

  fs::path directory_;
  std::vector<fs::path> created_;
  std::vector<fs::path> made_directories_;  // by this, deepest first
  bool committed_ = false;
};

// --- progress ------------------------------------------------------------------------------

// A "done / total, rate, ETA" line at most every kProgressEverySeconds.
class ProgressMeter {
 public:
  ProgressMeter(std::ostream& out, int64_t total, std::string unit, double unit_scale)
      : out_(out), total_(total), unit_(std::move(unit)), scale_(unit_scale) {}

  void advance(int64_t count) {
    done_ += count;
    const double elapsed = seconds_since(start_);
    if (seconds_since(last_report_) < kProgressEverySeconds || done_ >= total_) return;
    last_report_ = Clock::now();
    const double rate = static_cast<double>(done_) / std::max(elapsed, 1e-9);
    const double eta = static_cast<double>(total_ - done_) / std::max(rate, 1e-9);
    const double done = static_cast<double>(done_), total = static_cast<double>(total_);
    char line[160];
    std::snprintf(line, sizeof(line), "prepare: %.1f / %.1f %s (%.0f%%), %.1f %s/s, ETA %.0f s",
                  done / scale_, total / scale_, unit_.c_str(), 100.0 * done / total, rate / scale_,
                  unit_.c_str(), eta);
    out_ << line << std::endl;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }
  std::ostream& out_;
  int64_t total_, done_ = 0;
  std::string unit_;
  double scale_;
  Clock::time_point start_ = Clock::now(), last_report_ = Clock::now();
};

// --- writing -------------------------------------------------------------------------------

// Routes a stream of tokens into the planned shards in order, opening each shard when its
// first token arrives and finishing it when its planned count is reached.
class ShardSequence {
 public:
  ShardSequence(const std::vector<ShardPlan>& plans, StagedOutput& output, int64_t vocab_size,
                std::string tokenizer, std::ostream& progress)
      : plans_(plans),
        output_(output),
        vocab_size_(vocab_size),
        tokenizer_(std::move(tokenizer)),
        progress_(progress) {}

  template <class Token>
  void feed(const Token* tokens, int64_t count) {
    while (count > 0) {
      RF_CHECK(next_ < plans_.size(), "more tokens than the plan holds");
      ShardWriter& writer = writer_ ? *writer_ : open_next();
      const int64_t take = std::min(count, left_in_shard_);
      writer.append(tokens, take);
      tokens += take;
      count -= take;
      left_in_shard_ -= take;
      if (left_in_shard_ == 0) finish_current();
    }
  }

  // The finished entries (temporary paths) of all planned shards, split by split.
  Manifest finished(Manifest base) const {
    RF_CHECK(next_ == plans_.size() && !writer_, "the plan was not written in full");
    base.sealed_shards = true;  // (ShardWriter::finish seals each)
    for (size_t i = 0; i < plans_.size(); ++i)
      (plans_[i].split == "train" ? base.train : base.val).push_back(entries_[i]);
    return base;
  }

 private:
  // The next planned shard's writer, opened.
  ShardWriter& open_next() {
    const ShardPlan& plan = plans_[next_];
    left_in_shard_ = plan.tokens;
    return writer_.emplace(output_.temp_path(plan.name), vocab_size_, tokenizer_, plan.split,
                           plan.tokens);
  }

  void finish_current() {
    RF_CHECK(writer_.has_value(), "no shard is being written");
    entries_.push_back(writer_->finish());
    writer_.reset();
    const ShardPlan& plan = plans_[next_++];
    progress_ << "prepare: wrote " << plan.split << " shard " << plan.name << " (" << plan.tokens
              << " tokens)" << std::endl;
  }

  const std::vector<ShardPlan>& plans_;
  StagedOutput& output_;
  int64_t vocab_size_;
  std::string tokenizer_;
  std::ostream& progress_;
  std::optional<ShardWriter> writer_;
  size_t next_ = 0;
  int64_t left_in_shard_ = 0;
  std::vector<ShardEntry> entries_;
};

void stream_input(const InputFile& input, std::vector<uint8_t>& block, ShardSequence& shards,
                  ProgressMeter& meter) {
  std::ifstream in(input.path, std::ios::binary);
  if (!in) fail("prepare: input '", input.path, "' cannot be read");
  for (int64_t left = input.bytes; left > 0;) {
    const int64_t want = std::min<int64_t>(left, static_cast<int64_t>(block.size()));
    in.read(reinterpret_cast<char*>(block.data()), want);
    if (in.gcount() != want)
      fail("prepare: reading input '", input.path, "' failed after ", input.bytes - left, " of ",
           input.bytes, " bytes (file changed or unreadable?)");
    shards.feed(block.data(), want);
    meter.advance(want);
    left -= want;
  }
}

std::string describe_inputs(const std::vector<InputFile>& inputs, int64_t total) {
  std::ostringstream s;
  s << "bytes of ";
  for (size_t i = 0; i < inputs.size(); ++i)
    s << (i ? ", " : "") << inputs[i].path << " (" << inputs[i].bytes << " bytes)";
  if (inputs.size() > 1) s << "; " << total << " bytes in all";
  return s.str();
}

void prepare_text(const PrepareOptions& o, std::ostream& progress) {
  const std::vector<InputFile> inputs = measure_inputs(o.inputs);
  int64_t total = 0;
  for (const InputFile& input : inputs) total += input.bytes;
  const std::vector<ShardPlan> plans = plan_text_shards(total, o);

  StagedOutput output(o.output_dir, plans);
  ShardSequence shards(plans, output, 256, kBytesTokenizer, progress);
  ProgressMeter meter(progress, total, "MiB", 1024.0 * 1024.0);
  std::vector<uint8_t> block(static_cast<size_t>(std::min(kReadBlockBytes, total)));
  for (const InputFile& input : inputs) stream_input(input, block, shards, meter);

  Manifest base;
  base.vocab_size = 256;
  base.tokenizer = kBytesTokenizer;
  base.source = describe_inputs(inputs, total);
  Manifest manifest = shards.finished(base);
  output.commit(manifest);
  progress << "prepare: wrote " << output.manifest_path() << " (" << total << " tokens)"
           << std::endl;
}

// --- SentencePiece text --------------------------------------------------------------------

constexpr const char* kTokenizerModelName = "tokenizer.model";

// The inputs' bytes back to back, read in order.
class ConcatenatedInputs {
 public:
  explicit ConcatenatedInputs(const std::vector<InputFile>& inputs) : inputs_(inputs) {}
  // Appends up to n bytes to `out`; returns how many.
  int64_t read(int64_t n, std::string& out) {
    int64_t got = 0;
    while (got < n && next_ <= inputs_.size()) {
      if (!in_.is_open() || in_.peek() == std::char_traits<char>::eof()) {
        if (next_ == inputs_.size()) break;
        in_.close();
        in_.clear();
        in_.open(inputs_[next_].path, std::ios::binary);
        if (!in_) fail("prepare: input '", inputs_[next_].path, "' cannot be read");
        ++next_;
        continue;
      }
      const size_t at = out.size();
      out.resize(at + static_cast<size_t>(n - got));
      in_.read(out.data() + at, n - got);
      out.resize(at + static_cast<size_t>(in_.gcount()));
      got += in_.gcount();
    }
    return got;
  }

 private:
  const std::vector<InputFile>& inputs_;
  std::ifstream in_;
  size_t next_ = 0;
};

// SentencePiece reads UTF-8: it would replace every byte that is not (binary data, Latin-1 text)
// with U+FFFD, three bytes, so that the shards no longer hold the input and bits per byte are
// understated. Each input is checked whole first, a block at a time.
void check_inputs_are_utf8(const std::vector<InputFile>& inputs) {
  for (const InputFile& input : inputs) {
    std::ifstream in(input.path, std::ios::binary);
    if (!in) fail("prepare: input '", input.path, "' cannot be read");
    std::string block;
    int64_t offset = 0;  // of block[0] in the file
    while (true) {
      const size_t carried = block.size();
      block.resize(carried + static_cast<size_t>(kReadBlockBytes));
      in.read(block.data() + carried, kReadBlockBytes);
      block.resize(carried + static_cast<size_t>(in.gcount()));
      const bool last = in.gcount() < kReadBlockBytes;
      // A sequence cut by the block's end is checked with the next block (a run of more
      // continuation bytes than a character has is invalid here already).
      size_t end = block.size();
      if (!last && block.size() - last_character_start(block) <= 4)
        end = last_character_start(block);
      const size_t bad = first_invalid_utf8(std::string_view(block).substr(0, end));
      if (bad != std::string::npos)
        fail("prepare: input '", input.path, "' is not UTF-8 text at byte ",
             offset + static_cast<int64_t>(bad),
             " (SentencePiece would replace it with U+FFFD, changing the data; --tokenizer bytes "
             "keeps any bytes)");
      // SentencePiece's mark for a space: a literal one came back as a space (the cut above
      // falls between characters, so the three bytes are never split).
      const size_t mark = std::string_view(block).substr(0, end).find(kSentencePieceSpaceMark);
      if (mark != std::string::npos)
        fail("prepare: input '", input.path, "' holds U+2581 ('", kSentencePieceSpaceMark,
             "') at byte ", offset + static_cast<int64_t>(mark),
             ", SentencePiece's mark for a space: it would come back as a space, changing the "
             "data; replace it, or use --tokenizer bytes");
      if (last) break;
      block.erase(0, end);
      offset += static_cast<int64_t>(end);
    }
  }
}

// Encodes the next `bytes` bytes of `inputs` in blocks cut after their last newline, appending
// the tokens (uint32) to `tokens`; returns how many.
// The first offset at or after `offset` of the inputs, read as one text, where a UTF-8 character
// starts (or the end). Each input is valid UTF-8 on its own, so their boundaries are such places.
int64_t next_character_boundary(const std::vector<InputFile>& inputs, int64_t offset) {
  int64_t file_start = 0;
  for (const InputFile& input : inputs) {
    if (offset >= file_start + input.bytes) {
      file_start += input.bytes;
      continue;
    }
    std::ifstream in(input.path, std::ios::binary);
    in.seekg(offset - file_start);
    char bytes[4] = {};
    in.read(bytes, sizeof bytes);
    if (!in && in.gcount() == 0) fail("prepare: input '", input.path, "' cannot be read");
    int64_t skip = 0;
    while (skip < in.gcount() && is_utf8_continuation(bytes[skip])) ++skip;
    return offset + skip;
  }
  return offset;
}

// A --tokenizer-model trained otherwise than prepare trains one (SentencePiece's defaults, as a
// Hugging Face spiece.model is: normalisation, extra whitespace removed, no byte fallback) gives
// back another text than the input: the shards hold its normalised text. That may be what its
// author meant, so it is said once, with the first byte that differs, not refused. (Prepare's own
// model gives back any UTF-8 text without U+2581, which check_inputs_are_utf8 refused.)
void note_what_the_model_changes(const Tokenizer& tokenizer, const std::string& text,
                                 const std::vector<uint32_t>& ids, int64_t offset, bool* noted,
                                 std::ostream& progress) {
  if (*noted) return;
  const std::string back = tokenizer.decode(std::vector<int32_t>(ids.begin(), ids.end()));
  if (back == text) return;
  *noted = true;
  size_t at = 0;
  while (at < text.size() && at < back.size() && text[at] == back[at]) ++at;
  progress << "note: --tokenizer-model does not give back the inputs exactly (first at byte "
           << offset + static_cast<int64_t>(at) << " of the inputs read as one text): the "
           << "shards hold its normalised text (a model trained with byte_fallback true, "
           << "normalization_rule_name identity, remove_extra_whitespaces false and "
           << "add_dummy_prefix false, as prepare trains one, gives back any UTF-8 text)"
           << std::endl;
}

// (round_trip: the progress stream for note_what_the_model_changes, or null where the model is
// prepare's own.)
int64_t encode_split(ConcatenatedInputs& inputs, int64_t bytes, const Tokenizer& tokenizer,
                     std::ofstream& tokens, ProgressMeter& meter, int64_t* offset, bool* noted,
                     std::ostream* round_trip) {
  int64_t count = 0;
  std::string text;
  while (bytes > 0 || !text.empty()) {
    const int64_t got = bytes > 0 ? inputs.read(std::min(bytes, kReadBlockBytes), text) : 0;
    if (bytes > 0 && got == 0) fail("prepare: the inputs ended early (changed while reading?)");
    bytes -= got;
    meter.advance(got);
    size_t cut = text.size();
    if (bytes > 0) {  // keep the last partial line for the next block, unless it is all there is
      const size_t newline = text.rfind('\n');
      // (Without a newline, at least the last character: the block's end may have cut it, and
      // each half alone would encode as U+FFFD.)
      cut = newline != std::string::npos ? newline + 1 : last_character_start(text);
    }
    const std::string part = text.substr(0, cut);
    const std::vector<uint32_t> ids = tokenizer.encode(part);
    if (round_trip) note_what_the_model_changes(tokenizer, part, ids, *offset, noted, *round_trip);
    *offset += static_cast<int64_t>(cut);
    tokens.write(reinterpret_cast<const char*>(ids.data()),
                 static_cast<std::streamsize>(ids.size() * sizeof(uint32_t)));
    if (!tokens) fail("prepare: cannot write the temporary token file (disk full?)");
    count += static_cast<int64_t>(ids.size());
    text.erase(0, cut);
  }
  return count;
}

Tokenizer sentencepiece_tokenizer(const PrepareOptions& o, std::ostream& progress) {
  if (o.tokenizer_model.empty()) {
    SentencePieceTraining training;
    training.inputs = o.inputs;
    training.vocab_size = o.vocab_size;
    training.model_type = o.model_type;
    return Tokenizer::train_sentencepiece(training, progress);
  }
  std::error_code ec;
  if (std::filesystem::is_directory(o.tokenizer_model, ec))  // (a stream "reads" it, then throws)
    fail("prepare: --tokenizer-model '", o.tokenizer_model, "' is a folder, not a model file");
  std::ifstream in(o.tokenizer_model, std::ios::binary);
  if (!in) fail("prepare: --tokenizer-model '", o.tokenizer_model, "' cannot be read");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Tokenizer t = Tokenizer::sentencepiece(bytes, "--tokenizer-model '" + o.tokenizer_model + "'");
  if (o.vocab_size > 0 && o.vocab_size != t.vocab_size())
    fail("prepare: --vocab-size ", o.vocab_size, " differs from the ", t.vocab_size(),
         " pieces of --tokenizer-model '", o.tokenizer_model, "'");
  return t;
}

void prepare_sentencepiece(const PrepareOptions& o, std::ostream& progress) {
  const std::vector<InputFile> inputs = measure_inputs(o.inputs);
  int64_t total = 0;
  for (const InputFile& input : inputs) total += input.bytes;
  if (total == 0) fail("prepare: the inputs are empty (0 bytes)");
  check_inputs_are_utf8(inputs);
  std::vector<ShardPlan> plans;  // token counts follow the encoding
  plan_split("train", 0, o.shards, 1, plans);
  plan_split("val", 0, 1, 1, plans);
  StagedOutput output(o.output_dir, plans, {kTokenizerModelName});
  const Tokenizer tokenizer = sentencepiece_tokenizer(o, progress);

  // The split falls between two characters: each part is encoded alone, and a character cut in
  // two would come back from both as U+FFFD.
  const int64_t train_bytes = next_character_boundary(
      inputs, total - static_cast<int64_t>(static_cast<double>(total) * o.val_fraction));
  const int64_t val_bytes = total - train_bytes;
  const std::string token_file = output.temp_path("tokens.u32");
  int64_t train_tokens = 0, val_tokens = 0;
  {
    std::ofstream tokens(token_file, std::ios::binary | std::ios::trunc);
    ConcatenatedInputs concatenated(inputs);
    ProgressMeter meter(progress, total, "MiB encoded", 1024.0 * 1024.0);
    int64_t offset = 0;
    bool noted = false;
    std::ostream* round_trip = o.tokenizer_model.empty() ? nullptr : &progress;
    train_tokens = encode_split(concatenated, train_bytes, tokenizer, tokens, meter, &offset,
                                &noted, round_trip);
    val_tokens = encode_split(concatenated, val_bytes, tokenizer, tokens, meter, &offset, &noted,
                              round_trip);
    tokens.close();
    if (!tokens) fail("prepare: cannot write the temporary token file (disk full?)");
  }
  const int64_t window = o.seq_len > 0 ? o.seq_len + 1 : 2;
  if (val_tokens < window || train_tokens / o.shards < window)
    fail("prepare: the inputs encode to ", train_tokens, " training and ", val_tokens,
         " validation tokens: each of ", o.shards, " training shards and the validation shard ",
         "needs at least one window of ", window, " tokens");
  plans.clear();
  plan_split("train", train_tokens, o.shards, 1, plans);
  plan_split("val", val_tokens, 1, 1, plans);

  ShardSequence shards(plans, output, tokenizer.vocab_size(), kSentencePieceTokenizer, progress);
  {
    std::ifstream tokens(token_file, std::ios::binary);
    std::vector<uint32_t> block(1 << 20);
    for (int64_t left = train_tokens + val_tokens; left > 0;) {
      const int64_t n = std::min<int64_t>(left, static_cast<int64_t>(block.size()));
      tokens.read(reinterpret_cast<char*>(block.data()),
                  static_cast<std::streamsize>(n * sizeof(uint32_t)));
      if (tokens.gcount() != static_cast<std::streamsize>(n * sizeof(uint32_t)))
        fail("prepare: cannot read back the temporary token file '", token_file, "'");
      shards.feed(block.data(), n);
      left -= n;
    }
  }
  std::error_code ignored;
  fs::remove(token_file, ignored);

  Manifest base;
  base.vocab_size = tokenizer.vocab_size();
  base.tokenizer = kSentencePieceTokenizer;
  base.tokenizer_model = output.temp_path(kTokenizerModelName);
  const std::string& model = tokenizer.serialized_model();
  base.tokenizer_model_checksum =
      fnv1a_bytes(kFnv1aOffsetBasis, reinterpret_cast<const uint8_t*>(model.data()),
                  static_cast<int64_t>(model.size()));
  {
    std::ofstream out(base.tokenizer_model, std::ios::binary | std::ios::trunc);
    out.write(model.data(), static_cast<std::streamsize>(model.size()));
    out.close();
    if (!out) fail("prepare: cannot write '", base.tokenizer_model, "'");
  }
  base.source = describe_inputs(inputs, total) + "; SentencePiece " +
                std::to_string(base.vocab_size) + " pieces";
  Manifest manifest = shards.finished(base);
  output.commit(manifest);
  progress << "prepare: wrote " << output.manifest_path() << " (" << train_tokens << " + "
           << val_tokens << " tokens of a " << base.vocab_size << "-piece SentencePiece model, "
           << static_cast<double>(total) / static_cast<double>(train_tokens + val_tokens)
           << " bytes per token)" << std::endl;
}

// Generates windows [0, count) of one stream into the shards, a block at a time.
void stream_synthetic(const SyntheticDuplication& source, int64_t count, ShardSequence& shards,
                      ProgressMeter& meter) {
  const int64_t length = source.window_length();
  const int64_t per_block = std::max<int64_t>(1, kSyntheticBlockTokens / length);
  std::vector<int32_t> block(static_cast<size_t>(std::min(per_block, count) * length));
  for (int64_t first = 0; first < count; first += per_block) {
    const int64_t windows = std::min(per_block, count - first);
    for (int64_t w = 0; w < windows; ++w) source.read(first + w, block.data() + w * length);
    // Generated tokens are in [0, vocab): the same bits as uint32 (int32/uint32 may alias).
    shards.feed(reinterpret_cast<const uint32_t*>(block.data()), windows * length);
    meter.advance(windows * length);
  }
}

void prepare_synthetic(const PrepareOptions& o, std::ostream& progress) {
  check_synthetic_options(o);
  const int64_t length = o.seq_len + 1, val_windows = synthetic_val_windows(o);
  std::vector<ShardPlan> plans;
  plan_split("train", o.sequences, o.shards, length, plans);
  plan_split("val", val_windows, 1, length, plans);

  StagedOutput output(o.output_dir, plans);
  ShardSequence shards(plans, output, o.vocab_size, kDuplicationTokenizer, progress);
  ProgressMeter meter(progress, (o.sequences + val_windows) * length, "M tokens", 1e6);
  const SyntheticDuplication train(o.seq_len, o.vocab_size, o.seed, false);
  const SyntheticDuplication val(o.seq_len, o.vocab_size, o.seed, true);
  stream_synthetic(train, o.sequences, shards, meter);
  stream_synthetic(val, val_windows, shards, meter);

  Manifest base;
  base.vocab_size = o.vocab_size;
  base.tokenizer = kDuplicationTokenizer;
  base.window_stride = length;
  std::ostringstream source;
  source << train.describe() << " and its validation stream; seed " << o.seed << ", " << o.sequences
         << " + " << val_windows << " windows";
  base.source = source.str();
  Manifest manifest = shards.finished(base);
  output.commit(manifest);
  progress << "prepare: wrote " << output.manifest_path() << " (" << o.sequences << " train + "
           << val_windows << " val windows of " << length << " tokens)" << std::endl;
}

}  // namespace

void prepare_shards(const PrepareOptions& options, std::ostream& progress) {
  check_common_options(options);
  if (options.tokenizer != "bytes" && options.tokenizer != kSentencePieceTokenizer)
    fail("prepare: --tokenizer must be bytes or sentencepiece, got '", options.tokenizer, "'");
  const bool sentencepiece =
      options.tokenizer == kSentencePieceTokenizer || !options.tokenizer_model.empty();
  if (sentencepiece && !options.synthetic.empty())
    fail("prepare: --tokenizer sentencepiece is for --input text, not --synthetic");
  if (!sentencepiece && options.synthetic.empty() && options.vocab_size > 0 &&
      options.vocab_size != 256)
    fail("prepare: --vocab-size ", options.vocab_size,
         " does not apply to byte tokens, which are always 256 (it sizes --tokenizer "
         "sentencepiece and --synthetic)");
  if (sentencepiece)
    prepare_sentencepiece(options, progress);
  else if (options.synthetic.empty())
    prepare_text(options, progress);
  else
    prepare_synthetic(options, progress);
}

}  // namespace rf
