#include "trainer/hf_interop.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/safetensors.h"
#include "trainer/checkpoint.h"
#include "trainer/hf_config.h"
#include "trainer/hf_weights.h"
#include "trainer/optimizer.h"

namespace rf {
namespace fs = std::filesystem;
namespace {

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail("'", path, "' is a folder, not a file");  // (read as empty)
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail("cannot write '", path, "' (disk full?)");
}

// A directory written under a temporary sibling name and renamed to its final name when done;
// removed if it is abandoned (an error on the way).
class StagedDirectory {
 public:
  explicit StagedDirectory(const std::string& final_path) : final_(final_path) {
    // "out/" names out: staged beside it as .out.partial-PID (it was staged inside, and the
    // rename onto "out/" failed, leaving out/ behind).
    while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
    if (final_.empty() || final_ == "/" || fs::path(final_).filename() == "." ||
        fs::path(final_).filename() == "..")
      fail("--output '", final_path, "' does not name a new directory");
    std::error_code ec;
    if (fs::exists(final_, ec) && !(fs::is_directory(final_, ec) && fs::is_empty(final_, ec)))
      fail("'", final_, "' exists and is not an empty directory (nothing was written)");
    const fs::path target(final_);
    staging_ = (target.parent_path() /
                ("." + target.filename().string() + ".partial-" + std::to_string(getpid())))
                   .string();
    fs::remove_all(staging_, ec);
    fs::create_directories(staging_, ec);
    if (ec) fail("cannot create '", staging_, "': ", ec.message());
  }
  ~StagedDirectory() {
    std::error_code ec;
    if (!done_) fs::remove_all(staging_, ec);
  }
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  std::string path(const std::string& name) const { return (fs::path(staging_) / name).string(); }
  const std::string& staging() const { return staging_; }
  void commit() {
    std::error_code ec;
    if (fs::is_directory(final_, ec)) fs::remove(final_, ec);  // empty (checked above)
    fs::rename(staging_, final_, ec);
    if (ec) fail("cannot rename '", staging_, "' to '", final_, "': ", ec.message());
    done_ = true;
  }

 private:
  std::string final_, staging_;
  bool done_ = false;
};

std::vector<float> host_params(ReformerModel& model) {
  ParamStore& p = model.params();
  std::vector<float> host(p.size());
  model.executor().download(host.data(), p.params(), host.size() * sizeof(float));
  return host;
}

}  // namespace

void export_hf(const std::string& checkpoint, const std::string& output_dir, std::ostream& log) {
  const std::string path = resolve_checkpoint_path(checkpoint);
  Config cfg = load_config_text(checkpoint_config_text(path), path + " (stored config)", {});
  const std::string config_json = hf_config_json(cfg);  // (fails before anything is written)
  cfg.runtime.device = Device::kCpu;  // exports run where the checkpoint is, GPU or not
  auto ex = make_cpu_executor(0);
  ReformerModel model(cfg, *ex);
  const TrainingState state = load_checkpoint(path, model, nullptr);
  const std::vector<NamedTensor> tensors = hf_tensors(model.params(), host_params(model));
  StagedDirectory out(output_dir);
  write_text_file(out.path("config.json"), config_json);
  // transformers reads only safetensors files whose metadata names their framework.
  write_safetensors(out.path("model.safetensors"), tensors, {{"format", "pt"}});
  if (!state.tokenizer_model.empty()) {  // ReformerTokenizer's file, and AutoTokenizer's pointer
    write_text_file(out.path("spiece.model"), state.tokenizer_model);
    write_text_file(out.path("tokenizer_config.json"), hf_tokenizer_config_json(cfg));
  }
  out.commit();
  log << "exported " << path << " (step " << state.step << ", " << model.params().size()
      << " parameters, " << tensors.size() << " tensors"
      << (state.tokenizer_model.empty() ? "" : ", SentencePiece tokenizer") << ") to " << output_dir
      << ": transformers.ReformerModelWithLMHead.from_pretrained(\"" << output_dir
      << "\") loads it\n";
}

