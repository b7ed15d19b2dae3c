// Writes the binary and generated seeds of the fuzz corpus (fuzz/corpus/<target>/): a checkpoint
// and the Hugging Face files of the model of fuzz_support.h, a token shard, and manifests of the
// manifest target's fixed shards. The text seeds (experiment files) are copied from configs/ by
// hand. Run once when a format changes: make_corpus fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "data/safetensors.h"
#include "fuzz/fuzz_support.h"
#include "kernels/executor.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/hf_config.h"
#include "trainer/hf_weights.h"
#include "trainer/model.h"

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus CORPUS_DIR\n";
    return 2;
  }
  const fs::path out = argv[1];
  for (const char* target : {"checkpoint", "safetensors", "hf_config", "shard", "manifest"})
    fs::create_directories(out / target);

  const rf::Config config = rf::load_config_text(rf::fuzz::kTinyModelYaml, "tiny", {});
  const std::unique_ptr<rf::Executor> cpu = rf::make_cpu_executor(1);
  rf::ReformerModel model(config, *cpu);
  rf::AdamW optimizer(*cpu, model.params(), config.train);
  rf::TrainingState state;
  state.step = 2;
  state.samples_seen = 4;
  state.seed = 3;
  const fs::path scratch = rf::fuzz::scratch_dir();
  const std::string written =
      rf::save_checkpoint((scratch / "checkpoints").string(), model, optimizer, state, 1);
  fs::copy_file(written, out / "checkpoint" / "tiny-step-2.h5",
                fs::copy_options::overwrite_existing);

  std::vector<float> params(model.params().size());
  cpu->download(params.data(), model.params().params(), params.size() * sizeof(float));
  rf::write_safetensors((out / "safetensors" / "tiny.safetensors").string(),
                        rf::hf_tensors(model.params(), params), {{"format", "pt"}});
  write_text(out / "hf_config" / "tiny-config.json", rf::hf_config_json(config));
  const rf::Config learned = rf::load_config_text(
      rf::fuzz::kTinyModelYaml, "tiny",
      {"model.position=learned", "model.attention=[local]", "lsh.n_buckets=[4,2]"});
  write_text(out / "hf_config" / "learned-local-config.json", rf::hf_config_json(learned));

  const rf::Manifest shards = rf::fuzz::write_fixed_shards(scratch.string());
  fs::copy_file(shards.train[0].path, out / "shard" / "train-bytes.h5",
                fs::copy_options::overwrite_existing);
  // Written beside the shards (paths are relative to the manifest), then copied.
  const auto write_manifest_seed = [&](const rf::Manifest& manifest, const std::string& name) {
    rf::write_manifest(manifest, shards.path);
    fs::copy_file(shards.path, out / "manifest" / name, fs::copy_options::overwrite_existing);
  };
  write_manifest_seed(shards, "manifest.yaml");
  rf::Manifest stride = shards;
  stride.window_stride = 9;  // independent windows of seq_len + 1 = 9 tokens
  write_manifest_seed(stride, "window-stride.yaml");
  std::cout << "wrote the generated seeds under " << out << "\n";
  return 0;
}
