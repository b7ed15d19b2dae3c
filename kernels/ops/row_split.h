// How a kernel over a [rows, cols] array maps its indices to work. A CPU thread walks whole rows
// (span = cols: one contiguous, vectorisable loop per index). A GPU thread takes one column
// (span = 1), so neighbouring threads touch neighbouring addresses and every element (or every
// (row block, column) pair of a column sum) has a thread of its own. Each element's arithmetic,
// and the order in which a column sum adds its rows, is the same for every span, so the result
// does not depend on it (tests/kernels_test.cpp runs both spans on the CPU).
#pragma once

#include "base/hd.h"

namespace rf {

struct RowSplit {
  int64_t cols;
  int64_t span;  // columns per index: cols or 1 (executor.h's row_split), or anything between
  RF_HD int64_t pieces() const { return (cols + span - 1) / span; }
  RF_HD int64_t begin(int64_t piece) const { return piece * span; }
  RF_HD int64_t end(int64_t piece) const {
    return (piece + 1) * span < cols ? (piece + 1) * span : cols;
  }
  // The number of indices that cover `rows` rows (or row blocks).
  RF_HD int64_t indices(int64_t rows) const { return rows * pieces(); }
};

}  // namespace rf
