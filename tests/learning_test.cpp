// The model learns: on the duplication task a small LSH model copies the second half, and a
// byte-level model on Tiny Shakespeare gets clearly below the text's unigram entropy. Sized to
// finish in about a minute each on one core.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "comms/communicator.h"
#include "data/byte_corpus.h"
#include "tests/run_fixture.h"
#include "tests/test_corpus.h"
#include "trainer/batches.h"
#include "trainer/checkpoint.h"
#include "trainer/learning_report.h"
#include "trainer/train_loop.h"

namespace rf {
namespace {

ReformerModel& trained(const Config& cfg, std::unique_ptr<ReformerModel>& model) {
  const TrainSummary s = test::train_quietly(cfg);
  model = std::make_unique<ReformerModel>(cfg, test::cpu());
  load_checkpoint(s.final_checkpoint, *model, nullptr);
  return *model;
}

TEST(Learning, DuplicationTaskCopiesTheSecondHalf) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = load_config_text(R"(
model: {vocab_size: 16, d_model: 64, d_ff: 128, n_layers: 1, n_heads: 2, d_head: 32,
        attention: [lsh], position: learned}
lsh: {bucket_size: 16, n_hashes: 2}
train: {seq_len: 64, batch_size: 16, steps: 700, lr: 3.0e-3, warmup: 50, log_every: 100,
        eval_every: 0, checkpoint_every: 0, seed: 1}
)",
                                      "duplication_test", {"train.out_dir=" + dir});
  std::unique_ptr<ReformerModel> model;
  ReformerModel& m = trained(cfg, model);
  const DataSources data = open_data(cfg, cfg.data.verify_checksums);
  const EvalResult r = duplication_copy_accuracy(m, *data.val, 64, 4);
  std::cout << "copy accuracy with 4 hashes: " << r.accuracy << "\n";
  EXPECT_GT(r.accuracy, 0.9);  // chance is 1/15
}

TEST(Learning, ByteModelOnTinyShakespeareBeatsUnigramEntropy) {
  RF_TINY_SHAKESPEARE_OR_SKIP(text);
  const std::vector<uint8_t> bytes = read_file_bytes(text, "test corpus");
  std::map<uint8_t, double> counts;
  for (uint8_t b : bytes) counts[b] += 1;
  double entropy = 0;
  const auto total = static_cast<double>(bytes.size());
  for (const auto& [b, n] : counts) entropy -= n / total * std::log2(n / total);

  const std::string dir = test::fresh_dir("run");
  const Config cfg =
      load_config_text(R"(
model: {vocab_size: 256, d_model: 64, d_ff: 256, n_layers: 2, n_heads: 2, d_head: 32,
        attention: [local, lsh], position: axial, axial_shape: [8, 16]}
lsh: {bucket_size: 16, n_hashes: 2, local_chunk: 32}
train: {seq_len: 128, batch_size: 8, steps: 500, lr: 3.0e-3, warmup: 30, log_every: 100,
        eval_every: 0, eval_batches: 8, checkpoint_every: 0, seed: 1}
data: {format: text}
)",
                       "char_lm_test", {"train.out_dir=" + dir, "data.train=" + text});
  std::unique_ptr<ReformerModel> model;
  ReformerModel& m = trained(cfg, model);
  const DataSources data = open_data(cfg, cfg.data.verify_checksums);
  const EvalResult r = evaluate(m, *data.val, 64, 8, {});
  std::cout << "validation bits per byte " << r.bits_per_token << ", unigram entropy " << entropy
            << "\n";
  EXPECT_LT(r.bits_per_token, entropy - 1.0);
}

}  // namespace
}  // namespace rf
