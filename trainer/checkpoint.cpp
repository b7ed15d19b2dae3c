#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>

#include "data/hdf5_io.h"

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
  for (size_t i = 0; i < std::max(want.size(), have.size()); ++i) {
    const std::string w = i < want.size() ? want[i] : "(nothing)";
    const std::string h = i < have.size() ? have[i] : "(nothing)";
    if (w != h)
      throw CheckpointMismatch("checkpoint '" + path +
                               "' does not match the config: the config's model has tensor '" + w +
                               "' where the checkpoint has '" + h +
                               "' (different model.* sizes, layers or attention?)");
  }
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail("cannot open '", path, "' to sync it to disk");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("cannot sync '", path, "' to disk");
}

int64_t step_of_file(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.size() != 16 || name.rfind("step-", 0) != 0 || p.extension() != ".h5") return -1;
  try {
    return std::stoll(name.substr(5, 8));
  } catch (const std::exception&) {
    return -1;
  }
}

std::vector<std::pair<int64_t, fs::path>> checkpoints_newest_first(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = step_of_file(entry.path());
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

std::string save_checkpoint(const std::string& dir, ReformerModel& model, AdamW& optimizer,
                            const TrainingState& state, int64_t keep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create checkpoint directory '", dir, "': ", ec.message());
  const std::string final_path = (fs::path(dir) / checkpoint_file_name(state.step)).string();
  const std::string temp_path = final_path + ".tmp";
  Executor& ex = model.executor();
  ParamStore& params = model.params();
  {
    Hdf5File file = Hdf5File::create(temp_path);
    file.set_int("format_version", kCheckpointFormatVersion);
    file.set_int("step", state.step);
    file.set_int("samples_seen", state.samples_seen);
    file.set_int("seed", state.seed);
    file.set_int("world_size", state.world_size);
    file.set_string("config", model.config().source_text);
    file.set_string("layout", layout_text(params));
    if (!state.tokenizer_model.empty())
      file.write("tokenizer_model", H5T_NATIVE_UINT8, state.tokenizer_model.data(),
                 static_cast<int64_t>(state.tokenizer_model.size()));
    const int64_t n = static_cast<int64_t>(params.size());
    file.write("params", H5T_NATIVE_FLOAT, download(ex, params.params(), n).data(), n);
    file.write("adam_m", H5T_NATIVE_FLOAT, download(ex, optimizer.first_moment().data(), n).data(),
               n);
    file.write("adam_v", H5T_NATIVE_FLOAT, download(ex, optimizer.second_moment().data(), n).data(),
               n);
    file.close();
  }
  fsync_path(temp_path, false);
  fs::rename(temp_path, final_path, ec);
  if (ec) fail("cannot rename '", temp_path, "' to '", final_path, "': ", ec.message());
  fsync_path(dir, true);
  // Keep the newest `keep`; never the one just written or a newer one.
  const auto all = checkpoints_newest_first(dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < all.size(); ++i)
    if (all[i].first < state.step) fs::remove(all[i].second, ec);
  return final_path;
}

int supersede_checkpoints_after(const std::string& dir, int64_t step) {
  int moved = 0;
  const fs::path aside = fs::path(dir) / "superseded";
  for (const auto& [s, path] : checkpoints_newest_first(dir)) {
    if (s <= step) break;
    std::error_code ec;
    fs::create_directories(aside, ec);
    fs::rename(path, aside / path.filename(), ec);
    if (ec) fail("cannot move superseded checkpoint '", path.string(), "' aside: ", ec.message());
    ++moved;
  }
  return moved;
}

TrainingState load_checkpoint(const std::string& path, ReformerModel& model, AdamW* optimizer) {
  const Hdf5File file = Hdf5File::open_read(path);
  for (const char* attr : {"format_version", "step", "samples_seen", "seed", "layout"})
    if (!file.has_attribute(attr))
      fail("checkpoint '", path, "' lacks attribute '", attr,
           "' (not a checkpoint of this program?)");
  const int64_t version = file.get_int("format_version");
  if (version != kCheckpointFormatVersion)
    throw CheckpointMismatch("checkpoint '" + path + "' has format version " +
                             std::to_string(version) + ", this build reads version " +
                             std::to_string(kCheckpointFormatVersion));
  ParamStore& params = model.params();
  check_layout(path, file.get_string("layout"), params);
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
  if (optimizer) optimizer->set_steps_taken(s.step);
  return s;
}

Tokenizer checkpoint_tokenizer(const std::string& path) {
  const Hdf5File file = Hdf5File::open_read(path);
  const std::string model = read_tokenizer_model(file);
  return model.empty()
             ? Tokenizer::bytes()
             : Tokenizer::sentencepiece(model, "the tokenizer of checkpoint '" + path + "'");
}

std::string checkpoint_config_text(const std::string& path) {
  const Hdf5File file = Hdf5File::open_read(path);
  if (!file.has_attribute("config"))
    fail("checkpoint '", path, "' lacks its config text (not a checkpoint of this program?)");
  return file.get_string("config");
}

namespace {

// The newest checkpoint in dir that `read_step` reads back intact (it returns the step stored in
// the file; reading every tensor verifies its checksums). Damaged files are reported and
// skipped; a CheckpointMismatch (the file is intact but not of this model) is never skipped.
std::string newest_intact(const std::string& dir,
                          const std::function<int64_t(const std::string&)>& read_step) {
  for (const auto& [step, path] : checkpoints_newest_first(dir)) {
    try {
      if (read_step(path.string()) != step) fail("its step attribute disagrees with its name");
      return path.string();
    } catch (const CheckpointMismatch&) {
      throw;
    } catch (const Error& e) {
      std::cerr << "warning: skipping damaged checkpoint " << path.string() << ": " << e.what()
                << "\n";
    }
  }
  return "";
}

}  // namespace

std::string find_latest_checkpoint(const std::string& dir) {
  return newest_intact(dir, [](const std::string& path) {
    const Hdf5File file = Hdf5File::open_read(path);
    const int64_t n = file.dataset_length("params");
    std::vector<float> values(static_cast<size_t>(n));
    for (const char* name : {"params", "adam_m", "adam_v"})
      file.read(name, H5T_NATIVE_FLOAT, 0, n, values.data());  // verifies the checksums
    return file.get_int("step");
  });
}

std::string load_newest_intact_checkpoint(const std::string& dir, ReformerModel& model,
                                          AdamW* optimizer, TrainingState* state) {
  // A damaged candidate fails part-way; a later candidate overwrites whatever it had loaded.
  return newest_intact(dir, [&](const std::string& path) {
    *state = load_checkpoint(path, model, optimizer);
    return state->step;
  });
}

std::string resolve_checkpoint_path(const std::string& argument) {
  std::error_code ec;
  if (fs::is_regular_file(argument, ec)) return argument;
  if (!fs::is_directory(argument, ec))
    fail("--checkpoint '", argument, "' is neither a checkpoint file nor a run directory");
  const fs::path nested = fs::path(argument) / "checkpoints";
  const std::string dir = fs::is_directory(nested, ec) ? nested.string() : argument;
  const std::string latest = find_latest_checkpoint(dir);
  if (latest.empty()) fail("--checkpoint '", argument, "': no intact checkpoint in '", dir, "'");
  return latest;
}

}  // namespace rf
