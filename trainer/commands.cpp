#include "trainer/commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <sstream>

#include "base/launcher_env.h"
#include "base/utf8.h"
#include "comms/mpi_communicator.h"
#include "data/interrupt_cleanup.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "data/synthetic_duplication.h"
#include "data/tokenizer.h"
#include "trainer/batches.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/generate.h"
#include "trainer/hf_interop.h"
#include "trainer/job.h"
#include "trainer/memory_eval.h"
#include "trainer/metrics.h"
#include "trainer/progress.h"
#include "trainer/selftest.h"
#include "trainer/train_loop.h"
#include "trainer/version_report.h"

namespace rf {
namespace {

// `text` as a whole integer: all of it read (std::stoll alone stops where the digits do: "1x" read
// as 1) and within int64's range.
bool whole_int64(const std::string& text, int64_t* value) {
  size_t used = 0;
  try {
    *value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return false;  // not a number, or out of int64's range
  }
  return used > 0 && used == text.size();
}

// For options that name a file: an empty value was read as the option not given (`config
// --config ''` printed the key reference, eval used the checkpoint's own config, prepare
// --tokenizer-model '' wrote byte shards, import --config '' took the defaults).
CLI::Validator names_a_file() {
  return CLI::Validator(
      [](std::string& text) { return text.empty() ? std::string("must name a file") : ""; }, "");
}

// For integer options: CLI11's own PositiveNumber and NonNegativeNumber print their bounds as
// doubles ("Value 0 not in range 0.000000 to 17976931348623157...", 309 digits), and its plain
// parse clamped a seed of 10^23 to 2^64 - 1 and wrapped -1 there.
CLI::Validator integer_in(int64_t min, int64_t max = std::numeric_limits<int64_t>::max()) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        int64_t value = 0;
        if (!whole_int64(text, &value) || value < min || value > max)
          return "must be an integer " +
                 (max == std::numeric_limits<int64_t>::max()
                      ? ">= " + std::to_string(min)
                      : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]") +
                 ", not '" + text + "'";
        return "";
      },
      "");  // (the help shows INT already)
}

CLI::Validator integer_at_least(int64_t min) {
  return integer_in(min);
}

// For number options: a finite number in [lo, hi], or (lo, hi] with open_below (CLI11's Range
// let NaN through: every comparison with it is false).
CLI::Validator number_in(double lo, double hi, bool open_below = false) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        size_t used = 0;
        double value = 0.0;
        try {
          value = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        const bool above = open_below ? value > lo : value >= lo;
        if (used == 0 || used != text.size() || !(above && value <= hi)) {
          std::ostringstream range;
          range << (open_below ? "(" : "[") << lo << ", " << hi << "]";
          return "must be a number in " + range.str() + ", not '" + text + "'";
        }
        return "";
      },
      "");
}

struct Arguments {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  std::string checkpoint;
  bool json = false;
  std::string positions;
  std::string prompt;
  int64_t tokens = 200;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t seed = 1;
  int64_t stop_at_step = -1;
  bool no_report = false;
  std::vector<std::string> memory_lens;  // eval --memory-len: lengths, or auto
  bool sliding = false;                  // eval --sliding
  bool no_cache = false;                 // generate --no-cache
  bool lsh_cache = false;                // generate --lsh-cache
  int64_t generate_memory_len = -1;      // generate --memory-len (-1: the model's memory_len)
  int64_t segment = 0;                   // eval --segment
};

PositionRange parse_positions(const std::string& text) {
  PositionRange r;
  if (text.empty()) return r;
  const size_t colon = text.find(':');
  // A and B: decimal digits only (std::stoll alone read "1x:2" as 1:2 and "0x10:20" as 0:20).
  auto number = [&](const std::string& digits, int64_t* out) {
    if (digits.empty()) return true;
    if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos)
      return false;
    *out = std::stoll(digits);
    return true;
  };
  if (colon == std::string::npos || !number(text.substr(0, colon), &r.begin) ||
      !number(text.substr(colon + 1), &r.end))
    fail("--positions '", text, "' is not A:B (target positions A <= t < B; either may be empty)");
  if (r.begin < 0 || (r.end >= 0 && r.end <= r.begin))
    fail("--positions '", text, "' must satisfy 0 <= A < B");
  return r;
}

// Config for eval/generate: the given file, or the checkpoint's own config text.
Config config_for_checkpoint(const Arguments& a, const std::string& checkpoint) {
  if (!a.config.empty()) return load_config(a.config, a.overrides);
  return load_config_text(checkpoint_config_text(checkpoint), checkpoint + " (stored config)",
                          a.overrides);
}

