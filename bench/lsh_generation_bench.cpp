// What the approximate LSH cache of `reformer generate --lsh-cache` costs in quality and gains in
// speed, on the task where LSH attention has to find the right keys: the duplication task of
// configs/default.yaml ("0 w 0 w"). For SEQUENCES validation windows it greedily generates the
// second copy of w after the prompt "0 0 w 0", with the cache and by re-running the window per
// token (the exact path), and prints one JSON line: copy accuracy of each, how many generated
// tokens the two agree on, and tokens/s of each after the prompt's pass.
//   lsh_generation_bench CHECKPOINT [SEQUENCES]
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "data/synthetic_duplication.h"
#include "kernels/cpu/openblas_core.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/generate.h"
#include "trainer/job.h"

namespace rf {
namespace {

struct Tally {
  int64_t right = 0, agree = 0, tokens = 0;
  double seconds = 0.0;  // after each prompt's pass
};

int run(const std::string& argument, int64_t sequences) {
  const std::string path = resolve_checkpoint_path(argument);
  const Config cfg = load_config_text(checkpoint_config_text(path), path + " (stored config)", {});
  if (cfg.data.format != DataFormat::kSynthetic)
    throw Error(path + " is not a duplication-task model (data.format: synthetic)");
  auto ex = make_rank_executor(cfg.runtime);
  ReformerModel model(cfg, *ex);
  load_checkpoint(path, model, nullptr);
  const int64_t S = cfg.train.seq_len, copy = SyntheticDuplication::copy_begin(S);
  const SyntheticDuplication validation(S, cfg.model.vocab_size,
                                        static_cast<uint64_t>(cfg.train.seed), true);
  Tally cached, uncached;
  std::vector<int32_t> window(S + 1);
  for (int64_t i = 0; i < sequences; ++i) {
    validation.read(i, window.data());
    // Window tokens [copy + 1, S + 1) are the second w; the prompt is everything before it.
    const std::vector<int32_t> prompt(window.begin(), window.begin() + copy + 1);
    SamplingOptions greedy;
    greedy.temperature = 0.0;
    greedy.tokens = S - copy;
    std::vector<int32_t> outputs[2];
    for (int with_cache = 0; with_cache < 2; ++with_cache) {
      greedy.cache = with_cache == 1;
      greedy.lsh_cache = with_cache == 1;
      GenerationStats stats;
      outputs[with_cache] = generate(model, prompt, greedy, &stats);
      Tally& t = with_cache ? cached : uncached;
      t.seconds += stats.seconds - stats.prompt_seconds;
      t.tokens += greedy.tokens - 1;
      for (int64_t j = copy + 1; j <= S; ++j) t.right += outputs[with_cache][j] == window[j];
    }
    for (int64_t j = copy + 1; j <= S; ++j) cached.agree += outputs[0][j] == outputs[1][j];
    if (isatty(2))
      std::fprintf(stderr, "\rlsh_generation_bench: %lld/%lld sequences",
                   static_cast<long long>(i) + 1, static_cast<long long>(sequences));
  }
  if (isatty(2)) std::fprintf(stderr, "\n");
  const double copied = static_cast<double>(sequences * (S - copy));
  std::printf(
      "{\"bench\": \"lsh_generation\", \"checkpoint\": \"%s\", \"sequences\": %lld, "
      "\"copy_tokens\": %lld, \"uncached_copy_accuracy\": %.4f, \"cached_copy_accuracy\": %.4f, "
      "\"agreement\": %.4f, \"uncached_tokens_per_s\": %.1f, \"cached_tokens_per_s\": %.1f}\n",
      path.c_str(), static_cast<long long>(sequences), static_cast<long long>(S - copy),
      static_cast<double>(uncached.right) / copied, static_cast<double>(cached.right) / copied,
      static_cast<double>(cached.agree) / copied,
      static_cast<double>(uncached.tokens) / uncached.seconds,
      static_cast<double>(cached.tokens) / cached.seconds);
  return 0;
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) {
  rf::restart_without_openblas_fallback();
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: lsh_generation_bench CHECKPOINT [SEQUENCES]" << std::endl;
    return 2;
  }
  try {
    return rf::run(argv[1], argc == 3 ? std::stoll(argv[2]) : 16);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}
