// Sampling from a trained model: temperature, top-k and top-p (trainer/sampling.h), with Philox
// keyed by the seed and the token index, so a sample is reproducible.
//
// Each prediction sees a context of at most `context` tokens (train.seq_len by default). With the
// key/value cache (every layer dense or local attention; trainer/generation_cache.h) a new token
// costs its own attention window: the context's keys and values are kept per layer, and only the
// new token runs through the model. Greedy decoding with the cache produces the tokens decoding
// without it produces while the text fits the context; past it, the cached context restarts from
// its last half (recomputed once), so each prediction sees between half the context and all of
// it, where the uncached path slides a full window. LSH layers have no exact cache (a new key
// moves the chunk boundaries of the sorted order): models with them re-run the window per token,
// unless lsh_cache fixes each position's LSH windows when it arrives (as Hugging Face's Reformer
// caches past keys with their buckets; the same tokens while the text fits one bucket_size chunk
// and the window is one chunk, close to them otherwise: the uncached window's padding takes places
// in the sort; README). With a memory (memory_len > 0, Transformer-XL's recurrence) the
// context is no window: see SamplingOptions::memory_len; models with LSH layers (and --no-cache)
// re-run the current segment with the memory per token instead of caching.
#pragma once

#include <functional>
#include <vector>

#include "trainer/model.h"
#include "trainer/sampling.h"

namespace rf {

struct SamplingOptions {
  int64_t tokens = 200;
  int64_t context = 0;       // tokens the model sees per prediction; 0 = train.seq_len
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = the whole vocabulary
  double top_p = 1.0;        // the nucleus, in (0, 1]; 1 = no cut
  uint64_t seed = 1;
  // Only ids below this are sampled (0 = all): a SentencePiece model of fewer pieces than the
  // model's vocab_size (a Hugging Face model whose vocabulary was padded) cannot decode the rest.
  int64_t vocabulary = 0;
  bool cache = true;  // the key/value cache, where the model has one
  // LSH layers cached too, each position's windows fixed when it arrives (generate --lsh-cache;
  // trainer/lsh_generation_windows.h): approximate past bucket_size tokens.
  bool lsh_cache = false;
  // Transformer-XL's recurrence (> 0; generate --memory-len): the text in segments of
  // train.seq_len positions (the prompt's in pieces, then one sampled token at a time), each
  // segment seeing the memory_len positions before it through the key/value cache, which drops
  // all but those when a segment is complete: every token is scored as `eval --memory-len M
  // --segment train.seq_len` scores it, seeing M to M + seq_len - 1 positions back as in
  // training. A token costs the same however long the text grows and nothing restarts; the keys
  // and values kept were computed with their own memories, so deeper layers reach further back.
  // Without the cache (models with LSH layers, which have no exact one, or cache = false), each
  // token re-runs its segment so far, padded on the right to train.seq_len (future pads are
  // masked), with the memory's layer inputs; a complete segment runs as `eval --memory-len M`
  // runs it (the same rotations) and advances the memory, so a token that completes a segment is
  // scored as evaluation scores it. Within a segment an LSH layer's chunks are those of the
  // segment so far (evaluation sorts the whole segment, later positions included).
  // Replaces `context`; needs memory_generation_problem(cfg, memory_len) == "" and no lsh_cache.
  int64_t memory_len = 0;
  // Called after each sampled token with (tokens sampled, options.tokens): progress reports.
  std::function<void(int64_t, int64_t)> on_token;
  // Called with (n, the logits token n is sampled from) before it is sampled: what the model
  // predicted, for tests and for tools that score its choices.
  std::function<void(int64_t, const std::vector<float>&)> on_logits;

  SamplingRule rule() const { return {temperature, top_k, top_p}; }
};

struct GenerationStats {
  bool cached = false;          // whether the key/value cache ran (with a memory or without)
  int64_t restarts = 0;         // times the cached context restarted from its last half
  int64_t memory_len = 0;       // the memory it generated with (0: a window)
  double seconds = 0.0;         // sampling time, prompt included
  double prompt_seconds = 0.0;  // of which the first token's (the prompt's pass)
  int64_t model_positions = 0;  // positions run through the model (the cost)
};

// The logits for the token after `tokens` without a cache: the last T tokens re-run at positions
// 0.., padded on the right (future pads are masked out).
std::vector<float> window_logits(ReformerModel& model, const std::vector<int32_t>& tokens,
                                 int64_t T);

// Why `cfg` cannot generate with a memory of memory_len ("" when it can): positions that restart
// at each segment (axial, learned) collide with the memory's; LSH layers alone that do not see
// the memory have nothing to keep; local layers and LSH layers that see the memory take it in
// whole chunks.
std::string memory_generation_problem(const Config& cfg, int64_t memory_len);

// The prompt followed by `options.tokens` sampled tokens.
std::vector<int32_t> generate(ReformerModel& model, std::vector<int32_t> prompt,
                              const SamplingOptions& options, GenerationStats* stats = nullptr);

}  // namespace rf
