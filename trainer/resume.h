// What `reformer train --resume` restores before the first step. A requeued SLURM job runs the
// same command again and again, so `auto` has to start a first submission fresh and continue a
// requeued one; but a folder whose checkpoints are all damaged must not silently become step 0
// (hours of training would be repeated and the damaged files, which may still be recoverable,
// pruned). That start-over is what `auto-or-new` asks for explicitly.
#pragma once

#include <ostream>
#include <string>

#include "trainer/checkpoint.h"

namespace rf {

enum class ResumeMode {
  kFresh,      // no --resume: a new run; refused where checkpoints already are
  kAuto,       // the newest intact checkpoint; none at all: fresh; only damaged ones: an error
  kAutoOrNew,  // as kAuto, but only damaged ones: moved to checkpoints/damaged/, fresh start
  kPath,       // this checkpoint file (or the newest intact one of this run directory)
};

struct ResumeRequest {
  ResumeMode mode = ResumeMode::kFresh;
  std::string path;  // kPath only
};

// "" (fresh), "auto", "auto-or-new", or a checkpoint path / run directory.
ResumeRequest parse_resume(const std::string& argument);

// A fresh run (no --resume) fails with one line, before anything is written, where train.out_dir
// holds another run's files: checkpoints, a metrics.jsonl with lines (which it would truncate), or
// a config.yaml unlike `resolved_config`, the text the run writes there (the user's own --config
// file, it may be).
void refuse_to_overwrite_a_run(const std::string& out_dir, const std::string& resolved_config);

// A resumed run rewrites <out_dir>/config.yaml with its resolved config: fails with one line when
// the file there is not one this program wrote (the user's own --config file, with its comments).
void refuse_to_replace_a_users_config(const std::string& out_dir);

// Restores the request into model, optimizer and state from train.out_dir = out_dir; returns the
// checkpoint it restored ("" for a fresh start). Notes for the user (damaged files skipped or
// moved aside, newer checkpoints superseded) go to `notes`. Leaves the directory as it was when
// it fails.
std::string restore_for_resume(const ResumeRequest& request, const std::string& out_dir,
                               ReformerModel& model, AdamW& optimizer, TrainingState* state,
                               std::ostream& notes);

}  // namespace rf
