// Launchers of Transformer-XL's relative position term (the fused attention adds it to its scores:
// kernels/chunked_attention.h). With u, v learned per head and r_d = W_R R_d the projected
// sinusoid of distance d, the score of query i and key j is
//   (q_i + u) . k_j / sqrt(d_head)  +  (q_i + v) . r_{i-j} / sqrt(d_head),
// the first term being ordinary attention with shifted queries, the second the relative scores
// P[i, dist] = (q_i + v) . r_dist / sqrt(d_head) for every query and distance, one strided GEMM per
// head: the "relative shift" is the attention reading P at dist = i - j, never a per-pair table.
#pragma once

#include "kernels/device_buffer.h"

namespace rf {

// table [rows, width] = the sinusoid of distance d (clamped at clamp_len > 0) in row d.
void relative_sinusoids(Executor& ex, float* table, int64_t rows, int64_t width, int64_t clamp_len);

struct RelativeScoresArgs {
  int64_t batch = 1, heads = 1, seq_len = 0, d = 0;
  int64_t distances = 0;      // rel_len: P holds distances 0 .. distances - 1
  const float* qv = nullptr;  // [batch * seq_len, heads * d]: queries plus v
  const float* r = nullptr;   // [distances, heads * d]: projected sinusoids
  float scale = 1.0f;         // 1 / sqrt(d)
};

// scores [heads, batch * seq_len, distances] (head-major, as the attention reads them) =
// scale * qv_h r_h^T per head.
void relative_scores(Executor& ex, const RelativeScoresArgs& args, float* scores);

// The backward of relative_scores for its gradient dscores (same layout): dqv [batch * seq_len,
// heads * d] = scale * dscores r (written), dr [distances, heads * d] = scale * sum over b of
// dscores^T qv (written).
void relative_scores_backward(Executor& ex, const RelativeScoresArgs& args, const float* dscores,
                              float* dqv, float* dr);

}  // namespace rf
