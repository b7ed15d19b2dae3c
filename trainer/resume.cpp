#include "trainer/resume.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/error.h"
#include "trainer/config.h"

namespace fs = std::filesystem;

namespace rf {
namespace {

// A resolved config this program wrote (it starts with kResolvedConfigHeader), not a user's file.
bool written_by_this_program(const fs::path& config) {
  std::ifstream in(config, std::ios::binary);
  std::string first(std::char_traits<char>::length(kResolvedConfigHeader), '\0');
  in.read(first.data(), static_cast<std::streamsize>(first.size()));
  return in && first == kResolvedConfigHeader;
}

constexpr const char* kAuto = "auto";
constexpr const char* kAutoOrNew = "auto-or-new";

// "step-00000006.h5: truncated ..." for each file, the path inside each reason shortened to "it"
// (the directory is named once by the caller).
std::string list_damaged(const std::vector<DamagedCheckpoint>& damaged) {
  std::ostringstream s;
  for (size_t i = 0; i < damaged.size(); ++i) {
    std::string reason = damaged[i].reason;
    const std::string quoted = "'" + damaged[i].path + "'";
    for (size_t at; (at = reason.find(quoted)) != std::string::npos;)
      reason.replace(at, quoted.size(), "it");
    s << (i ? "; " : "") << fs::path(damaged[i].path).filename().string() << " (" << reason << ")";
  }
  return s.str();
}

// Puts back what a fresh run starts from: a damaged candidate may have loaded part of itself.
void reset_to_initial_values(ReformerModel& model, AdamW& optimizer, TrainingState* state,
                             const TrainingState& initial) {
  model.params().initialize(model.executor(), static_cast<uint64_t>(model.config().train.seed));
  optimizer.first_moment().zero();
  optimizer.second_moment().zero();
  optimizer.set_steps_taken(0);
  *state = initial;
}

std::string restore_newest_intact(ResumeMode mode, const std::string& dir, ReformerModel& model,
                                  AdamW& optimizer, TrainingState* state, std::ostream& notes) {
  const TrainingState initial = *state;
  const CheckpointSearch found = load_newest_intact_checkpoint(dir, model, &optimizer, state);
  const std::string aside = (fs::path(dir) / "damaged").string();
  if (!found.intact.empty()) {
    // The damaged newer files go where damaged ones are kept (superseded/ holds intact ones that
    // this run abandons: a user looking for what went wrong should not have to tell them apart).
    if (!found.damaged.empty()) {
      for (const DamagedCheckpoint& d : found.damaged) move_into_folder_keeping_both(d.path, aside);
      notes << "warning: skipping " << found.damaged.size() << " damaged checkpoint(s) in " << dir
            << ", moved to " << aside << "/: " << list_damaged(found.damaged) << "\n";
    }
    return found.intact;
  }
  if (found.damaged.empty()) return "";  // a first start: nothing to continue
  if (mode == ResumeMode::kAuto)
    fail("--resume auto: no intact checkpoint in '", dir, "', only ", found.damaged.size(),
         " damaged: ", list_damaged(found.damaged), "; nothing was changed; recover them, or pass ",
         "--resume ", kAutoOrNew, " to start over from step 0 (which moves them to ", aside,
         "/ and keeps them)");
  reset_to_initial_values(model, optimizer, state, initial);
  for (const DamagedCheckpoint& d : found.damaged) move_into_folder_keeping_both(d.path, aside);
  notes << "note: --resume " << kAutoOrNew << ": no intact checkpoint in " << dir << "; moved "
        << found.damaged.size() << " damaged one(s) to " << aside << "/ ("
        << list_damaged(found.damaged) << ") and starting over from step 0\n";
  return "";
}

}  // namespace

ResumeRequest parse_resume(const std::string& argument) {
  ResumeRequest r;
  if (argument.empty()) return r;
  if (argument == kAuto) {
    r.mode = ResumeMode::kAuto;
  } else if (argument == kAutoOrNew) {
    r.mode = ResumeMode::kAutoOrNew;
  } else {
    r.mode = ResumeMode::kPath;
    r.path = argument;
  }
  return r;
}

void refuse_to_overwrite_a_run(const std::string& out_dir, const std::string& resolved_config) {
  std::error_code ec;
  const std::string dir = checkpoint_dir(out_dir);
  if (fs::is_directory(dir, ec) && !fs::is_empty(dir, ec)) {
    std::string other;  // a file there that is no checkpoint, when none is
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (checkpoint_step_of_file(entry.path().string()) >= 0)
        fail("train.out_dir '", out_dir, "' already holds checkpoints; pass --resume ", kAuto,
             " to continue that run, or choose another train.out_dir (nothing was overwritten)");
      other = entry.path().filename().string();
    }
    fail("train.out_dir '", out_dir, "' holds other files in ", dir, " ('", other,
         "'), where this run would write its checkpoints: choose another train.out_dir or ",
         "move them (nothing was overwritten)");
  }
  const fs::path metrics = fs::path(out_dir) / "metrics.jsonl";
  if (fs::is_regular_file(metrics, ec) && fs::file_size(metrics, ec) > 0)
    fail("train.out_dir '", out_dir,
         "' already holds a run's metrics.jsonl (with no checkpoint): ", "pass --resume ",
         kAutoOrNew, " to start over there, adding to it, or choose another ",
         "train.out_dir (nothing was overwritten)");
  const fs::path config = fs::path(out_dir) / "config.yaml";
  if (fs::is_regular_file(config, ec)) {
    std::ifstream in(config, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    // A resolved config with no checkpoint and no metrics line beside it: most likely a run that
    // failed before its first step (out of memory, say), which the message blamed on the user's
    // --config file. (`reformer config` writes the same header, so it is not replaced unasked.)
    if (text.str() != resolved_config && written_by_this_program(config))
      fail("train.out_dir '", out_dir, "' holds a config.yaml unlike this run's, with no ",
           "checkpoint and no metrics beside it: a run that failed before its first step (then ",
           "pass --resume ", kAutoOrNew, " to start over there, replacing it), or your --config ",
           "file (then choose another train.out_dir); nothing was overwritten");
    if (text.str() != resolved_config)
      fail("train.out_dir '", out_dir, "' already holds a config.yaml unlike this run's resolved ",
           "config, which the run would write there (is it your --config file?): choose another ",
           "train.out_dir or move that file (nothing was overwritten)");
  }
}

void refuse_to_replace_a_users_config(const std::string& out_dir) {
  std::error_code ec;
  const fs::path config = fs::path(out_dir) / "config.yaml";
  if (!fs::is_regular_file(config, ec)) return;
  if (!written_by_this_program(config))
    fail("train.out_dir '", out_dir, "' holds a config.yaml this program did not write (is it ",
         "your --config file?), which a resumed run replaces with its resolved config: move it ",
         "or keep your experiment files outside train.out_dir (nothing was changed)");
}

std::string restore_for_resume(const ResumeRequest& request, const std::string& out_dir,
                               ReformerModel& model, AdamW& optimizer, TrainingState* state,
                               std::ostream& notes) {
  const std::string dir = checkpoint_dir(out_dir);
  std::string restored;
  switch (request.mode) {
    case ResumeMode::kFresh:  // (refuse_to_overwrite_a_run checked out_dir)
      return "";
    case ResumeMode::kAuto:
    case ResumeMode::kAutoOrNew:
      restored = restore_newest_intact(request.mode, dir, model, optimizer, state, notes);
      break;
    case ResumeMode::kPath:
      restored = resolve_checkpoint_path(request.path, "--resume");
      *state = load_checkpoint(restored, model, &optimizer);
      break;
  }
  if (restored.empty()) return "";
  if (const int moved = supersede_checkpoints_after(dir, state->step, restored))
    notes << "note: " << moved << " checkpoint(s) at or after step " << state->step << " moved to "
          << dir << "/superseded/ (this run continues from step " << state->step << ")\n";
  return restored;
}

}  // namespace rf
