// Fuzzes the Hugging Face weight import (data/safetensors.h, trainer/hf_weights.h): an input is a
// model.safetensors file; what reads is mapped onto the parameters of the model of the seeds.
#include <memory>

#include "data/safetensors.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"
#include "kernels/executor.h"
#include "trainer/config.h"
#include "trainer/hf_weights.h"
#include "trainer/model.h"

namespace rf::fuzz {

void read_safetensors_input(const uint8_t* data, size_t size) {
  static const rf::Config config = rf::load_config_text(rf::fuzz::kTinyModelYaml, "tiny", {});
  static const std::unique_ptr<rf::Executor> cpu = rf::make_cpu_executor(1);
  static rf::ReformerModel model(config, *cpu);
  const std::string path = rf::fuzz::write_scratch_file("model.safetensors", data, size);
  rf::fuzz::expect_success_or_error([&] {
    std::vector<float> params;
    rf::params_from_hf_tensors(model.params(), rf::read_safetensors(path), path, &params);
  });
}

}  // namespace rf::fuzz
