// `reformer export --format hf` and `reformer import --format hf`: a checkpoint as a directory that
// transformers' ReformerModelWithLMHead.from_pretrained loads (config.json + model.safetensors),
// and such a directory as a run directory of this program (config.yaml +
// checkpoints/step-00000000.h5) that `reformer train --config DIR/config.yaml --resume auto`
// fine-tunes and `reformer eval
// --checkpoint DIR` scores. Both check everything before writing, write into a temporary sibling
// and rename it into place, so a failure leaves nothing behind and nothing is overwritten.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace rf {

// Exports the checkpoint `checkpoint` (a file or run directory) into `output_dir`, which must not
// exist or be empty.
void export_hf(const std::string& checkpoint, const std::string& output_dir, std::ostream& log);

struct HfImportOptions {
  std::string input_dir;               // config.json + model.safetensors
  std::string output_dir;              // the new run directory (must not exist or be empty)
  std::string base_config;             // optional experiment file for everything but the model
  std::vector<std::string> overrides;  // --set, applied last
};

void import_hf(const HfImportOptions& options, std::ostream& log);

}  // namespace rf
