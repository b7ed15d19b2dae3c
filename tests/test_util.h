// Helpers shared by the tests: a CPU executor, random host data, host<->device copies, and a
// central finite-difference checker for directional derivatives.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/device_buffer.h"
#include "kernels/lsh_buckets.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/selftest/gemm_reference.h"

namespace rf::test {

inline Executor& cpu() {
  static std::unique_ptr<Executor> ex = make_cpu_executor(0);
  return *ex;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline DeviceBuffer<float> to_device(const std::vector<float>& host) {
  DeviceBuffer<float> b(cpu(), host.size());
  b.upload(host);
  return b;
}

inline DeviceBuffer<int32_t> to_device(const std::vector<int32_t>& host) {
  DeviceBuffer<int32_t> b(cpu(), host.size());
  b.upload(host);
  return b;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// A batched GEMM description with padded leading dimensions and gaps between batch entries, so a
// mapping that ignores lda/ldb/ldc or the strides gives a wrong answer.
using selftest::padded_gemm_desc;

// Arguments of lsh_sort for `segments` arrays of `rounds` rounds of seq_len bucket ids, each
// round's ids offset by round * buckets_per_round.
inline LshSortArgs sort_args(const int32_t* buckets, int32_t* perm, int32_t* undo, int64_t segments,
                             int64_t seq_len, int64_t rounds, int64_t buckets_per_round) {
  LshSortArgs a;
  a.buckets = buckets;
  a.perm = perm;
  a.undo = undo;
  a.segments = segments;
  a.seq_len = seq_len;
  a.n_rounds = rounds;
  a.total_buckets = rounds * buckets_per_round;
  return a;
}

// A whole file's bytes ("" when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A CPU executor whose single products run in bf16, or null with *reason set when this CPU has no
// bf16 instructions (tests then skip with the reason).
inline std::unique_ptr<Executor> bf16_cpu_or_skip_reason(std::string* reason) {
  try {
    return make_cpu_executor(0, GemmPrecision::kBf16);
  } catch (const Error& e) {
    *reason = std::string("this CPU has no bf16 instructions: ") + e.what();
    return nullptr;
  }
}

// Each value rounded to bf16 by the scalar rule (kernels/ops/bf16_round.h).
inline std::vector<uint16_t> bf16_bits_of(const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = bf16_bits(v[i]);
  return bits;
}

// C after ex.gemm(d, A, B, C) with the host arrays a, b, c copied to ex's memory first; an
// operand the description says is bf16 (d.a_type, d.b_type) is copied as bf16_bits_of it.
inline std::vector<float> gemm_result(Executor& ex, const GemmDesc& d, const std::vector<float>& a,
                                      const std::vector<float>& b, const std::vector<float>& c) {
  DeviceBuffer<float> da, db, dc(ex, c.size());
  DeviceBuffer<uint16_t> a16, b16;
  // One operand in ex's memory, as fp32 or as bf16 bits per its type.
  auto upload = [&ex](OperandType type, const std::vector<float>& host, DeviceBuffer<float>& fp32,
                      DeviceBuffer<uint16_t>& bf16) -> const void* {
    if (type == OperandType::kBf16) {
      bf16 = DeviceBuffer<uint16_t>(ex, host.size());
      bf16.upload(bf16_bits_of(host));
      return bf16.data();
    }
    fp32 = DeviceBuffer<float>(ex, host.size());
    fp32.upload(host);
    return fp32.data();
  };
  const void* a_operand = upload(d.a_type, a, da, a16);
  const void* b_operand = upload(d.b_type, b, db, b16);
  dc.upload(c);
  ex.gemm(d, a_operand, b_operand, dc.data());
  return dc.download();
}

// A product with a bf16 operand as an executor that takes bf16 operands computes it, on any CPU:
// both operands as the bf16 values they hold or round to, multiplied by `fp32` in fp32 (exact
// products, fp32 sums). For the tests' stand-ins for a GPU at bf16.
inline void gemm_of_bf16_values(Executor& fp32, const GemmDesc& d, const void* a, const void* b,
                                float* c) {
  auto values = [](const void* x, OperandType type, OperandLayout layout) {
    std::vector<float> v(static_cast<size_t>(std::max<int64_t>(layout.span(), 0)));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = type == OperandType::kBf16 ? bf16_value(static_cast<const uint16_t*>(x)[i])
                                        : bf16_rounded(static_cast<const float*>(x)[i]);
    return v;
  };
  const std::vector<float> a_values = values(a, d.a_type, operand_layout_a(d));
  const std::vector<float> b_values = values(b, d.b_type, operand_layout_b(d));
  GemmDesc e = d;
  e.a_type = e.b_type = OperandType::kFp32;
  fp32.gemm(e, a_values.data(), b_values.data(), c);
}

// Max |a - b| relative to max |b|.
inline double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, double{std::fabs(a[i] - b[i])});
    scale = std::max(scale, double{std::fabs(b[i])});
  }
  return diff / scale;
}

// Checks the analytic directional derivative <grad, direction> against the central difference
// (f(x + eps d) - f(x - eps d)) / (2 eps), where `perturb(s)` sets x = x0 + s * d and `loss()`
// evaluates f. Tolerance is relative to the larger magnitude, with an absolute floor.
inline void expect_directional_derivative(const std::function<void(float)>& perturb,
                                          const std::function<double()>& loss, double analytic,
                                          double eps, double rel_tol, const std::string& what) {
  perturb(static_cast<float>(eps));
  const double plus = loss();
  perturb(static_cast<float>(-eps));
  const double minus = loss();
  perturb(0.0f);
  const double numeric = (plus - minus) / (2.0 * eps);
  const double scale = std::max({std::fabs(numeric), std::fabs(analytic), 1e-3});
  EXPECT_LE(std::fabs(numeric - analytic) / scale, rel_tol)
      << what << ": analytic " << analytic << " vs finite difference " << numeric;
}

}  // namespace rf::test
