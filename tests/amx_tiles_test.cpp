// The bf16 operand layouts of the CPU's AMX attention tiles (kernels/cpu/amx_tiles.h) packed
// straight from scattered rows, against the layouts' definitions: every element (rounded to
// bf16, nearest even, as kernels/ops/bf16_round.h rounds) and every padding zero, for rows that
// are not whole tiles, widths that are not whole vectors, scaled rows, and source rows followed
// by NaNs (columns past a row's width must not be read into the operands).
#include "kernels/cpu/amx_tiles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/ops/bf16_round.h"

namespace rf {
namespace {

using cpu::amx::padded_depth;

int64_t padded16(int64_t n) {
  return (n + 15) / 16 * 16;
}

// count rows of cols floats, scattered over a larger array (rows 256 floats apart, in a shuffled
// order, as an LSH tile's rows are), NaNs after each row's cols values; and per-row scales.
struct ScatteredRows {
  int64_t count, cols;
  std::vector<float> storage;
  std::vector<const float*> rows;
  std::vector<float> scales;
  ScatteredRows(int64_t count_, int64_t cols_, uint32_t seed) : count(count_), cols(cols_) {
    constexpr int64_t kLd = 256, kRows = 512;
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    storage.assign(kLd * kRows, std::numeric_limits<float>::quiet_NaN());
    std::vector<int64_t> order(kRows);
    for (int64_t i = 0; i < kRows; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), gen);
    for (int64_t r = 0; r < count; ++r) {
      float* row = storage.data() + order[r] * kLd;
      for (int64_t c = 0; c < cols; ++c) row[c] = uniform(gen);
      rows.push_back(row);
      scales.push_back(0.5f + uniform(gen) * 0.25f);
    }
  }
  // Element (r, c) as bf16 bits: zero outside the rows and columns, scaled when asked.
  uint16_t at(int64_t r, int64_t c, bool scaled) const {
    if (r >= count || c >= cols) return 0;
    return bf16_bits(scaled ? rows[r][c] * scales[r] : rows[r][c]);
  }
};

// The rows layout of the rows as packed by pack_rows_of (m_pad rows).
std::vector<uint16_t> rows_layout(const ScatteredRows& s, int64_t m_pad, bool scaled) {
  std::vector<uint16_t> out(m_pad * padded_depth(s.cols), 0xffff);
  cpu::amx::pack_rows_of(s.rows.data(), scaled ? s.scales.data() : nullptr, s.count, m_pad, s.cols,
                         out.data());
  return out;
}

const int64_t kCounts[] = {1, 15, 40, 64};
const int64_t kWidths[] = {16, 33, 64, 70, 128};

TEST(AmxTiles, RowsPackedFromScatteredRowsAreTheRoundedRowsWithZeroPadding) {
  if (!cpu::amx::available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  int64_t wrong = 0;
  for (int64_t count : kCounts)
    for (int64_t cols : kWidths)
      for (bool scaled : {false, true}) {
        const ScatteredRows s(count, cols, static_cast<uint32_t>(count * 1000 + cols));
        const int64_t m_pad = padded16(count), depth = padded_depth(cols);
        const std::vector<uint16_t> got = rows_layout(s, m_pad, scaled);
        for (int64_t r = 0; r < m_pad; ++r)
          for (int64_t c = 0; c < depth; ++c)
            if (got[r * depth + c] != s.at(r, c, scaled)) {
              ++wrong;
              ADD_FAILURE() << count << " rows of " << cols << (scaled ? ", scaled" : "")
                            << ": element (" << r << ", " << c << ")";
            }
      }
  EXPECT_EQ(wrong, 0);
}

TEST(AmxTiles, PairsAndTransposesMadeFromRowsFollowTheirDefinitions) {
  if (!cpu::amx::available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  for (int64_t count : kCounts)
    for (int64_t cols : kWidths) {
      const ScatteredRows s(count, cols, static_cast<uint32_t>(count * 7 + cols));
      const int64_t m_pad = padded16(count), depth = padded_depth(cols), n = padded16(cols);
      const std::vector<uint16_t> rows = rows_layout(s, m_pad, true);
      const std::string name = std::to_string(count) + " rows of " + std::to_string(cols);

      // B = S [count][n]: pair (p, p + 1) of rows interleaved, column by column.
      const int64_t k_pad = padded_depth(count);
      std::vector<uint16_t> pairs(k_pad * n, 0xffff);
      cpu::amx::pairs_of_rows(rows.data(), depth, count, n, pairs.data());
      for (int64_t p = 0; p < k_pad; ++p)
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(pairs[(p / 2) * n * 2 + j * 2 + p % 2], s.at(p, j, true))
              << name << ": pairs of S, (" << p << ", " << j << ")";

      // B = S^T [cols][m_pad]: element (p, j) is S's (j, p).
      std::vector<uint16_t> pairs_t(depth * m_pad, 0xffff);
      cpu::amx::pairs_transposed_of_rows(rows.data(), depth, m_pad, pairs_t.data());
      for (int64_t p = 0; p < depth; ++p)
        for (int64_t j = 0; j < m_pad; ++j)
          ASSERT_EQ(pairs_t[(p / 2) * m_pad * 2 + j * 2 + p % 2], s.at(j, p, true))
              << name << ": pairs of S^T, (" << p << ", " << j << ")";

      // A = S^T [n][padded_depth(count)]: element (r, c) is S's (c, r).
      std::vector<uint16_t> rows_t(n * k_pad, 0xffff);
      cpu::amx::rows_transposed_of_rows(rows.data(), depth, count, n, rows_t.data());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < k_pad; ++c)
          ASSERT_EQ(rows_t[r * k_pad + c], s.at(c, r, true))
              << name << ": rows of S^T, (" << r << ", " << c << ")";
    }
}

// The layouts made from scattered rows multiply as the fp32 tiles do: C = A B from
// pack_rows_of and pairs_transposed_of_rows of the same rows (S S^T, the scores' shape) within
// bf16 rounding of the double-precision product of the rounded values (fp32 accumulation).
TEST(AmxTiles, ProductOfPackedRowsIsTheirGramMatrix) {
  if (!cpu::amx::available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  const ScatteredRows s(40, 70, 5);
  const int64_t m_pad = padded16(s.count), depth = padded_depth(s.cols);
  const std::vector<uint16_t> rows = rows_layout(s, m_pad, false);
  std::vector<uint16_t> pairs_t(depth * m_pad);
  cpu::amx::pairs_transposed_of_rows(rows.data(), depth, m_pad, pairs_t.data());
  std::vector<float> c(m_pad * m_pad, -1.0f);
  cpu::amx::load_tile_config();
  cpu::amx::multiply(m_pad, m_pad, depth, rows.data(), pairs_t.data(), c.data(), m_pad, false);
  for (int64_t i = 0; i < m_pad; ++i)
    for (int64_t j = 0; j < m_pad; ++j) {
      double want = 0, scale = 0;
      for (int64_t x = 0; x < s.cols; ++x) {
        const double a = bf16_value(s.at(i, x, false)), b = bf16_value(s.at(j, x, false));
        want += a * b;
        scale += std::fabs(a * b);
      }
      EXPECT_NEAR(c[i * m_pad + j], want, 1e-6 * scale + 1e-30) << "(" << i << ", " << j << ")";
    }
}

}  // namespace
}  // namespace rf