int command_train(const Arguments& a) {
  install_stop_signal_handlers();  // first: SLURM may signal while the job is still starting
  // A run does not die with the program reading its log (`| tee` ends on the same Ctrl-C that
  // asks for a checkpoint): a failed write sets std::cout's error state, and the command ends
  // saying so (with_output_written); metrics.jsonl and the checkpoints hold the run.
  std::signal(SIGPIPE, SIG_IGN);
  const Config cfg = load_config(a.config, a.overrides);
  JobComms comms = make_host_comms(cfg.runtime);
  TrainOptions options;
  options.resume = a.resume;
  options.stop_at_step = a.stop_at_step;
  options.report = !a.no_report;
  TrainSummary summary;
  try {
    add_device_comms(comms, cfg.runtime);
    summary = run_training(cfg, options, comms);
  } catch (const AgreedError& e) {
    // Every rank has this error: rank 0 reports it and the job ends cleanly.
    if (comms.is_root()) std::cerr << "error: " << one_line(e.what()) << std::endl;
    return 1;
  } catch (const Error& e) {
    if (comms.host->size() == 1) throw;
    comms.host->abort(e.what());  // only this rank failed: end the whole job now
  }
  comms.close();  // finalises MPI: no rank waits in a collective during rank 0's report
  restore_default_interrupt();
  if (summary.report) summary.report(std::cout);
  if (!summary.stopped_by_signal) return 0;
  return interrupted() ? kExitInterrupted : kExitStoppedBySignal;
}

// Runs `use` on the checkpoint that --checkpoint names. A run directory's newest checkpoint may be
// pruned, by the run still training there, between choosing it and reading it (keep_checkpoints
// 1 and a short interval): when reading it failed because it is gone (the error names it and it
// no longer exists), the directory's new newest is used, up to three tries. Any other failure,
// one after the checkpoint was read among them, ends the command as it is.
template <typename Use>
int with_checkpoint(const std::string& argument, const Use& use) {
  std::error_code ec;
  const bool directory = std::filesystem::is_directory(argument, ec);
  for (int attempt = 1;; ++attempt) {
    const std::string path = resolve_checkpoint_path(argument);
    try {
      return use(path);
    } catch (const Error& e) {
      const bool pruned = directory && std::string(e.what()).find(path) != std::string::npos &&
                          !std::filesystem::exists(path, ec);
      if (!pruned || attempt == 3) throw;
    }
  }
}

// --memory-len values, each a comma-separated list: integers, or `auto` for 0, M, 2M and 4M of
// the training memory M. (Split here, not by CLI11, which drops empty items: "1,,2" read as 1,2,
// and ",," took the next argument as its value.)
std::vector<int64_t> memory_lengths(const std::vector<std::string>& arguments, int64_t trained) {
  std::vector<std::string> values;
  for (const std::string& argument : arguments) {
    std::istringstream items(argument + ",");  // (a trailing comma then leaves an empty item)
    std::string item;
    while (std::getline(items, item, ','))
      if (item.empty())
        fail("--memory-len '", argument, "' has an empty item; give lengths like 0,128,256");
      else
        values.push_back(item);
  }
  std::vector<int64_t> lengths;
  for (const std::string& v : values) {
    if (v == "auto") {
      if (trained == 0)
        fail(
            "--memory-len auto needs a model trained with memory (model.memory_len > 0); give "
            "the lengths, e.g. --memory-len 0,128,256");
      for (int64_t k : {0, 1, 2, 4}) lengths.push_back(k * trained);
      continue;
    }
    int64_t n = -1;
    if (!whole_int64(v, &n) || n < 0)
      fail("--memory-len '", v, "' is neither a length (an integer >= 0) nor auto");
    lengths.push_back(n);
  }
  return lengths;
}

// eval --memory-len: Transformer-XL's segment-by-segment evaluation with memory.
int eval_with_memory(const Arguments& a, const std::string& path) {
  std::vector<std::string> overrides = a.overrides;
  const Config stored = config_for_checkpoint(a, path);
  MemoryEvalOptions o;
  o.memory_lens = memory_lengths(a.memory_lens, stored.model.memory_len);
  o.segment = a.segment > 0 ? a.segment : stored.train.seq_len;
  o.json = a.json;
  o.sliding = a.sliding;
  // (Before the segment becomes train.seq_len: an axial model's shape then fits no other
  // length, and that was the error, not its positions.)
  const std::string problem = memory_eval_problem(stored, o);
  if (!problem.empty()) fail(problem);
  overrides.push_back("train.seq_len=" + std::to_string(o.segment));
  Arguments with_segment = a;
  with_segment.overrides = overrides;
  Config config;
  try {
    config = config_for_checkpoint(with_segment, path);
  } catch (const Error& e) {
    // `stored` loaded with the same overrides, so the segment is what the config refuses; name it
    // as the user gave it, not as the --set it became.
    const std::string about_segment = error_about_override(e.what(), overrides.back());
    fail("--segment ", o.segment,
         " (this evaluation's train.seq_len): ", about_segment.empty() ? e.what() : about_segment);
  }
  evaluate_memory_table(path, config, o, std::cout);
  return 0;
}

