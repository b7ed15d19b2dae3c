#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>

#include "data/file_seal.h"
#include "data/hdf5_io.h"
#include "trainer/config.h"

namespace fs = std::filesystem;

namespace rf {
namespace {

// One line per tensor: "name dim0xdim1...". Shapes decide compatibility; n_hashes and the like
// may differ between the run that wrote a checkpoint and the one that reads it.
std::string layout_text(const ParamStore& params) {
  std::ostringstream s;
  for (const ParamTensor& t : params.tensors()) {
    s << t.name << ' ';
    for (size_t i = 0; i < t.shape.size(); ++i) s << (i ? "x" : "") << t.shape[i];
    s << '\n';
  }
  return s.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

void check_layout(const std::string& path, const std::string& stored, const ParamStore& params) {
  const std::vector<std::string> want = lines(layout_text(params)), have = lines(stored);
  // Different counts: the first pair that differs would pair unrelated tensors.
  if (want.size() != have.size())
    throw CheckpointMismatch(concat("checkpoint '", path,
                                    "' does not match the config: the config's model has ",
                                    want.size(), " tensors and the checkpoint's ", have.size(),
                                    " (different model.n_layers, attention or residual?)"));
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string w = i < want.size() ? want[i] : "(nothing)";
    const std::string h = i < have.size() ? have[i] : "(nothing)";
    if (w != h)
      throw CheckpointMismatch(concat(
          "checkpoint '", path, "' does not match the config: the config's model has tensor '", w,
          "' where the checkpoint has '", h,
          "' (different model.* sizes, layers, attention or residual?)"));
  }
}

// What changes the function of the same tensors must match the config the checkpoint was trained
// with too (model.activation: the weights of a GELU model ran as ReLU without a word). A stored
// config this build no longer reads is not compared.
void check_same_function(const std::string& path, const std::string& stored_text,
                         const Config& config) {
  Config stored;
  try {
    stored = load_config_text(stored_text, path + " (stored config)", {});
  } catch (const Error&) {
    return;
  }
  auto mismatch = [&](const char* key, const std::string& trained, const std::string& asked) {
    return CheckpointMismatch(concat("checkpoint '", path, "' was trained with ", key, " = ",
                                     trained, ", not ", asked,
                                     " (its weights would compute another function)"));
  };
  if (stored.model.activation != config.model.activation)
    throw mismatch("model.activation", activation_name(stored.model.activation),
                   activation_name(config.model.activation));
  // The heads' split of the same projection widths (4 x 8 against 2 x 16) leaves every tensor's
  // shape as it was.
  if (stored.model.n_heads != config.model.n_heads || stored.model.d_head != config.model.d_head)
    throw mismatch("model.n_heads x model.d_head",
                   concat(stored.model.n_heads, " x ", stored.model.d_head),
                   concat(config.model.n_heads, " x ", config.model.d_head));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail("cannot open '", path, "' to sync it to disk: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (rc != 0) fail("cannot sync '", path, "' to disk: ", std::strerror(sync_errno));
}

std::vector<std::pair<int64_t, fs::path>> checkpoints_newest_first(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = checkpoint_step_of_file(entry.path().string());
    if (step >= 0) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  return found;
}

void read_into_device(const Hdf5File& file, const std::string& name, Executor& ex, float* dst,
                      size_t count) {
  if (file.dataset_length(name) != static_cast<int64_t>(count))
    fail("checkpoint '", file.path(), "': dataset '", name, "' has ", file.dataset_length(name),
         " values, the model needs ", count);
  std::vector<float> host(count);
  file.read(name, H5T_NATIVE_FLOAT, 0, static_cast<int64_t>(count), host.data());
  ex.upload(dst, host.data(), count * sizeof(float));
}

std::string read_tokenizer_model(const Hdf5File& file) {
  if (!file.has_dataset("tokenizer_model")) return "";
  std::string bytes(static_cast<size_t>(file.dataset_length("tokenizer_model")), '\0');
  file.read("tokenizer_model", H5T_NATIVE_UINT8, 0, static_cast<int64_t>(bytes.size()),
            bytes.data());
  return bytes;
}

// The recurrence memory of a checkpoint, its shape checked against its attributes and the model.
std::vector<float> read_memory(const Hdf5File& file, const Config& cfg, TrainingState* s) {
  for (const char* attr : {"memory_lanes", "memory_held"})
    if (!file.has_attribute(attr))
      fail("checkpoint '", file.path(), "' has a memory but lacks attribute '", attr, "'");
  s->memory_lanes = file.get_int("memory_lanes");
  s->memory_held = file.get_int("memory_held");
  if (file.has_attribute("memory_layers")) s->memory_layers = file.get_string("memory_layers");
  const int64_t length = file.dataset_length("memory");
  const int64_t per_lane = cfg.model.n_layers * cfg.model.d_model;
  // (Divisions only: a damaged file's attributes must not overflow a product.)
  if (s->memory_lanes < 1 || s->memory_held < 1 || length < 1 || length > (int64_t{1} << 34) ||
      length % per_lane != 0 || (length / per_lane) % s->memory_lanes != 0 ||
      length / per_lane / s->memory_lanes != s->memory_held)
    fail("checkpoint '", file.path(), "': its memory of ", length, " values is not ",
         s->memory_lanes, " lanes x ", cfg.model.n_layers, " layers x ", s->memory_held,
         " positions x ", cfg.model.d_model, " features");
  std::vector<float> memory(static_cast<size_t>(length));
  file.read("memory", H5T_NATIVE_FLOAT, 0, length, memory.data());
  return memory;
}

std::vector<float> download(Executor& ex, const float* src, size_t count) {
  std::vector<float> host(count);
  ex.download(host.data(), src, count * sizeof(float));
  return host;
}

}  // namespace

std::string checkpoint_dir(const std::string& out_dir) {
  return (fs::path(out_dir) / "checkpoints").string();
}

std::string checkpoint_file_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld.h5", static_cast<long long>(step));
  return name;
}

int64_t checkpoint_step_of_file(const std::string& path) {
  const fs::path p(path);
  const std::string name = p.filename().string();
  // step-DDDDDDDD.h5: at least 8 digits (steps from 10^8 on have more; they were not found, so
  // never resumed from, pruned or kept from being written twice), at most train.steps' 13.
  if (name.size() < 16 || name.size() > 21 || name.rfind("step-", 0) != 0 || p.extension() != ".h5")
    return -1;
  const std::string digits = name.substr(5, name.size() - 8);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

namespace {

// Opens a checkpoint, its seal checked before HDF5 reads any of it. Checkpoints written since
// 2026-12-07 also say inside that they were sealed (the "sealed" attribute), so one whose seal was
// cut off is refused instead of read unchecked (a truncated or rewritten file); older ones, sealed
// since 2026-12-02 or not at all, open as before.
Hdf5File open_checkpoint(const std::string& path) {
  const bool sealed = check_file_seal(path);
  Hdf5File file = Hdf5File::open_read(path, false);
  if (!sealed && file.has_attribute("sealed"))
    fail("checkpoint '", path, "' has lost the checksum seal it was written with (cut short, or ",
         "rewritten by another program?): its contents cannot be checked");
  return file;
}

// Writes everything of a checkpoint into `path` (a new file), flushed and synced.
void write_checkpoint_file(const std::string& path, ReformerModel& model, AdamW& optimizer,
                           const TrainingState& state) {
  Executor& ex = model.executor();
  ParamStore& params = model.params();
  {
    Hdf5File file = Hdf5File::create(path);
    file.set_int("format_version", kCheckpointFormatVersion);
    file.set_int("step", state.step);
    file.set_int("samples_seen", state.samples_seen);
    file.set_int("seed", state.seed);
    file.set_int("world_size", state.world_size);
    file.set_string("config", model.config().source_text);
    file.set_string("layout", layout_text(params));
    file.set_int("sealed", 1);  // (seal_file below; open_checkpoint reads this)
    if (!state.arithmetic.empty()) file.set_string("arithmetic", state.arithmetic);
    if (state.global_batch > 0) file.set_int("global_batch", state.global_batch);
    if (!state.data_order.empty()) file.set_string("data_order", state.data_order);
    if (!state.data_tokenizer.empty()) file.set_string("data_tokenizer", state.data_tokenizer);
    if (!state.tokenizer_model.empty())
      file.write("tokenizer_model", H5T_NATIVE_UINT8, state.tokenizer_model.data(),
                 static_cast<int64_t>(state.tokenizer_model.size()));
    if (!state.memory.empty()) {
      file.set_int("memory_lanes", state.memory_lanes);
      file.set_int("memory_held", state.memory_held);
      if (!state.memory_layers.empty()) file.set_string("memory_layers", state.memory_layers);
      file.write("memory", H5T_NATIVE_FLOAT, state.memory.data(),
                 static_cast<int64_t>(state.memory.size()));
    }
    if (state.since_log.tokens > 0) {
      const double sums[3] = {state.since_log.loss_sum, state.since_log.tokens,
                              state.since_log.correct};
      file.write("since_log", H5T_NATIVE_DOUBLE, sums, 3);
    }
    const int64_t n = static_cast<int64_t>(params.size());
    file.write("params", H5T_NATIVE_FLOAT, download(ex, params.params(), n).data(), n);
    file.write("adam_m", H5T_NATIVE_FLOAT, download(ex, optimizer.first_moment().data(), n).data(),
               n);
    file.write("adam_v", H5T_NATIVE_FLOAT, download(ex, optimizer.second_moment().data(), n).data(),
               n);
    file.close();
  }
  seal_file(path);  // (a damaged checkpoint is then refused before HDF5 parses it)
  fsync_path(path, false);
}

}  // namespace

std::string save_checkpoint(const std::string& dir, ReformerModel& model, AdamW& optimizer,
                            const TrainingState& state, int64_t keep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create checkpoint directory '", dir, "': ", ec.message());
  std::string final_path = (fs::path(dir) / checkpoint_file_name(state.step)).string();
  const std::string temp_path = final_path + ".tmp";
  // Only rank 0 of a run writes here, and a run never writes a step twice (restoring moves a
  // checkpoint of the resumed step aside unless it is the one resumed from): a file already there
  // was written by someone else, and replacing it could destroy the only good copy.
  if (fs::exists(final_path, ec))
    fail("cannot write checkpoint '", final_path, "': the file already exists and is kept (is ",
         "another run writing to the same train.out_dir?)");
  try {
    write_checkpoint_file(temp_path, model, optimizer, state);
    fs::rename(temp_path, final_path, ec);
    if (ec) fail("cannot rename '", temp_path, "' to '", final_path, "': ", ec.message());
  } catch (const Error& e) {
    // A partial file would hold space that the next try needs (the disk is often full).
    std::error_code ignored;
    fs::remove(temp_path, ignored);
    fail("cannot write checkpoint '", final_path, "': ", e.what(), " (no partial file is left)");
  }
  fsync_path(dir, true);
  // Keep the newest `keep`; never the one just written or a newer one.
  const auto all = checkpoints_newest_first(dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < all.size(); ++i)
    if (all[i].first < state.step) fs::remove(all[i].second, ec);
  return final_path;
}

std::string move_into_folder_keeping_both(const std::string& file, const std::string& folder) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) fail("cannot create '", folder, "' to move '", file, "' into it: ", ec.message());
  const std::string name = fs::path(file).filename().string();
  fs::path target = fs::path(folder) / name;
  // (One writer per run directory, so nothing can take the name between the check and rename.)
  for (int suffix = 1; fs::exists(target, ec) || ec; ++suffix) {
    if (ec) fail("cannot check whether '", target.string(), "' exists: ", ec.message());
    target = fs::path(folder) / (name + "." + std::to_string(suffix));
  }
  fs::rename(file, target, ec);
  if (ec) fail("cannot move '", file, "' to '", target.string(), "': ", ec.message());
  return target.string();
}

