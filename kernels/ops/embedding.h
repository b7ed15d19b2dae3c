// Token embedding plus position embedding (axial as in trax/HF, learned absolute, or none), and
// their gradients. Rows are the flattened [batch, seq_len] tokens.
#pragma once

#include "base/hd.h"
#include "kernels/ops/dropout_mask.h"

namespace rf {

enum class PositionKind : int { kNone = 0, kAxial = 1, kLearned = 2 };

// Where the position table lives and how position t maps into it. Axial (n1, n2) with feature
// split (d1, d2): position t gets axial_a[t / n2] (d1 features) concatenated with
// axial_b[t % n2] (d2 features), as trax and HF map it.
struct PositionTable {
  PositionKind kind = PositionKind::kNone;
  const float* axial_a = nullptr;  // [n1, d1]
  const float* axial_b = nullptr;  // [n2, d2]
  const float* learned = nullptr;  // [max_len, d_model]
  int64_t n2 = 1, d1 = 0, d2 = 0;

  RF_HD float at(int64_t t, int64_t c, int64_t d_model) const {
    if (kind == PositionKind::kAxial)
      return c < d1 ? axial_a[(t / n2) * d1 + c] : axial_b[(t % n2) * d2 + (c - d1)];
    if (kind == PositionKind::kLearned) return learned[t * d_model + c];
    return 0.0f;
  }
};

// out[row, c] = dropout(table[tokens[row], c] + position(first_position + row % seq_len, c)).
// Index = element.
struct EmbedForward {
  const int32_t* tokens;  // [rows]
  const float* table;     // [vocab, d_model]
  PositionTable positions;
  float* out;  // [rows, d_model]
  int64_t seq_len, d_model;
  int64_t first_position;  // of each sequence's first row (cached generation: its new tokens)
  DropoutMask mask;
  RF_HD void operator()(int64_t i) const {
    const int64_t row = i / d_model, c = i % d_model;
    const float v = table[static_cast<int64_t>(tokens[row]) * d_model + c] +
                    positions.at(first_position + row % seq_len, c, d_model);
    out[i] = v * mask.scale(row, c);
  }
};

// dtable[v, c] += sum of dx[row, c] over the rows holding token v. The rows are grouped by token
// on the host (order[offsets[v] .. offsets[v+1]]), so the sum has a fixed order and no atomics.
// Index = v * d_model + c.
struct EmbedTokenBackward {
  const int32_t* offsets;  // [vocab + 1]
  const int32_t* order;    // [rows]
  const float* dx;         // [rows, d_model]
  float* dtable;           // [vocab, d_model]
  int64_t d_model;
  RF_HD void operator()(int64_t i) const {
    const int64_t v = i / d_model, c = i % d_model;
    float s = 0.0f;
    for (int32_t j = offsets[v]; j < offsets[v + 1]; ++j)
      s += dx[static_cast<int64_t>(order[j]) * d_model + c];
    dtable[i] += s;
  }
};

// Gradients of the axial tables. Index i < n1*d1 addresses daxial_a, the rest daxial_b.
struct AxialPositionBackward {
  const float* dx;  // [batch, seq_len, d_model]
  float* daxial_a;  // [n1, d1]
  float* daxial_b;  // [n2, d2]
  int64_t batch, seq_len, d_model, n1, n2, d1, d2;
  RF_HD void operator()(int64_t i) const {
    float s = 0.0f;
    if (i < n1 * d1) {
      const int64_t a = i / d1, c = i % d1;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < n2; ++j) s += dx[(b * seq_len + a * n2 + j) * d_model + c];
      daxial_a[i] += s;
    } else {
      const int64_t k = i - n1 * d1;
      const int64_t j = k / d2, c = k % d2;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t a = 0; a < n1; ++a) s += dx[(b * seq_len + a * n2 + j) * d_model + d1 + c];
      daxial_b[k] += s;
    }
  }
};

// dlearned[t, c] += sum over the batch of dx[b, t, c]. Index = t * d_model + c.
struct LearnedPositionBackward {
  const float* dx;
  float* dlearned;
  int64_t batch, seq_len, d_model;
  RF_HD void operator()(int64_t i) const {
    float s = 0.0f;
    for (int64_t b = 0; b < batch; ++b) s += dx[b * seq_len * d_model + i];
    dlearned[i] += s;
  }
};

}  // namespace rf