int command_eval_with_memory(const Arguments& a) {
  return with_checkpoint(a.checkpoint,
                         [&](const std::string& path) { return eval_with_memory(a, path); });
}

// eval of windows (no memory) of the checkpoint at `path`.
int eval_windows(const Arguments& a, const std::string& path) {
  const Config cfg = config_for_checkpoint(a, path);
  if (cfg.model.memory_len > 0 && a.positions.empty()) {
    // A model trained with recurrence is scored as its training validated it: segment by
    // segment with its memory (windows scored alone would lack the memory it relies on).
    Arguments with_memory = a;
    with_memory.memory_lens = {std::to_string(cfg.model.memory_len)};
    return eval_with_memory(with_memory, path);  // (the checkpoint whose config was read)
  }
  PositionRange positions = parse_positions(a.positions);
  if (positions.begin >= cfg.train.seq_len)
    fail("--positions: A = ", positions.begin, " is not below train.seq_len = ", cfg.train.seq_len);
  if (positions.end > cfg.train.seq_len)
    fail("--positions: B = ", positions.end, " is past train.seq_len = ", cfg.train.seq_len,
         " (leave B out for the window's end)");
  auto ex = make_rank_executor(cfg.runtime);
  ReformerModel model(cfg, *ex);
  const TrainingState state = load_checkpoint(path, model, nullptr);
  const DataSources data = open_data(cfg, cfg.data.verify_checksums);
  check_checkpoint_tokenizer(path, state.tokenizer_model, data, cfg);
  // The duplication task is scored where it is predictable, the second copy of w, as training's
  // validation scores it (all positions gave half its accuracy, unlike the training log's).
  const bool copy_task = data.task == DataTask::kDuplication && a.positions.empty();
  if (copy_task) positions = {SyntheticDuplication::copy_begin(cfg.train.seq_len), -1};
  const std::string scored =
      concat(positions.begin, ":", positions.end < 0 ? cfg.train.seq_len : positions.end);
  const bool lsh = cfg.any_layer_uses(AttentionKind::kLsh);  // (n_hashes means nothing without)
  // A model trained with a memory, scored here by --positions in windows alone: said (it was
  // not, and its figures read as the memory's).
  const bool without_its_memory = cfg.model.memory_len > 0;
  const std::vector<int32_t> token_bytes = text_bytes_per_token(data);  // (bits per byte)
  const int64_t windows =
      eval_window_count(*data.val, cfg.train.eval_batches, cfg.train.batch_size);
  ProgressClock clock(0, windows);
  const EvalResult r = evaluate(
      model, *data.val, windows, cfg.train.batch_size, positions,
      [&](int64_t done, int64_t total) {
        if (a.json) return;
        print_progress_line("eval", done, total, "windows", clock.elapsed_seconds(),
                            clock.average_eta_seconds(done, total));
      },
      nullptr, token_bytes);
  if (a.json) {
    JsonLine line;
    line.add("checkpoint", path)
        .add("step", state.step)
        .add("loss", r.loss)
        .add("bits_per_token", r.bits_per_token)
        .add("accuracy", r.accuracy)
        .add("tokens", r.tokens)
        .add("positions", scored);
    if (r.text_bytes > 0)
      line.add("bits_per_byte", r.bits_per_byte).add("text_bytes", r.text_bytes);
    if (lsh) line.add("n_hashes", cfg.lsh.n_hashes);
    if (without_its_memory) line.add("memory_len", int64_t{0});
    std::cout << line.str() << std::endl;
  } else {
    std::fprintf(stderr, "\n");
    const std::string hashes = lsh ? concat(", n_hashes ", cfg.lsh.n_hashes) : std::string();
    std::printf("%s (step %lld)%s: loss %.4f nats, %.4f bits/token, %s %.4f over %lld tokens",
                path.c_str(), static_cast<long long>(state.step), hashes.c_str(), r.loss,
                r.bits_per_token, copy_task ? "copy accuracy" : "accuracy", r.accuracy,
                static_cast<long long>(r.tokens));
    if (r.text_bytes > 0)
      std::printf(", %.4f bits/byte over %lld bytes", r.bits_per_byte,
                  static_cast<long long>(r.text_bytes));
    if (copy_task)
      std::printf(
          " (the second copy of w, positions %s, as training validates; --positions 0: "
          "for all)",
          scored.c_str());
    if (without_its_memory)
      std::printf(
          " (windows alone, positions %s, without the memory of %lld positions the model "
          "trained with: --positions scores windows; leave it out to score with the memory)",
          scored.c_str(), static_cast<long long>(cfg.model.memory_len));
    std::printf("\n");
  }
  return 0;
}

