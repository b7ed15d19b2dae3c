// Checkpoints: one HDF5 file per saved step under <out_dir>/checkpoints/step-XXXXXXXX.h5 with the
// parameters, AdamW moments, step, data cursor, seed, parameter layout and the full config text.
// Written to a temporary name, flushed and synced, then renamed, so a crash or a full disk
// mid-write leaves the previous checkpoint intact; the newest `keep` are kept. Datasets carry
// Fletcher-32 checksums, so a damaged file is detected when read. Files are never overwritten:
// checkpoints a run no longer wants are moved into a subfolder (superseded/, damaged/).
#pragma once

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

namespace rf {

constexpr int64_t kCheckpointFormatVersion = 1;

// Losses of a stretch of steps, summed over every rank's tokens.
struct LossSums {
  double loss_sum = 0.0;  // nats
  double tokens = 0.0;
  double correct = 0.0;
  void add(const LossSums& o) {
    loss_sum += o.loss_sum;
    tokens += o.tokens;
    correct += o.correct;
  }
};

struct TrainingState {
  int64_t step = 0;          // optimizer steps completed
  int64_t samples_seen = 0;  // windows consumed by the whole job (the data cursor)
  int64_t seed = 1;          // keys every random stream of the run
  int64_t world_size = 1;    // ranks of the job that wrote it (informational)
  // The SentencePiece model the training tokens came from (serialized; "" for bytes and the
  // synthetic task), so that a checkpoint alone encodes prompts and decodes samples.
  std::string tokenizer_model;
  // What the training tokens were, as shards name it ("bytes", "duplication", "sentencepiece";
  // "" where not recorded, before 2026-12-08): `generate` gives the duplication task's as ids.
  std::string data_tokenizer;
  // Transformer-XL's recurrence: every layer's memory of each of the job's lanes (the global
  // batch's streams), [memory_lanes, layers, memory_held, d_model], gathered from every rank;
  // empty when the model keeps none or holds none yet. A resumed run continues from it exactly.
  std::vector<float> memory;
  int64_t memory_lanes = 0, memory_held = 0;
  // Which layers' memories `memory` holds, a '1' or '0' per layer (Config::layer_sees_memory;
  // "" where not recorded, before 2026-12-08): the others are zeros there.
  std::string memory_layers;
  // The steps since the last log line (a log line is their mean), so that a run resumed between
  // two log lines logs the next one as the uninterrupted run does.
  LossSums since_log;
  // The arithmetic of the executor that trained it (Executor::arithmetic; "" when unknown, as
  // for an imported model): a run resumed elsewhere is told its bits will differ.
  std::string arithmetic;
  // Windows per step over the job (batch_size x grad_accum x ranks; 0: not recorded): in stream
  // order, the number of lanes the data was cut into.
  int64_t global_batch = 0;
  // The order the run read its training windows in: "streams" or "shuffled" ("": not recorded).
  std::string data_order;
};

std::string checkpoint_dir(const std::string& out_dir);
std::string checkpoint_file_name(int64_t step);
// The step a checkpoint file's name says (step-00000042.h5: 42), or -1 for any other name.
int64_t checkpoint_step_of_file(const std::string& path);

// Writes the checkpoint for state.step into `dir` and removes all but the newest `keep`. A failure
// (a full disk, say) is an error naming the file and the system's reason; the partial file is
// removed and the checkpoints already in `dir` are untouched. An existing file of that step is
// never replaced (an error: another run writing to the same directory?).
std::string save_checkpoint(const std::string& dir, ReformerModel& model, AdamW& optimizer,
                            const TrainingState& state, int64_t keep);

// Restores parameters (and, when optimizer is not null, the AdamW moments) from `path`. A
// checkpoint whose parameter layout differs from the model's is an error naming the tensor.
TrainingState load_checkpoint(const std::string& path, ReformerModel& model, AdamW* optimizer);

// A checkpoint that is intact but belongs to a different model (layout, format version): never
// skipped over in favour of an older file.
class CheckpointMismatch : public Error {
 public:
  using Error::Error;
};

struct DamagedCheckpoint {
  std::string path;
  std::string reason;  // why it did not read back, e.g. "... (truncated file or checksum mismatch)"
};

// What a search of a checkpoint directory found: the newest intact checkpoint ("" when none) and
// the newer (or, without an intact one, all) checkpoint files that did not read back intact.
struct CheckpointSearch {
  std::string intact;
  std::vector<DamagedCheckpoint> damaged;
};

// Restores the newest checkpoint of `dir` that reads back intact (each file is read once; damaged
// ones are skipped and listed in the result, not reported).
CheckpointSearch load_newest_intact_checkpoint(const std::string& dir, ReformerModel& model,
                                               AdamW* optimizer, TrainingState* state);

// The tokenizer a checkpoint carries (bytes when it has no SentencePiece model).
Tokenizer checkpoint_tokenizer(const std::string& path);

// The config text stored in a checkpoint.
std::string checkpoint_config_text(const std::string& path);

// Moves checkpoints of steps after `step` into <dir>/superseded/ (a run resumed from an older
// checkpoint abandons them; left in place they would be picked by --resume auto or pruned in
// place of the new ones), and the one of `step` itself unless it is `resumed_from` (the run will
// write its own checkpoint of that step). Returns how many were moved.
int supersede_checkpoints_after(const std::string& dir, int64_t step,
                                const std::string& resumed_from);

// Moves `file` into `folder` (created if needed) under its own name, or with a suffix ".1", ".2",
// ... when that name is taken: never replaces a file. Returns the new path.
std::string move_into_folder_keeping_both(const std::string& file, const std::string& folder);

// Newest checkpoint in `dir` that reads back intact; "" when there is none. Damaged newer files
// are reported on stderr and skipped.
std::string find_latest_checkpoint(const std::string& dir);

// A --checkpoint argument (or that of `option`): a checkpoint file, a run directory or its
// checkpoints/ directory (the newest intact checkpoint).
std::string resolve_checkpoint_path(const std::string& argument,
                                    const std::string& option = "--checkpoint");

}  // namespace rf
