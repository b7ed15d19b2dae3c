#include "kernels/selftest/op_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "base/philox.h"
#include "base/philox_batch.h"
#include "kernels/fast_math.h"
#include "kernels/ops/bf16_round.h"

namespace rf::selftest {

DeviceTensors::DeviceTensors(Executor& ex, const HostTensors& host) {
  for (const auto& [name, values] : host.floats) {
    DeviceBuffer<float> b(ex, values.size());
    if (!values.empty()) b.upload(values);
    floats_.emplace(name, std::move(b));
  }
  for (const auto& [name, values] : host.ints) {
    DeviceBuffer<int32_t> b(ex, values.size());
    if (!values.empty()) b.upload(values);
    ints_.emplace(name, std::move(b));
  }
}

float* DeviceTensors::f(const std::string& name) {
  auto it = floats_.find(name);
  RF_CHECK(it != floats_.end(), "no float tensor '", name, "'");
  return it->second.data();
}

int32_t* DeviceTensors::i(const std::string& name) {
  auto it = ints_.find(name);
  RF_CHECK(it != ints_.end(), "no int tensor '", name, "'");
  return it->second.data();
}

HostTensors DeviceTensors::download() const {
  HostTensors host;
  for (const auto& [name, b] : floats_) host.floats[name] = b.download();
  for (const auto& [name, b] : ints_) host.ints[name] = b.download();
  return host;
}

double nmse(const std::vector<float>& candidate, const std::vector<float>& reference) {
  RF_CHECK(candidate.size() == reference.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double d = static_cast<double>(candidate[i]) - reference[i];
    diff += d * d;
    norm += static_cast<double>(reference[i]) * reference[i];
  }
  if (!std::isfinite(diff)) return INFINITY;
  return norm > 0.0 ? diff / norm : diff;
}

double mismatch_fraction(const std::vector<int32_t>& candidate,
                         const std::vector<int32_t>& reference) {
  RF_CHECK(candidate.size() == reference.size());
  if (reference.empty()) return 0.0;
  int64_t differ = 0;
  for (size_t i = 0; i < reference.size(); ++i) differ += candidate[i] != reference[i];
  return static_cast<double>(differ) / static_cast<double>(reference.size());
}

HostTensors Checker::run(Executor& ex, const HostTensors& inputs, const Launch& launch) {
  DeviceTensors tensors(ex, inputs);
  Workspace ws(ex);
  launch(ex, ws, tensors);
  ex.synchronize();
  return tensors.download();
}

Comparison Checker::compare(const std::string& op, const std::string& shape,
                            const HostTensors& inputs, const std::vector<std::string>& outputs,
                            const Launch& launch, double tolerance, double int_tolerance,
                            const std::map<std::string, double>& tolerances) {
  const HostTensors got = run(candidate_, inputs, launch);
  const HostTensors want = run(reference_, inputs, launch);
  Comparison worst;
  worst.op = op;
  worst.shape = shape;
  worst.error = -1.0;
  for (const std::string& name : outputs) {
    Comparison c = worst;
    c.output = name;
    if (want.floats.count(name)) {
      c.error = nmse(got.floats.at(name), want.floats.at(name));
      const auto own = tolerances.find(name);
      c.tolerance = own != tolerances.end() ? own->second : tolerance;
    } else {
      RF_CHECK(want.ints.count(name), "op ", op, " has no output '", name, "'");
      c.error = mismatch_fraction(got.ints.at(name), want.ints.at(name));
      c.tolerance = int_tolerance;
    }
    // The worst is the one furthest past (or closest to) its tolerance.
    if (worst.error < 0 || c.margin() > worst.margin()) worst = c;
  }
  record(worst);
  return worst;
}

void Checker::record(const Comparison& c) {
  results_.push_back(c);
  if (stop_at_first_failure_ && !c.passed()) throw FirstFailureRecorded{};
}

Comparison Checker::compare_bf16_output(const std::string& op, const std::string& shape,
                                        const HostTensors& inputs, const std::string& output,
                                        const Launch& launch, const std::string& packed,
                                        const Launch& bf16_launch) {
  const std::vector<float> want = run(reference_, inputs, launch).floats.at(output);
  const std::vector<float> got = unpacked_bf16(
      run(candidate_, inputs, bf16_launch).floats.at(packed), static_cast<int64_t>(want.size()));
  Comparison c;
  c.op = op;
  c.shape = shape;
  c.output = packed;
  c.error = nmse(got, want);
  c.tolerance = std::max(4.0 * nmse(rounded_to(want, GemmPrecision::kBf16), want), kFp32Tolerance);
  record(c);
  return c;
}

Comparison Checker::compare_bf16_rounding(const std::string& op, const std::string& shape,
                                          const HostTensors& inputs,
                                          const std::vector<std::string>& outputs,
                                          const Launch& launch, const Launch& bf16_launch) {
  const HostTensors fp32 = run(candidate_, inputs, launch);
  const HostTensors bf16 = run(candidate_, inputs, bf16_launch);
  Comparison worst;
  worst.op = op;
  worst.shape = shape;
  worst.tolerance = 0.0;
  for (const std::string& output : outputs) {
    std::vector<float> want = fp32.floats.at(output);
    for (float& x : want) x = bf16_rounded(x);  // (as the products round their operands)
    const std::vector<float> got =
        unpacked_bf16(bf16.floats.at(output + "_bf16"), static_cast<int64_t>(want.size()));
    int64_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i)
      differ += bits_of_float(got[i]) != bits_of_float(want[i]);  // (NaN equals its own bits)
    const double error =
        want.empty() ? 0.0 : static_cast<double>(differ) / static_cast<double>(want.size());
    if (worst.output.empty() || error > worst.error) {
      worst.output = output + "_bf16";
      worst.error = error;
    }
  }
  record(worst);
  return worst;
}