namespace {

// An error of loading an import's config, said of what caused it: "" where config loading words
// it right (the user's own --set, or a line of the user's --config file), else the message for a
// value config.json gave, which came as a --set the user never typed. A check across keys names
// the file it loaded or the --set of the key it is about; when config.json's values alone do not
// fit (a hidden_size it lacks, and its axial dims) it is config.json's fault, when they do the
// --config file's.
std::string import_config_error(const std::string& m, const HfImportOptions& options,
                                const std::vector<std::string>& from_hf,
                                const std::string& config_path) {
  for (const std::string& o : options.overrides)
    if (!error_about_override(m, o).empty() || m.rfind("malformed override '" + o + "'", 0) == 0)
      return "";
  const std::string& base = options.base_config;
  // ("FILE:LINE: ..." or "FILE:LINE:COLUMN: ...": a key, a value or the YAML of that file)
  if (!base.empty() && m.rfind(base + ":", 0) == 0 && m.compare(base.size(), 2, ": ") != 0)
    return "";
  const auto hf_alone_fits = [&] {
    try {
      load_config_text("", config_path, from_hf);
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  for (const std::string& o : from_hf) {
    const std::string why = error_about_override(m, o);
    if (why.empty()) continue;
    if (m.rfind("--set " + o + ": ", 0) == 0)
      return concat(config_path, " gives ", o, ": ", why);  // (a check of that key alone)
    if (!base.empty() && hf_alone_fits())
      return concat(config_path, " gives ", o, ", which does not fit ", base, ": ", why);
    return concat("the model of ", config_path, " does not fit: ", why);
  }
  const std::string loaded = base.empty() ? config_path : base;
  if (m.rfind(loaded + ": ", 0) != 0)
    return concat("the model of ", config_path, " does not fit: ", m);
  if (!base.empty() && hf_alone_fits()) return "";
  return concat("the model of ", config_path, " does not fit: ", m.substr(loaded.size() + 2));
}

// The settings that decide the function an imported model's weights compute: --set or the
// --config file may change how the model trains, not what config.json makes of its weights.
// Some also change a tensor's shape (the positions, the residual streams), which the weights'
// reading would refuse too, but blaming config.json and its tensors. The attention's chunking and
// hashing count only where a layer of that kind is; buckets as the hashing factors them.
void refuse_another_function(const Config& cfg, const std::vector<std::string>& from_hf,
                             const std::string& config_path) {
  Config hf;
  try {
    hf = load_config_text("", config_path, from_hf);
  } catch (const Error&) {
    return;  // (config.json's values fit only with the --config file's: nothing to compare)
  }
  const auto layers = [](const Config& c) {
    std::string kinds = "[";
    for (int64_t i = 0; i < c.model.n_layers; ++i)
      kinds += concat(i ? ", " : "", attention_name(c.attention_of_layer(i)));
    return kinds + "]";
  };
  struct Setting {
    const char* key;
    std::string given, asked;
  };
  std::vector<Setting> settings = {
      {"model.activation", activation_name(hf.model.activation),
       activation_name(cfg.model.activation)},
      {"model.attention", layers(hf), layers(cfg)},
      {"model.position", position_name(hf.model.position), position_name(cfg.model.position)},
      {"model.residual", residual_name(hf.model.residual), residual_name(cfg.model.residual)}};
  if (hf.model.position == PositionMode::kAxial && cfg.model.position == PositionMode::kAxial) {
    settings.push_back({"model.axial_shape", int_list_text(hf.model.axial_shape),
                        int_list_text(cfg.model.axial_shape)});
    settings.push_back(
        {"model.axial_dims", int_list_text(hf.axial_dims()), int_list_text(cfg.axial_dims())});
  }
  if (hf.any_layer_uses(AttentionKind::kLocal))
    settings.push_back(
        {"lsh.local_chunk", concat(hf.lsh.local_chunk), concat(cfg.lsh.local_chunk)});
  if (hf.any_layer_uses(AttentionKind::kLsh)) {
    settings.push_back(
        {"lsh.bucket_size", concat(hf.lsh.bucket_size), concat(cfg.lsh.bucket_size)});
    settings.push_back({"lsh.n_hashes", concat(hf.lsh.n_hashes), concat(cfg.lsh.n_hashes)});
    settings.push_back({"lsh.n_buckets (as hashed)", int_list_text(hf.bucket_factors()),
                        int_list_text(cfg.bucket_factors())});
  }
  for (const Setting& s : settings)
    if (s.given != s.asked)
      fail(config_path, " makes ", s.key, " ", s.given, "; ", s.asked,
           " would compute another function of its weights (import the model as it is, then ",
           "change that where you train or evaluate it)");
}

}  // namespace

void import_hf(const HfImportOptions& options, std::ostream& log) {
  const fs::path in(options.input_dir);
  const std::string config_path = (in / "config.json").string();
  const std::string weights_path = (in / "model.safetensors").string();
  std::error_code ec;
  if (!fs::is_regular_file(config_path, ec))
    fail("'", options.input_dir, "' has no config.json (not a Hugging Face model directory)");
  if (!fs::is_regular_file(weights_path, ec))
    fail("'", options.input_dir, "' has no model.safetensors",
         fs::exists(in / "pytorch_model.bin", ec) ? " (only pytorch_model.bin: save it with "
                                                    "save_pretrained(DIR, safe_serialization=True))"
                                                  : "");
  const std::vector<std::string> from_hf =
      overrides_from_hf_config(read_text_file(config_path), config_path, log);
  std::vector<std::string> overrides = from_hf;  // then out_dir, then the user's
  overrides.push_back("train.out_dir=" + options.output_dir);
  overrides.insert(overrides.end(), options.overrides.begin(), options.overrides.end());
  const std::string base = options.base_config.empty() ? "" : read_text_file(options.base_config);
  Config cfg;
  try {
    cfg = load_config_text(base, options.base_config.empty() ? config_path : options.base_config,
                           overrides);
  } catch (const Error& e) {
    const std::string said = import_config_error(e.what(), options, from_hf, config_path);
    if (said.empty()) throw;
    fail(said);
  }
  refuse_another_function(cfg, from_hf, config_path);
  // The run directory is --output: a train.out_dir elsewhere made the printed fine-tune command
  // start from random weights (it found no checkpoint there).
  const auto folder = [](const std::string& p) {
    fs::path a = fs::absolute(fs::path(p)).lexically_normal();
    return a.filename().empty() ? a.parent_path() : a;  // ("run/" is "run")
  };
  if (folder(cfg.train.out_dir) != folder(options.output_dir))
    fail("--set train.out_dir=", cfg.train.out_dir, " is not --output '", options.output_dir,
         "', where import writes the run and its checkpoint (fine-tuning ",
         "from config.yaml would find none there); name the run directory with --output");
  cfg.runtime.device = Device::kCpu;  // (the stored config keeps the user's runtime section)
  auto ex = make_cpu_executor(0);
  ReformerModel model(cfg, *ex);
  std::vector<float> params;
  params_from_hf_tensors(model.params(), read_safetensors(weights_path), weights_path, &params);
  ex->upload(model.params().params(), params.data(), params.size() * sizeof(float));
  AdamW optimizer(*ex, model.params(), cfg.train);  // zero moments: fine-tuning starts afresh
  TrainingState state;
  state.seed = cfg.train.seed;
  const std::string tokenizer_path = (in / "spiece.model").string();
  if (fs::is_regular_file(tokenizer_path, ec)) {
    state.tokenizer_model = read_text_file(tokenizer_path);
    const Tokenizer tokenizer = Tokenizer::sentencepiece(state.tokenizer_model, tokenizer_path);
    if (tokenizer.vocab_size() > cfg.model.vocab_size)
      fail(tokenizer_path, " has ", tokenizer.vocab_size(), " pieces, more than the model's ",
           "vocab_size ", cfg.model.vocab_size);
  }
  StagedDirectory out(options.output_dir);
  write_text_file(out.path("config.yaml"), cfg.source_text);
  save_checkpoint(checkpoint_dir(out.staging()), model, optimizer, state, 1);
  out.commit();
  log << "imported " << options.input_dir << " (" << model.params().size() << " parameters, "
      << cfg.model.n_layers << " layers) into " << options.output_dir << "\n"
      << "  fine-tune: reformer train --config "
      << (fs::path(options.output_dir) / "config.yaml").string() << " --resume auto\n"
      << "  evaluate:  reformer eval --checkpoint " << options.output_dir << "\n";
  if (!state.tokenizer_model.empty())
    log << "  its SentencePiece model is in the checkpoint; prepare text for it with: reformer "
        << "prepare --tokenizer-model " << tokenizer_path << " ...\n";
}

}  // namespace rf