int command_eval(const Arguments& a) {
  if (!a.memory_lens.empty() && !a.positions.empty())
    fail("--positions goes without --memory-len (segments with a memory are scored whole)");
  if (!a.memory_lens.empty()) return command_eval_with_memory(a);
  if (a.segment > 0) fail("--segment goes with --memory-len");
  if (a.sliding) fail("--sliding goes with --memory-len");
  return with_checkpoint(a.checkpoint,
                         [&](const std::string& path) { return eval_windows(a, path); });
}

// How generation with a memory ran, for its line on stderr.
std::string memory_note(const GenerationStats& stats, const Config& cfg, bool no_cache) {
  const std::string how = stats.cached
                              ? "key/value cache"
                              : std::string("no cache (") +
                                    (no_cache ? "--no-cache" : "LSH layers have no exact one") +
                                    "): each token re-runs its segment so far,";
  return how + " with a memory of " + std::to_string(stats.memory_len) +
         " positions (Transformer-XL's recurrence: segments of " +
         std::to_string(cfg.train.seq_len) + ", each seeing the " +
         std::to_string(stats.memory_len) + " positions before it; --memory-len 0 for a window)";
}

// --prompt as token ids: whole numbers in [0, vocab) separated by spaces.
std::vector<int32_t> parse_token_ids(const std::string& text, int64_t vocab) {
  std::vector<int32_t> tokens;
  std::istringstream words(text);
  for (std::string word; words >> word;) {
    int64_t id = -1;
    if (!whole_int64(word, &id) || id < 0 || id >= vocab)
      fail("--prompt: '", word, "' is not a token id in [0, ", vocab,
           "); this model's tokens are not text (the synthetic task's, or past the 256 bytes "
           "without a SentencePiece model), so its prompt is token ids separated by spaces");
    tokens.push_back(static_cast<int32_t>(id));
  }
  return tokens;
}