int supersede_checkpoints_after(const std::string& dir, int64_t step,
                                const std::string& resumed_from) {
  int moved = 0;
  const std::string aside = (fs::path(dir) / "superseded").string();
  for (const auto& [s, path] : checkpoints_newest_first(dir)) {
    if (s < step) break;
    std::error_code ec;
    if (s == step && fs::equivalent(path, resumed_from, ec)) continue;
    move_into_folder_keeping_both(path.string(), aside);
    ++moved;
  }
  return moved;
}

TrainingState load_checkpoint(const std::string& path, ReformerModel& model, AdamW* optimizer) {
  const Hdf5File file = open_checkpoint(path);
  for (const char* attr : {"format_version", "step", "samples_seen", "seed", "layout"})
    if (!file.has_attribute(attr))
      fail("checkpoint '", path, "' lacks attribute '", attr,
           "' (not a checkpoint of this program?)");
  const int64_t version = file.get_int("format_version");
  if (version != kCheckpointFormatVersion)
    throw CheckpointMismatch(concat("checkpoint '", path, "' has format version ", version,
                                    ", this build reads version ", kCheckpointFormatVersion));
  ParamStore& params = model.params();
  check_layout(path, file.get_string("layout"), params);
  if (file.has_attribute("config"))
    check_same_function(path, file.get_string("config"), model.config());
  Executor& ex = model.executor();
  read_into_device(file, "params", ex, params.params(), params.size());
  if (optimizer) {
    read_into_device(file, "adam_m", ex, optimizer->first_moment().data(), params.size());
    read_into_device(file, "adam_v", ex, optimizer->second_moment().data(), params.size());
  }
  TrainingState s;
  s.step = file.get_int("step");
  s.samples_seen = file.get_int("samples_seen");
  s.seed = file.get_int("seed");
  s.world_size = file.has_attribute("world_size") ? file.get_int("world_size") : 1;
  s.tokenizer_model = read_tokenizer_model(file);
  if (file.has_attribute("arithmetic")) s.arithmetic = file.get_string("arithmetic");
  if (file.has_attribute("global_batch")) s.global_batch = file.get_int("global_batch");
  if (file.has_attribute("data_order")) s.data_order = file.get_string("data_order");
  if (file.has_attribute("data_tokenizer")) s.data_tokenizer = file.get_string("data_tokenizer");
  if (file.has_dataset("memory")) s.memory = read_memory(file, model.config(), &s);
  if (file.has_dataset("since_log")) {  // (written since 2026-12-07; older: a fresh log line)
    if (file.dataset_length("since_log") != 3)
      fail("checkpoint '", path, "' has a since_log of ", file.dataset_length("since_log"),
           " values, not 3");
    double sums[3];
    file.read("since_log", H5T_NATIVE_DOUBLE, 0, 3, sums);
    s.since_log = {sums[0], sums[1], sums[2]};
  }
  if (optimizer) optimizer->set_steps_taken(s.step);
  return s;
}

