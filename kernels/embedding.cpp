#include "kernels/embedding.h"

#include <algorithm>

#include "kernels/residual.h"

namespace rf {

void embedding_forward(Executor& ex, const EmbeddingArgs& a) {
  EmbedForward op{};
  op.tokens = a.tokens;
  op.table = a.table;
  op.positions = a.positions;
  op.out = a.out;
  op.seq_len = a.seq_len;
  op.d_model = a.d_model;
  op.first_position = a.first_position;
  op.mask = a.dropout;
  ex.run(a.rows * a.d_model, op);
}

TokenGroups group_rows_by_token(Executor& ex, Workspace& ws, const int32_t* host_tokens,
                                int64_t rows, int64_t vocab) {
  std::vector<int32_t>& offsets = ws.host_ints("emb.offsets", static_cast<size_t>(vocab + 1));
  std::vector<int32_t>& order = ws.host_ints("emb.order", static_cast<size_t>(rows));
  std::vector<int32_t>& next = ws.host_ints("emb.next", static_cast<size_t>(vocab));
  std::fill(offsets.begin(), offsets.end(), 0);
  for (int64_t r = 0; r < rows; ++r) ++offsets[host_tokens[r] + 1];
  for (int64_t v = 0; v < vocab; ++v) offsets[v + 1] += offsets[v];
  std::copy(offsets.begin(), offsets.end() - 1, next.begin());
  for (int64_t r = 0; r < rows; ++r) order[next[host_tokens[r]]++] = static_cast<int32_t>(r);
  int32_t* dev_offsets = ws.ints("emb.offsets", offsets.size());
  int32_t* dev_order = ws.ints("emb.order", order.size());
  ex.upload(dev_offsets, offsets.data(), offsets.size() * sizeof(int32_t));
  ex.upload(dev_order, order.data(), order.size() * sizeof(int32_t));
  return {dev_offsets, dev_order};
}

void embedding_backward(Executor& ex, const EmbeddingBackwardArgs& a) {
  const int64_t rows = a.batch * a.seq_len;
  apply_dropout(ex, a.dx, rows, a.d_model, a.dropout);
  // Each table row sums its rows in order (the groups), so no atomics are needed.
  ex.run(a.vocab * a.d_model,
         EmbedTokenBackward{a.groups.offsets, a.groups.order, a.dx, a.dtable, a.d_model});

  const PositionGrads& p = a.positions;
  if (p.kind == PositionKind::kAxial) {
    AxialPositionBackward op{};
    op.dx = a.dx;
    op.daxial_a = p.axial_a;
    op.daxial_b = p.axial_b;
    op.batch = a.batch;
    op.seq_len = a.seq_len;
    op.d_model = a.d_model;
    op.n1 = p.n1;
    op.n2 = p.n2;
    op.d1 = p.d1;
    op.d2 = p.d2;
    ex.run(p.n1 * p.d1 + p.n2 * p.d2, op);
  } else if (p.kind == PositionKind::kLearned) {
    LearnedPositionBackward op{};
    op.dx = a.dx;
    op.dlearned = p.learned;
    op.batch = a.batch;
    op.seq_len = a.seq_len;
    op.d_model = a.d_model;
    ex.run(a.seq_len * a.d_model, op);
  }
}

}  // namespace rf