int generate_from(const Arguments& a, const std::string& path) {
  const Config cfg = config_for_checkpoint(a, path);
  auto ex = make_rank_executor(cfg.runtime);
  ReformerModel model(cfg, *ex);
  const TrainingState state = load_checkpoint(path, model, nullptr);
  // The checkpoint's own SentencePiece model encodes the prompt and decodes the sample.
  const bool subwords = !state.tokenizer_model.empty();
  const Tokenizer tokenizer =
      subwords ? Tokenizer::sentencepiece(state.tokenizer_model, "the tokenizer of " + path)
               : Tokenizer::bytes();
  const size_t invalid = subwords ? first_invalid_utf8(a.prompt) : std::string::npos;
  if (invalid != std::string::npos)
    fail("--prompt is not UTF-8 text at byte ", invalid,
         " (this model's SentencePiece tokenizer reads UTF-8; it would replace the byte with "
         "U+FFFD)");
  // Tokens that are not text (the synthetic task's, or a vocabulary past the bytes without a
  // SentencePiece model) are given and printed as ids: the duplication task's printed as control
  // characters, and its prompt was read as bytes.
  // (A checkpoint records what its training tokens were; one from before 2026-12-08 does not,
  // and its config's data.format says it for the task generated on the fly, not from shards.)
  const bool ids = !subwords && (state.data_tokenizer == kDuplicationTokenizer ||
                                 cfg.data.format == DataFormat::kSynthetic ||
                                 cfg.model.vocab_size > kByteVocabulary);
  std::vector<int32_t> prompt;
  if (ids) {
    prompt = parse_token_ids(a.prompt, cfg.model.vocab_size);
  } else {
    for (uint32_t t : tokenizer.encode(a.prompt)) {
      if (static_cast<int64_t>(t) >= cfg.model.vocab_size)
        fail("--prompt has ", subwords ? "token " : "byte ", t,
             ", outside the model's vocabulary of ", cfg.model.vocab_size);
      prompt.push_back(static_cast<int32_t>(t));
    }
    // (U+2581, SentencePiece's mark for a space, came back as a space: the model saw another
    // prompt than the one given, and stdout did not start with it. A tokenizer that normalises
    // text, an imported spiece.model, changes prompts as its author meant: not refused.)
    const size_t mark = a.prompt.find(kSentencePieceSpaceMark);
    if (subwords && mark != std::string::npos)
      fail("--prompt holds U+2581 ('", kSentencePieceSpaceMark, "') at byte ", mark,
           ", SentencePiece's mark for a space: the model would read a space there");
  }
  SamplingOptions o;
  o.tokens = a.tokens;
  o.temperature = a.temperature;
  o.top_k = a.top_k;
  o.top_p = a.top_p;
  o.seed = static_cast<uint64_t>(a.seed);
  if (subwords) o.vocabulary = tokenizer.vocab_size();
  o.cache = !a.no_cache;
  o.lsh_cache = a.lsh_cache;
  // A model trained with memory generates with it unless it cannot or --lsh-cache asks for LSH
  // layers cached without one (then says why below).
  const bool has_lsh_layers = cfg.any_layer_uses(AttentionKind::kLsh);
  const std::string memory_problem = memory_generation_problem(
      cfg, a.generate_memory_len > 0 ? a.generate_memory_len : cfg.model.memory_len);
  if (a.generate_memory_len > 0) {
    if (!memory_problem.empty()) fail(memory_problem);
    // (generate() refuses --lsh-cache with it where there are LSH layers to cache.)
    o.memory_len = a.generate_memory_len;
  } else if (a.generate_memory_len < 0 && cfg.model.memory_len > 0 && memory_problem.empty() &&
             !(a.lsh_cache && has_lsh_layers)) {
    o.memory_len = cfg.model.memory_len;
  }
  // Progress on stderr (the sample goes to stdout) about twice a second, with an ETA from the
  // tokens after the first (whose time is the prompt's pass).
  ProgressClock clock(0, o.tokens);
  auto last_report = std::chrono::steady_clock::now();
  o.on_token = [&](int64_t done, int64_t total) {
    clock.step_done(done - 1, 1);  // (token `done` is step done - 1: the first is the warm-up)
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_report < std::chrono::milliseconds(500)) return;
    last_report = now;
    print_progress_line("generate:", done, total, "tokens", clock.elapsed_seconds(),
                        clock.eta_seconds(done - 1));
    if (done == total) clear_progress_line();
  };
  GenerationStats stats;
  std::vector<int32_t> out = generate(model, prompt, o, &stats);
  // Without a prompt generation starts from token 0, which is not the user's text (with bytes it
  // printed a NUL first): the sample alone is printed.
  if (prompt.empty() && !out.empty()) out.erase(out.begin());
  if (!ids) {  // text: the prompt and the sample
    std::cout << tokenizer.decode(out) << std::endl;
  } else {
    for (size_t i = 0; i < out.size(); ++i) std::cout << (i ? " " : "") << out[i];
    std::cout << std::endl;
  }
  // How it ran, on stderr so that the sample alone is on stdout (--lsh-cache is named only where
  // it changed something: a model with LSH layers).
  std::string how = stats.memory_len > 0 ? memory_note(stats, cfg, a.no_cache)
                    : stats.cached
                        ? (a.lsh_cache && has_lsh_layers
                               ? "key/value cache (--lsh-cache: LSH windows fixed as each token "
                                 "arrives, approximate past lsh.bucket_size tokens)"
                               : "key/value cache")
                    : a.no_cache ? "no cache (--no-cache): the window re-run per token"
                                 : "no cache (LSH layers; --lsh-cache caches them approximately): "
                                   "the window re-run per token";
  if (cfg.model.memory_len > 0 && stats.memory_len == 0 && a.generate_memory_len < 0)
    how += "; a window of train.seq_len, not the model's memory (" +
           (memory_problem.empty() ? std::string("--lsh-cache") : memory_problem) + ")";
  // (The first token's time is the prompt's pass; the rate is the tokens after it.)
  const double after_prompt = stats.seconds - stats.prompt_seconds;
  std::fprintf(stderr,
               "generate: %lld tokens in %.2f s (first token %.2f s with the prompt's %zu, then "
               "%.1f tokens/s), %s\n",
               static_cast<long long>(a.tokens), stats.seconds, stats.prompt_seconds, prompt.size(),
               after_prompt > 0 ? static_cast<double>(a.tokens - 1) / after_prompt : 0.0,
               how.c_str());
  return 0;
}

