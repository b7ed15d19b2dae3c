// Launchers of the input embedding: token table plus position embedding (axial, learned, or none)
// with embedding dropout, and the gradients of the tables. The token table's gradient sums rows in
// a fixed order: rows are grouped by token on the host when a batch is staged, so no atomics are
// needed on any device.
#pragma once

#include <cstdint>

#include "kernels/device_buffer.h"

namespace rf {

struct EmbeddingArgs {
  const int32_t* tokens = nullptr;  // [rows]
  const float* table = nullptr;     // [vocab, d_model]
  PositionTable positions;
  float* out = nullptr;  // [rows, d_model]
  int64_t rows = 0, seq_len = 0, d_model = 0;
  int64_t first_position = 0;  // position of each sequence's first row
  DropoutMask dropout;
};
void embedding_forward(Executor& ex, const EmbeddingArgs& args);

// The gradient tables that match a PositionTable (null where the table does not exist).
struct PositionGrads {
  PositionKind kind = PositionKind::kNone;
  float* axial_a = nullptr;  // [n1, d1]
  float* axial_b = nullptr;  // [n2, d2]
  float* learned = nullptr;  // [max_len, d_model]
  int64_t n1 = 1, n2 = 1, d1 = 0, d2 = 0;
};

// A batch's rows grouped by token, in executor memory: the rows holding token v are
// order[offsets[v] .. offsets[v + 1]), in increasing order.
struct TokenGroups {
  const int32_t* offsets = nullptr;  // [vocab + 1]
  const int32_t* order = nullptr;    // [rows]
};
// Groups rows by token with a counting sort on the host (scratch kept in `ws` between steps) and
// uploads the groups into `ws`. It runs when a batch is staged, before the step's device work, so
// that work holds no transfer from the host and can be captured and replayed.
TokenGroups group_rows_by_token(Executor& ex, Workspace& ws, const int32_t* host_tokens,
                                int64_t rows, int64_t vocab);

struct EmbeddingBackwardArgs {
  float* dx = nullptr;      // [batch * seq_len, d_model]; dropout applied in place
  TokenGroups groups;       // of the batch's tokens (group_rows_by_token)
  float* dtable = nullptr;  // [vocab, d_model], accumulated
  PositionGrads positions;  // accumulated
  int64_t batch = 0, seq_len = 0, d_model = 0, vocab = 0;
  DropoutMask dropout;
};
void embedding_backward(Executor& ex, const EmbeddingBackwardArgs& args);

}  // namespace rf