Tokenizer checkpoint_tokenizer(const std::string& path) {
  const Hdf5File file = open_checkpoint(path);
  const std::string model = read_tokenizer_model(file);
  return model.empty()
             ? Tokenizer::bytes()
             : Tokenizer::sentencepiece(model, "the tokenizer of checkpoint '" + path + "'");
}

std::string checkpoint_config_text(const std::string& path) {
  const Hdf5File file = open_checkpoint(path);
  if (!file.has_attribute("config"))
    fail("checkpoint '", path, "' lacks its config text (not a checkpoint of this program?)");
  return file.get_string("config");
}

namespace {

// The newest checkpoint in dir that `read_step` reads back intact (it returns the step stored in
// the file; reading every tensor verifies its checksums), and the damaged files tried before it.
// A CheckpointMismatch (the file is intact but not of this model) is never skipped.
CheckpointSearch newest_intact(const std::string& dir,
                               const std::function<int64_t(const std::string&)>& read_step) {
  CheckpointSearch search;
  for (const auto& [step, path] : checkpoints_newest_first(dir)) {
    try {
      if (read_step(path.string()) != step) fail("its step attribute disagrees with its name");
      search.intact = path.string();
      return search;
    } catch (const CheckpointMismatch&) {
      throw;
    } catch (const Error& e) {
      search.damaged.push_back({path.string(), e.what()});
    }
  }
  return search;
}

}  // namespace

