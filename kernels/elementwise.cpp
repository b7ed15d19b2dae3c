#include "kernels/elementwise.h"

namespace rf {

void add_scaled(Executor& ex, float* y, const float* x, float alpha, int64_t n) {
  ex.run(n, AddScaled{y, x, alpha});
}

void concat_columns(Executor& ex, float* out, const float* a, const float* b, int64_t rows,
                    int64_t cols_a, int64_t cols_b) {
  ex.run(rows, ConcatColumns{out, a, b, cols_a, cols_b});
}

void split_columns_add(Executor& ex, float* a, float* b, const float* d, int64_t rows,
                       int64_t cols_a, int64_t cols_b) {
  ex.run(rows, SplitColumnsAdd{a, b, d, cols_a, cols_b});
}

void add_row_bias(Executor& ex, float* x, const float* bias, int64_t rows, int64_t cols) {
  ex.run(rows, AddBias{x, bias, cols});
}

void fill(Executor& ex, float* x, int64_t n, float value) {
  ex.run(n, Fill{x, value});
}

void fill_normal(Executor& ex, float* x, int64_t n, const RngStream& stream, float stddev) {
  ex.run(n, RandomNormalFill{x, stream, stddev});
}

void write_bf16_copy(Executor& ex, const float* x, uint16_t* y, int64_t n) {
  ex.run(n, RoundToBf16{x, y});
}

void fill_uniform(Executor& ex, float* x, int64_t n, const RngStream& stream, float low,
                  float high) {
  ex.run(n, RandomUniformFill{x, stream, low, high});
}

}  // namespace rf
