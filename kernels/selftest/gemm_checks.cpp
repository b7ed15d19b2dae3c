// The GEMM mappings: every transpose combination, leading dimensions larger than the rows, batch
// strides with gaps, alpha and beta; and the named linear-layer helpers in each write mode. At
// fp32 the candidate must match the reference executor; at tf32 or bf16 its error against the
// exact product may be at most twice (in RMS) that of naively rounded operands. Where the
// candidate takes operands a kernel wrote in bf16, those products are checked too.
#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/linear.h"
#include "kernels/selftest/gemm_reference.h"
#include "kernels/selftest/op_checks.h"

namespace rf::selftest {
namespace {

// "NT [33 x 17 x 29]": the transposes and m x n x k, for the shape column.
std::string transposes_and_sizes(const GemmDesc& d) {
  return std::string(d.trans_a ? "T" : "N") + (d.trans_b ? "T" : "N") + " " +
         shape_text({d.m, d.n, d.k});
}

// The mapping check of one description.
void check_desc(Checker& checker, const SweepOptions& options, const GemmDesc& d, uint32_t seed) {
  HostTensors in;
  in.floats["a"] = random_floats(extent_a(d), seed);
  in.floats["b"] = random_floats(extent_b(d), seed + 1);
  in.floats["c"] = random_floats(extent_c(d), seed + 2);
  const std::string shape = transposes_and_sizes(d) + " batch " + std::to_string(d.batch);
  const Launch launch = [d](Executor& ex, Workspace&, DeviceTensors& t) {
    ex.gemm(d, t.f("a"), t.f("b"), t.f("c"));
  };
  if (options.precision == GemmPrecision::kFp32) {
    checker.compare("gemm (GemmDesc)", shape, in, {"c"}, launch);
    return;
  }
  // Reduced precision: against the exact product, relative to naively rounded operands.
  DeviceTensors t(checker.candidate(), in);
  Workspace ws(checker.candidate());
  launch(checker.candidate(), ws, t);
  checker.candidate().synchronize();
  const std::vector<float> got = t.download().floats.at("c");
  const std::vector<float> exact =
      reference_gemm(d, in.floats.at("a"), in.floats.at("b"), in.floats.at("c"));
  const std::vector<float> naive =
      reference_gemm(d, rounded_to(in.floats.at("a"), options.precision),
                     rounded_to(in.floats.at("b"), options.precision), in.floats.at("c"));
  Comparison c;
  c.op = std::string("gemm (GemmDesc) at ") + precision_name(options.precision);
  c.shape = shape;
  c.output = "c";
  c.error = nmse(got, exact);
  c.tolerance = std::max(4.0 * nmse(naive, exact), kFp32Tolerance);  // RMS at most twice
  checker.record(c);
}

// Products whose operands a kernel wrote in bf16 (A, B or both, the other fp32), on a candidate
// that takes them (gemm_takes_bf16_operands). Every operand is then a bf16 value, so the product
// must equal the exact product of the rounded operands to fp32 rounding: fp32 accumulation of
// exact products, whatever the kernel. Single products only (GemmDesc takes no batched bf16).
void check_bf16_operands(Checker& checker, GemmDesc d, uint32_t seed) {
  HostTensors in;
  in.floats["a"] = random_floats(extent_a(d), seed);
  in.floats["b"] = random_floats(extent_b(d), seed + 1);
  in.floats["c"] = random_floats(extent_c(d), seed + 2);
  in.floats["a_bf16"] = packed_bf16(in.floats.at("a"));
  in.floats["b_bf16"] = packed_bf16(in.floats.at("b"));
  const std::vector<float> want =
      reference_gemm(d, rounded_to(in.floats.at("a"), GemmPrecision::kBf16),
                     rounded_to(in.floats.at("b"), GemmPrecision::kBf16), in.floats.at("c"));
  for (const auto& [a_type, b_type] : {std::pair{OperandType::kBf16, OperandType::kFp32},
                                       std::pair{OperandType::kFp32, OperandType::kBf16},
                                       std::pair{OperandType::kBf16, OperandType::kBf16}}) {
    d.a_type = a_type;
    d.b_type = b_type;
    const HostTensors got =
        Checker::run(checker.candidate(), in, [d](Executor& ex, Workspace&, DeviceTensors& t) {
          ex.gemm(d, d.a_type == OperandType::kBf16 ? t.f("a_bf16") : t.f("a"),
                  d.b_type == OperandType::kBf16 ? t.f("b_bf16") : t.f("b"), t.f("c"));
        });
    Comparison c;
    c.op = "gemm (bf16 operands)";
    c.shape = transposes_and_sizes(d) + (a_type == OperandType::kBf16 ? " bf16 A" : "") +
              (b_type == OperandType::kBf16 ? " bf16 B" : "");
    c.output = "c";
    c.error = nmse(got.floats.at("c"), want);
    checker.record(c);
  }
}

// At fp32 only (reduced precision is covered by the mappings).
void check_linear(Checker& checker, int64_t rows, int64_t n_in, int64_t n_out, Write write,
                  uint32_t seed) {
  HostTensors in;
  in.floats["x"] = random_floats(rows * n_in, seed);
  in.floats["w"] = random_floats(n_in * n_out, seed + 1);
  in.floats["dy"] = random_floats(rows * n_out, seed + 2);
  in.floats["y"] = random_floats(rows * n_out, seed + 3);
  in.floats["dx"] = random_floats(rows * n_in, seed + 4);
  in.floats["dw"] = random_floats(n_in * n_out, seed + 5);
  const char* mode = write == Write::kOverwrite    ? "overwrite"
                     : write == Write::kAccumulate ? "accumulate"
                                                   : "subtract";
  const std::string shape = shape_text({rows, n_in, n_out}) + " " + mode;
  checker.compare("linear_forward", shape, in, {"y"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    linear_forward(ex, matrix(t.f("x"), rows, n_in), matrix(t.f("w"), n_in, n_out),
                                   matrix(t.f("y"), rows, n_out), write);
                  });
  checker.compare(
      "linear_input_grad", shape, in, {"dx"}, [=](Executor& ex, Workspace&, DeviceTensors& t) {
        linear_input_grad(ex, matrix(t.f("dy"), rows, n_out), matrix(t.f("w"), n_in, n_out),
                          matrix(t.f("dx"), rows, n_in), write);
      });
  if (write != Write::kOverwrite) return;  // weight gradients always accumulate
  checker.compare("linear_weight_grad", shape_text({rows, n_in, n_out}), in, {"dw"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    linear_weight_grad(ex, matrix(t.f("x"), rows, n_in),
                                       matrix(t.f("dy"), rows, n_out),
                                       matrix(t.f("dw"), n_in, n_out));
                  });
}

}  // namespace

void check_gemm_ops(Checker& checker, const SweepOptions& options) {
  uint32_t seed = 1000;
  const std::vector<std::vector<int64_t>> sizes =
      options.quick ? std::vector<std::vector<int64_t>>{{33, 17, 29}}
                    : std::vector<std::vector<int64_t>>{
                          {1, 1, 1},
                          {1, 7, 3},
                          {9, 1, 5},
                          {33, 17, 29},
                          {64, 64, 64},
                          {129, 65, 131},
                          // (deeper than 512, 40 wide: the CPU's bf16 products in blocks
                          // of the whole depth, or in 1024-deep slices, kernels/cpu/
                          // onednn_matmul.h's kThinBf16Plan)
                          {40, 600, 1000},
                          {40, 200, 2100}};
  for (const auto& mnk : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t batch : {int64_t{1}, int64_t{3}})
          check_desc(checker, options,
                     padded_gemm_desc(ta, tb, mnk[0], mnk[1], mnk[2], batch, 0.75f, 0.5f), seed++);
  if (checker.candidate().gemm_takes_bf16_operands())
    for (const auto& mnk : sizes)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          check_bf16_operands(
              checker, padded_gemm_desc(ta, tb, mnk[0], mnk[1], mnk[2], 1, 0.75f, 0.5f), seed++);
  // The linear helpers at fp32 (reduced precision is covered by the mappings above).
  if (options.precision != GemmPrecision::kFp32) return;
  const std::vector<std::vector<int64_t>> shapes =
      options.quick
          ? std::vector<std::vector<int64_t>>{{37, 16, 24}}
          : std::vector<std::vector<int64_t>>{{1, 1, 1}, {1, 16, 24}, {37, 16, 24}, {300, 64, 96}};
  for (const auto& s : shapes)
    for (Write write : {Write::kOverwrite, Write::kAccumulate, Write::kSubtract})
      check_linear(checker, s[0], s[1], s[2], write, seed += 10);
}

}  // namespace rf::selftest
