#include "trainer/flop_count.h"

#include <algorithm>

namespace rf {

StepFlops training_step_flops(const Config& cfg, int64_t batch, int64_t seq_len) {
  const double T = static_cast<double>(batch * seq_len);
  const double D = static_cast<double>(cfg.model.d_model), F = static_cast<double>(cfg.model.d_ff);
  const double H = static_cast<double>(cfg.model.n_heads),
               d = static_cast<double>(cfg.model.d_head);
  const double HD = H * d;
  StepFlops f;
  for (int64_t layer = 0; layer < cfg.model.n_layers; ++layer) {
    const AttentionKind kind = cfg.attention_of_layer(layer);
    // Transformer-XL's memory (full, as from the second segment on): keys and values of M more
    // positions per example in the layers that see it (LSH's shared query-keys and values), which
    // dense attention's queries also see.
    const double memory_rows =
        cfg.layer_sees_memory(layer) ? static_cast<double>(batch * cfg.model.memory_len) : 0.0;
    double rounds = 1, window = 0, projections = 3, hashing = 0;
    if (kind == AttentionKind::kLsh) {
      rounds = static_cast<double>(cfg.lsh.n_hashes);
      window = 2.0 * static_cast<double>(cfg.lsh.bucket_size);
      projections = 2;  // shared query-key
      double rotation_cols = 0;
      for (int64_t factor : cfg.bucket_factors()) rotation_cols += static_cast<double>(factor) / 2;
      // (with a memory its positions are hashed too; their queries also run and are dropped,
      // which is not counted: the model needs the segment's)
      hashing = 2.0 * (T + memory_rows) * H * d * rounds * rotation_cols;
    } else if (kind == AttentionKind::kLocal) {
      window = 2.0 * static_cast<double>(cfg.lsh.local_chunk);
    } else {
      // every key (the segment's later ones masked)
      window = static_cast<double>(seq_len + cfg.model.memory_len);
    }
    const double attention = T * H * rounds * 4 * window * d;  // logits and values
    const double input_projections =  // (with the memory's keys and values)
        T * projections * 2 * D * HD + memory_rows * 2 * 2 * D * HD;
    const double forward = input_projections + T * 2 * HD * D  // output projection
                           + attention + T * 4 * D * F;        // feed-forward
    // What the backward runs again: everything (reversible), all but the products that only
    // rebuild the inputs (stored inputs), or nothing (kept activations).
    const bool kept = cfg.keeps_layer_activations(layer);
    double recomputed = 0;
    if (!cfg.stores_layer(layer))
      recomputed = forward;
    else if (!kept)
      recomputed = forward - T * 2 * HD * D - T * 2 * D * F;
    // Relative positions (Transformer-XL): each forward projects the sinusoids of the distances
    // (W_R) and multiplies every query row with them per head; the backward runs that again in
    // every mode (it reads the workspace of its own forward), then the scores' two gradient
    // products and W_R's weight gradient (the sinusoids are fixed: no input gradient).
    double relative = 0;
    if (cfg.layer_has_relative_term(layer)) {
      const int64_t keys = seq_len + cfg.model.memory_len;
      const double distances = static_cast<double>(
          kind == AttentionKind::kLocal ? std::min(2 * cfg.lsh.local_chunk, keys) : keys);
      const double project = 2 * distances * D * HD, scores = 2 * T * HD * distances;
      relative = 2 * (project + scores) + 2 * scores + project;
    }
    f.layers += 3 * forward + recomputed + hashing + relative;
    f.attention += (kept ? 3 : 4) * attention;
  }
  f.head = 3 * T * 2 * static_cast<double>(cfg.head_width() * cfg.model.vocab_size);
  return f;
}

}  // namespace rf