std::vector<float> packed_bf16(const std::vector<float>& values, int64_t count) {
  const size_t n = count < 0 ? values.size() : static_cast<size_t>(count);
  std::vector<uint16_t> bits(n, 0);
  for (size_t i = 0; i < values.size() && i < n; ++i) bits[i] = bf16_bits(values[i]);
  std::vector<float> packed((n + 1) / 2, 0.0f);
  if (n > 0) std::memcpy(packed.data(), bits.data(), n * sizeof(uint16_t));
  return packed;
}

std::vector<float> unpacked_bf16(const std::vector<float>& packed, int64_t count) {
  RF_CHECK(static_cast<size_t>(count) <= 2 * packed.size(), "only ", 2 * packed.size(),
           " bf16 values packed, ", count, " asked for");
  std::vector<uint16_t> bits(static_cast<size_t>(count));
  if (count > 0) std::memcpy(bits.data(), packed.data(), bits.size() * sizeof(uint16_t));
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) values[i] = bf16_value(bits[i]);
  return values;
}

namespace {

// x rounded to nearest (ties to even) with `mantissa_bits` bits kept: 7 for bf16, 10 for tf32.
float round_mantissa(float x, int mantissa_bits) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;  // inf, nan
  const int drop = 23 - mantissa_bits;
  const uint32_t half = 1u << (drop - 1), lsb = (bits >> drop) & 1u;
  bits = (bits + half - 1 + lsb) & ~((1u << drop) - 1);
  float y;
  std::memcpy(&y, &bits, sizeof(y));
  return y;
}

}  // namespace

std::vector<float> rounded_to(std::vector<float> v, GemmPrecision precision) {
  if (precision == GemmPrecision::kFp32) return v;
  const int bits = precision == GemmPrecision::kBf16 ? 7 : 10;
  for (float& x : v) x = round_mantissa(x, bits);
  return v;
}

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale) {
  const RngStream stream = make_rng_stream(seed, RngPurpose::kSampling, 0, 0, 0, 0);
  // The stream's normals a batch of Philox blocks at a time: in a sanitizer build drawing them
  // one by one (a block per element) was a quarter of a sweep's time.
  std::vector<float> v(static_cast<size_t>(n));
  philox_stream_normals(stream, n, v.data());
  for (float& x : v) x *= scale;
  return v;
}

std::vector<int32_t> random_ints(int64_t n, uint32_t seed, int32_t below) {
  const RngStream stream = make_rng_stream(seed, RngPurpose::kSampling, 1, 0, 0, 0);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] =
        static_cast<int32_t>(stream.bits(static_cast<uint64_t>(i)) % static_cast<uint32_t>(below));
  return v;
}

std::string shape_text(std::initializer_list<int64_t> dims) {
  std::ostringstream s;
  s << "[";
  bool first = true;
  for (int64_t d : dims) {
    s << (first ? "" : " x ") << d;
    first = false;
  }
  s << "]";
  return s.str();
}

}  // namespace rf::selftest
