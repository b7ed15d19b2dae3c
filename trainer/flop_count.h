// FLOPs of one training step, counted from the GEMMs the step runs (element-wise work is not
// counted). Each forward GEMM has two backward GEMMs. A reversible layer runs its forward twice
// (the forward pass and the recomputation in the backward pass), so it costs 4x its forward GEMM
// FLOPs; stored layers that recompute (model.recompute: layers) skip the recomputed output
// projection and second feed-forward product, which only the reversible rebuild needs; layers
// that keep their activations (model.recompute: none, and a reversible stack's
// model.stored_top_layers) cost 3x. LSH hashing runs once. The head
// runs forward once and backward once (3x). Relative positions add their products (counted in
// flop_count.cpp).
// With model.memory_len the memory is counted full (as it is from the second segment on).
#pragma once

#include "trainer/config.h"

namespace rf {

struct StepFlops {
  double layers = 0;     // reversible stack, all passes
  double attention = 0;  // of which the fused attention passes' products (not GEMM launches)
  double head = 0;
  double total() const { return layers + head; }
};

StepFlops training_step_flops(const Config& cfg, int64_t batch, int64_t seq_len);

}  // namespace rf