int command_generate(const Arguments& a) {
  return with_checkpoint(a.checkpoint,
                         [&](const std::string& path) { return generate_from(a, path); });
}

int command_prepare(const PrepareOptions& options) {
  start_interrupt_cleanup();  // (a Ctrl-C left the partial shards behind)
  prepare_shards(options, std::cout);
  return 0;
}

int command_config(const Arguments& a) {
  if (a.config.empty()) {
    if (!a.overrides.empty())  // (the reference lists defaults: an override would go unread)
      fail("--set ", a.overrides.front(),
           " needs --config (without it, config prints the "
           "reference of all keys)");
    std::cout << config_reference_yaml();
  } else {
    std::cout << load_config(a.config, a.overrides).source_text;
  }
  return 0;
}

// `status`, or a failure when what the command wrote to stdout did not all arrive (a full disk,
// /dev/full, a closed descriptor): a sample or a JSON result cut short must not exit 0. std::cout
// writes through stdout's buffer (synchronised with stdio), so one fflush flushes both; a write
// that failed earlier left std::cout's error state or stdout's error flag.
int with_output_written(int status) {
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  const int error = flush_failed ? errno : 0;
  if (!flush_failed && !std::cout.fail() && std::ferror(stdout) == 0) return status;
  std::cerr << "error: cannot write to standard output"
            << (error ? std::string(": ") + std::strerror(error) : std::string())
            << "; what the command printed is incomplete" << std::endl;
  return status == 0 ? 1 : status;
}

}  // namespace