std::string find_latest_checkpoint(const std::string& dir) {
  const CheckpointSearch search = newest_intact(dir, [](const std::string& path) {
    const Hdf5File file = open_checkpoint(path);
    const int64_t n = file.dataset_length("params");
    std::vector<float> values(static_cast<size_t>(n));
    for (const char* name : {"params", "adam_m", "adam_v"})
      file.read(name, H5T_NATIVE_FLOAT, 0, n, values.data());  // verifies the checksums
    return file.get_int("step");
  });
  for (const DamagedCheckpoint& d : search.damaged)
    std::cerr << "warning: skipping damaged checkpoint " << d.path << ": " << d.reason << "\n";
  return search.intact;
}

CheckpointSearch load_newest_intact_checkpoint(const std::string& dir, ReformerModel& model,
                                               AdamW* optimizer, TrainingState* state) {
  // A damaged candidate fails part-way; a later candidate overwrites whatever it had loaded.
  return newest_intact(dir, [&](const std::string& path) {
    *state = load_checkpoint(path, model, optimizer);
    return state->step;
  });
}

std::string resolve_checkpoint_path(const std::string& argument, const std::string& option) {
  std::error_code ec;
  if (fs::is_regular_file(argument, ec)) return argument;
  if (!fs::is_directory(argument, ec))
    fail(option, " '", argument, "' is neither a checkpoint file nor a run directory");
  const fs::path nested = fs::path(argument) / "checkpoints";
  const std::string dir = fs::is_directory(nested, ec) ? nested.string() : argument;
  std::string latest = find_latest_checkpoint(dir);
  if (latest.empty()) fail(option, " '", argument, "': no intact checkpoint in '", dir, "'");
  return latest;
}

}  // namespace rf
