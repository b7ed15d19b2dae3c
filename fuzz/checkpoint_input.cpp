// Fuzzes the checkpoint reader (trainer/checkpoint.h): an input is a checkpoint file, read as
// `reformer eval` and `--resume` read one: its config text (then loaded as an experiment file),
// its tokenizer, and its tensors into a model of the shape of the seed checkpoints.
#include <memory>

#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"
#include "kernels/executor.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace rf::fuzz {

void read_checkpoint_input(const uint8_t* data, size_t size) {
  static const rf::Config config = rf::load_config_text(rf::fuzz::kTinyModelYaml, "tiny", {});
  static const std::unique_ptr<rf::Executor> cpu = rf::make_cpu_executor(1);
  static rf::ReformerModel model(config, *cpu);
  static rf::AdamW optimizer(*cpu, model.params(), config.train);
  const std::string path = rf::fuzz::write_scratch_file("step-00000002.h5", data, size);
  rf::fuzz::expect_success_or_error(
      [&] { rf::load_config_text(rf::checkpoint_config_text(path), path, {}); });
  rf::fuzz::expect_success_or_error([&] { rf::checkpoint_tokenizer(path); });
  rf::fuzz::expect_success_or_error([&] { rf::load_checkpoint(path, model, &optimizer); });
  rf::fuzz::expect_no_open_hdf5_objects();
}

}  // namespace rf::fuzz