int run_command_line(int argc, char** argv) {
  CLI::App app{
      "reformer: trains Reformer and Transformer-XL language models (reversible layers, LSH "
      "attention, segment-level recurrence, relative positions)"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", [] { return version_report(); },
      "print the commit this binary was built from and its libraries' versions");
  Arguments a;
  auto add_config = [&](CLI::App* sub, bool required) {
    auto* opt = sub->add_option("--config", a.config, "experiment YAML file");
    opt->check(names_a_file());
    if (required) opt->required();
    sub->add_option("--set", a.overrides, "override a key: section.key=value (value is YAML)");
  };
  CLI::App* train = app.add_subcommand("train", "train a model from an experiment file");
  add_config(train, true);
  train->add_option(
      "--resume", a.resume,
      "auto: continue from the newest intact checkpoint of train.out_dir, start fresh when it "
      "has none, stop with an error when all of them are damaged; auto-or-new: the same, but "
      "start over from step 0 even then (the damaged files are moved to checkpoints/damaged/, "
      "never deleted); or a checkpoint file or run directory");
  train
      ->add_option("--stop-at-step", a.stop_at_step,
                   "end with a checkpoint once this many steps are done (the schedule still "
                   "runs to train.steps; continue later with --resume auto)")
      ->check(integer_at_least(0));
  train->add_flag("--no-report", a.no_report,
                  "skip the end-of-run report of what the model learned (as train.report: false)");

  CLI::App* eval = app.add_subcommand("eval", "loss, bits per token and accuracy of a checkpoint");
  add_config(eval, false);
  eval->add_option("--checkpoint", a.checkpoint, "checkpoint file or run directory")->required();
  eval->add_flag("--json", a.json,
                 "print the result as one JSON object per line (one per --memory-len)");
  eval->add_option("--positions", a.positions, "score only target positions A <= t < B (A:B)");
  eval->add_option("--memory-len", a.memory_lens,
                   "Transformer-XL evaluation: consecutive segments, each seeing the memory of up "
                   "to M positions before it; several (0,64,128) give a table; auto: 0, M, 2M "
                   "and 4M of the training memory_len M");
  eval->add_option("--segment", a.segment, "tokens per segment with --memory-len")
      ->check(integer_at_least(1));
  eval->add_flag("--sliding", a.sliding,
                 "with --memory-len: recompute each segment with the M tokens before it instead "
                 "of keeping a memory (the sliding-window baseline, same attention length)");

  CLI::App* gen = app.add_subcommand("generate", "sample text from a checkpoint");
  add_config(gen, false);
  gen->add_option("--checkpoint", a.checkpoint, "checkpoint file or run directory")->required();
  gen->add_option("--prompt", a.prompt,
                  "text to continue (token ids separated by spaces where the model's tokens are "
                  "not text: the synthetic task's)");
  gen->add_option("--tokens", a.tokens, "tokens to generate")->check(integer_in(1, 1 << 20));
  gen->add_option("--temperature", a.temperature, "0 = greedy")->check(number_in(0.0, 100.0));
  gen->add_option("--top-k", a.top_k, "sample among the k most likely (0 = all)")
      ->check(integer_at_least(0));
  gen->add_option("--top-p", a.top_p,
                  "sample among the fewest most likely tokens holding this much of the "
                  "probability, after --top-k (nucleus sampling; 1 = no cut)")
      ->check(number_in(0.0, 1.0, true));
  gen->add_option("--seed", a.seed, "sampling seed")->check(integer_at_least(0));
  gen->add_option("--memory-len", a.generate_memory_len,
                  "Transformer-XL's recurrence: segments of train.seq_len, each seeing the M "
                  "positions before it through the cache, as eval --memory-len scores them, with "
                  "no window to restart (relative or no positions; LSH layers, which have no "
                  "exact cache, re-run the segment so far per token; default: the model's "
                  "model.memory_len; 0: a window of train.seq_len)")
      ->check(integer_at_least(0));
  gen->add_flag("--no-cache", a.no_cache,
                "re-run the whole window (with a memory: the segment so far) for every token "
                "instead of keeping each layer's keys and values (the same greedy tokens while "
                "the text fits the window)");
  gen->add_flag("--lsh-cache", a.lsh_cache,
                "cache LSH layers too, each token's hash chunks fixed when it arrives, as "
                "Hugging Face's Reformer caches them: approximate once the text is longer than "
                "lsh.bucket_size")
      ->excludes("--no-cache");

  PrepareOptions prep;
  CLI::App* prepare = app.add_subcommand(
      "prepare", "turn text/byte files or a synthetic task into HDF5 token shards + manifest");
  prepare->add_option("--input", prep.inputs,
                      "input files, joined in order (tokens: their bytes, or with --tokenizer "
                      "sentencepiece its pieces)");
  prepare->add_option("--output", prep.output_dir, "output directory (must not hold a manifest)")
      ->required();
  prepare->add_option("--shards", prep.shards, "training shards")->check(integer_at_least(1));
  prepare->add_option("--val-fraction", prep.val_fraction, "share held out for validation");
  prepare->add_option("--synthetic", prep.synthetic, "duplication: the paper's 0 w 0 w task");
  prepare->add_option("--sequences", prep.sequences, "synthetic: training sequences");
  prepare->add_option("--seq-len", prep.seq_len,
                      "train.seq_len: synthetic: each sequence's length; text: each shard must "
                      "hold a window of seq-len + 1 tokens");
  prepare->add_option("--vocab-size", prep.vocab_size,
                      "synthetic: vocabulary size; sentencepiece: pieces of the trained model");
  prepare->add_option("--tokenizer", prep.tokenizer, "text: bytes or sentencepiece")
      ->check(CLI::IsMember({"bytes", "sentencepiece"}));
  prepare->add_option("--model-type", prep.model_type, "sentencepiece: unigram or bpe")
      ->check(CLI::IsMember({"unigram", "bpe"}));
  prepare
      ->add_option("--tokenizer-model", prep.tokenizer_model,
                   "sentencepiece: use this model file instead of training one")
      ->check(names_a_file());
  prepare->add_option("--seed", prep.seed, "synthetic: seed (= train.seed)")
      ->check(integer_in(0, int64_t{1} << 62));  // train.seed's range

  std::string export_checkpoint, export_output, format;
  CLI::App* exporter = app.add_subcommand(
      "export", "write a checkpoint as a Hugging Face ReformerModelWithLMHead directory");
  exporter->add_option("--checkpoint", export_checkpoint, "checkpoint file or run directory")
      ->required();
  exporter->add_option("--format", format, "hf (config.json + model.safetensors)")
      ->required()
      ->check(CLI::IsMember({"hf"}));
  exporter->add_option("--output", export_output, "new directory (must not exist or be empty)")
      ->required();

  HfImportOptions import_options;
  CLI::App* importer = app.add_subcommand(
      "import", "turn a Hugging Face Reformer directory into a run directory of this program");
  importer->add_option("--format", format, "hf (config.json + model.safetensors)")
      ->required()
      ->check(CLI::IsMember({"hf"}));
  importer->add_option("--input", import_options.input_dir, "Hugging Face model directory")
      ->required();
  importer
      ->add_option("--output", import_options.output_dir,
                   "new run directory (config.yaml, checkpoints/; must not exist or be empty)")
      ->required();
  importer
      ->add_option("--config", import_options.base_config,
                   "experiment YAML for the sections other than the model (data, train, ...)")
      ->check(names_a_file());
  importer->add_option("--set", import_options.overrides, "override a key: section.key=value");

  CLI::App* cfg = app.add_subcommand(
      "config", "print the resolved config of --config (with --set), or the reference of all keys");
  add_config(cfg, false);

  SelftestOptions check;
  std::string check_device = "cpu", check_precision = "fp32";
  CLI::App* selftest = app.add_subcommand(
      "selftest", "every kernel op and a training micro-step against the CPU reference");
  selftest
      ->add_option("--device", check_device, "executor to check: cpu (its kernel variants) or cuda")
      ->check(CLI::IsMember({device_name(Device::kCpu), device_name(Device::kCuda)}));
  selftest->add_option("--precision", check_precision, "GEMM precision of the checked executor")
      ->check(
          CLI::IsMember({precision_name(GemmPrecision::kFp32), precision_name(GemmPrecision::kTf32),
                         precision_name(GemmPrecision::kBf16)}));
  selftest->add_flag("--json", check.json, "print one JSON object");
  selftest->add_flag("--quick", check.quick, "a few shapes per op");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the help text
    // One line, as every other error of this program (CLI11's own adds a second).
    std::string why = e.what();
    const std::vector<CLI::App*> commands = app.get_subcommands({});
    const bool names_a_command =
        argc > 1 && std::any_of(commands.begin(), commands.end(),
                                [&](const CLI::App* sub) { return sub->check_name(argv[1]); });
    if (argc == 1 || (argv[1][0] != '-' && !names_a_command)) {
      why = argc == 1 ? std::string("no command given")
                      : "unknown command '" + std::string(argv[1]) + "'";
      why += "; the commands are";
      for (const CLI::App* sub : commands) why += " " + sub->get_name();
    }
    std::cerr << "error: " << one_line(why) << " (--help lists the options)" << std::endl;
    return kExitUsage;  // (CLI11's own codes, 105 to 114, said nothing a script could use)
  }
  auto run_subcommand = [&]() -> int {
    if (train->parsed()) return command_train(a);
    // Under mpirun or srun every rank ran the whole command: N copies of eval's JSON and of
    // generate's sample, and export, import and prepare failed on all ranks but the first, whose
    // output then existed. Only rank 0 says so.
    if (launched_as_multi_rank_job() && !cfg->parsed()) {
      if (launcher_rank() != 0) return 1;
      const LauncherSize size = launcher_size();
      fail("reformer ", app.get_subcommands().front()->get_name(), " runs as one process, but ",
           "was started as one of ", size.ranks, " ranks (", size.variable, "=", size.ranks,
           "); run it without mpirun or srun: only train runs as a job of ranks");
    }
    if (eval->parsed()) return command_eval(a);
    if (gen->parsed()) return command_generate(a);
    if (cfg->parsed()) return command_config(a);
    if (prepare->parsed()) {
      // Options that contradict each other were resolved without a word (a model file made
      // SentencePiece shards under --tokenizer bytes; --model-type was ignored).
      const bool model_file = !prep.tokenizer_model.empty();
      if (prepare->count("--tokenizer") > 0 && prep.tokenizer == "bytes" && model_file)
        fail(
            "prepare: --tokenizer bytes and --tokenizer-model contradict each other (a model "
            "file means --tokenizer sentencepiece)");
      if (prepare->count("--model-type") > 0 && (model_file || prep.tokenizer != "sentencepiece"))
        fail("prepare: --model-type is the kind of model --tokenizer sentencepiece trains; ",
             model_file ? "--tokenizer-model's file has its own" : "byte tokens have none");
      // (Both were ignored without a word: every byte of the inputs was written.)
      for (const char* option : {"--sequences", "--seed"})
        if (prepare->count(option) > 0 && prep.synthetic.empty())
          fail("prepare: ", option, " is for --synthetic (the generated task)",
               prep.inputs.empty() ? "" : "; --input files are written whole");
      return command_prepare(prep);
    }
    if (exporter->parsed()) return export_hf(export_checkpoint, export_output, std::cout), 0;
    if (importer->parsed()) return import_hf(import_options, std::cout), 0;
    if (selftest->parsed()) {
      check.device = parse_device(check_device);
      check.precision = parse_precision(check_precision);
      return run_selftest(check, std::cout);
    }
    return 1;
  };
  try {
    return with_output_written(run_subcommand());
  } catch (const std::exception& e) {
    // Before the job's communicator exists every rank reports for itself.
    const std::string who =
        launched_as_multi_rank_job() ? "rank " + std::to_string(launcher_rank()) + ": " : "";
    std::cerr << "error: " << who << one_line(e.what()) << std::endl;
    return 1;
  }
  return 1;
}

}  // namespace rf
