// Whole training runs with Transformer-XL's memory over a small text (memory_training_test, and
// gpu_test on a device): the text, the run's config, and the check that step graphs train such a
// run bit for bit as eager steps.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/model_fixture.h"
#include "tests/run_fixture.h"

namespace rf::test {

// 400 lines of text (6,077 bytes: 379 windows of 16 bytes) in `dir`; returns its path.
inline std::string write_text(const std::string& dir) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of text\n";
  std::string path = dir + "/text.txt";
  std::ofstream(path) << text;
  return path;
}

// [local, dense] with relative positions and a memory of 16 over segments of 16 bytes of `text`,
// `steps` steps, evaluating and saving every 3; `extra` overrides last.
inline Config memory_run(const std::string& dir, const std::string& text, int64_t steps,
                         std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"model.attention=[local, dense]", "model.position=relative",
                                "model.vocab_size=256", "model.memory_len=16", "lsh.local_chunk=8",
                                "train.seq_len=16", "train.batch_size=2", "train.eval_every=3",
                                "train.eval_batches=2", "train.checkpoint_every=3",
                                // Rows of W_R that meet only the slow sinusoids get gradients
                                // near zero, where Adam would turn rounding into whole steps
                                // and hide what the comparisons of runs look for.
                                "train.adam_eps=1e-6", "data.format=text", "data.train=" + text};
  o.insert(o.end(), extra.begin(), extra.end());
  return short_run_config(dir, steps, 1, o);
}

// Step graphs with a memory: each micro-batch runs eagerly while its memory grows, then is captured
// once the memory is full and replayed, the memory advancing by a copy the graph holds; a stream
// restart (the lanes start over together, their memories cleared and released) starts the graphs
// over, as does one between a part's warm-up and its capture. The runs train bit for bit as
// eagerly: local and dense layers with dropout and gradient accumulation over two restarts; an
// LSH layer that hashes a memory of two segments, with evaluations and a restart. `setup`
// (runtime.device, say) goes into every run.
inline void expect_memory_step_graphs_train_as_eager_steps(const std::vector<std::string>& setup) {
  const std::string text = write_text(fresh_dir("data"));
  struct Case {
    std::vector<std::string> overrides;
    int64_t steps;
    int captures;  // at least
  };
  const std::vector<Case> cases = {
      // 16 lanes of 23 segments: restarts at steps 23 and 46, each followed by a capture of the
      // two micro-batches and the optimizer.
      {{"model.dropout=0.1", "train.grad_accum=2", "train.batch_size=8", "train.eval_every=1000"},
       50,
       9},
      // Evaluations after steps 11 and 22 (each starts the graphs over), so step 23 warms up
      // and the restart at step 24 comes before the capture.
      {{"model.attention=[lsh, local]", "lsh.bucket_size=8", "lsh.sees_memory=true",
        "model.memory_len=32", "train.batch_size=16", "train.eval_every=11"},
       30,
       2}};
  for (const Case& c : cases) {
    SCOPED_TRACE(describe_overrides(c.overrides));
    std::vector<std::string> eager_run = setup;
    eager_run.insert(eager_run.end(), c.overrides.begin(), c.overrides.end());
    std::vector<std::string> graphs = eager_run;
    graphs.push_back("runtime.step_graphs=true");
    const TrainSummary eager =
        train_quietly(memory_run(fresh_dir("eager"), text, c.steps, eager_run));
    const TrainSummary replayed =
        train_quietly(memory_run(fresh_dir("graphs"), text, c.steps, graphs));
    EXPECT_EQ(eager.step_graphs, 0);
    EXPECT_GE(replayed.step_graphs, c.captures);
    EXPECT_EQ(replayed.final_loss, eager.final_loss);
    expect_same_final_params(eager, replayed);
  }
}

}  // namespace rf::test
