// The machinery of `reformer selftest` (after ggml's test-backend-ops): an op is run through its
// launcher on a candidate executor (the GPU, or a CPU kernel variant) and on the reference (the
// CPU's plain kernels) from the same host inputs, and each output is compared by normalised mean
// squared error, NMSE = sum (candidate - reference)^2 / sum reference^2. fp32 passes at NMSE <=
// 1e-7. Products at reduced precision (tf32, bf16) pass when their error against the fp32
// reference is at most twice that of a naive implementation, which rounds the operands the same
// way and multiplies exactly (flash-attention's rule). Integer outputs (buckets, permutations,
// argmaxes) are compared exactly, as the fraction of entries that differ.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/device_buffer.h"

namespace rf::selftest {

constexpr double kFp32Tolerance = 1e-7;

// The verdict on one op at one shape.
struct Comparison {
  std::string op;
  std::string shape;
  std::string output;  // the worst output of the op at this shape
  double error = 0.0;  // NMSE, or the fraction of integer entries that differ
  double tolerance = kFp32Tolerance;
  bool passed() const { return error <= tolerance; }
  // How far the error is past its tolerance (> 1: failed); for picking the worst of several.
  double margin() const { return tolerance > 0 ? error / tolerance : (error > 0 ? INFINITY : 0.0); }
};

// Named host tensors: the inputs of an op, and its outputs after a run.
struct HostTensors {
  std::map<std::string, std::vector<float>> floats;
  std::map<std::string, std::vector<int32_t>> ints;
};

// The same tensors in one executor's memory, by name.
class DeviceTensors {
 public:
  DeviceTensors(Executor& ex, const HostTensors& host);
  float* f(const std::string& name);
  int32_t* i(const std::string& name);
  HostTensors download() const;

 private:
  std::map<std::string, DeviceBuffer<float>> floats_;
  std::map<std::string, DeviceBuffer<int32_t>> ints_;
};

// Runs an op on one executor: its launcher reads and writes the named tensors.
using Launch = std::function<void(Executor&, Workspace&, DeviceTensors&)>;

// Error of a candidate output against a reference output.
double nmse(const std::vector<float>& candidate, const std::vector<float>& reference);
double mismatch_fraction(const std::vector<int32_t>& candidate,
                         const std::vector<int32_t>& reference);

// Thrown by a Checker told to stop_at_first_failure, once it has recorded that failure.
struct FirstFailureRecorded {};

// What an op check needs: the two executors and the tolerance of each kind of output.
class Checker {
 public:
  Checker(Executor& candidate, Executor& reference)
      : candidate_(candidate), reference_(reference) {}
  Executor& candidate() { return candidate_; }
  Executor& reference() { return reference_; }

  // Runs `launch` on both executors from `inputs` and compares the listed outputs (float outputs
  // by NMSE against `tolerance`, integer ones exactly unless `int_tolerance` allows a fraction).
  // Records and returns the worst comparison.
  // `tolerances` overrides `tolerance` for the float outputs it names.
  Comparison compare(const std::string& op, const std::string& shape, const HostTensors& inputs,
                     const std::vector<std::string>& outputs, const Launch& launch,
                     double tolerance = kFp32Tolerance, double int_tolerance = 0.0,
                     const std::map<std::string, double>& tolerances = {});
  // The outputs of `launch` on `ex` from `inputs`.
  static HostTensors run(Executor& ex, const HostTensors& inputs, const Launch& launch);
  // An output a kernel writes rounded to bf16, for the products that read bf16: `bf16_launch`
  // writes it into the float tensor `packed` (two values per float; packed_bf16 below), and
  // `launch` writes the same values in fp32 into `output` on the reference. The candidate's bf16
  // values are held to twice (in RMS) the error of rounding the reference's fp32 values.
  Comparison compare_bf16_output(const std::string& op, const std::string& shape,
                                 const HostTensors& inputs, const std::string& output,
                                 const Launch& launch, const std::string& packed,
                                 const Launch& bf16_launch);
  // Outputs a kernel writes rounded to bf16 in place of fp32, for products that would round them
  // themselves: `bf16_launch`'s values in each packed tensor "<output>_bf16" must be, bit for bit,
  // the candidate's own fp32 `output` of `launch` rounded to bf16 (one run of each launch). The
  // error is the fraction of values that differ, in the worst output; the tolerance 0.
  Comparison compare_bf16_rounding(const std::string& op, const std::string& shape,
                                   const HostTensors& inputs,
                                   const std::vector<std::string>& outputs, const Launch& launch,
                                   const Launch& bf16_launch);
  // Records a comparison (the compare functions record theirs; the GEMMs at reduced precision
  // and the micro-step are made by hand).
  void record(const Comparison& c);
  const std::vector<Comparison>& results() const { return results_; }
  // From now on the first failing comparison ends the sweep: record throws FirstFailureRecorded
  // once it has recorded it. Start-up verification (verify_kernels_or_fail) needs only the first
  // wrong op, so that on a wrong kernel each fallback's sweep ends where it fails.
  void stop_at_first_failure() { stop_at_first_failure_ = true; }

 private:
  Executor& candidate_;
  Executor& reference_;
  std::vector<Comparison> results_;
  bool stop_at_first_failure_ = false;
};

// Deterministic random inputs (normal, scaled), the same on every machine.
std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f);
// v with every element rounded to the precision's mantissa (nearest, ties to even): bf16 keeps 7
// bits, tf32 10; fp32 returns v.
std::vector<float> rounded_to(std::vector<float> v, GemmPrecision precision);
// bf16 values in a float tensor, two to a float (the first in the lower half, as memory holds
// an array of uint16_t): each of `values` rounded to nearest (ties to even), or zeros when
// `values` is empty and `count` says how many. unpacked_bf16 reads the first `count` back.
std::vector<float> packed_bf16(const std::vector<float>& values, int64_t count = -1);
std::vector<float> unpacked_bf16(const std::vector<float>& packed, int64_t count);
std::vector<int32_t> random_ints(int64_t n, uint32_t seed, int32_t below);

// "[rows x cols]" and the like, for shape descriptions.
std::string shape_text(std::initializer_list<int64_t> dims);

}  // namespace rf::selftest
