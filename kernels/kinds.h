// The typed choices the kernel layer takes from an experiment file: where kernels run, at which
// GEMM precision, and the feed-forward activation. The config parses each YAML string once into
// these (their order is the order of the schema's choices); nothing downstream compares strings.
#pragma once

#include <string>

namespace rf {

// runtime.device
enum class Device : int { kCpu = 0, kCuda = 1 };

// runtime.precision: what a GEMM multiplies (it always accumulates and stores fp32): fp32; TF32
// tensor cores (cuBLAS only); or bf16-rounded operands (oneDNN's bf16 kernels on the CPU for
// single products, cuBLAS's bf16 tensor cores on the GPU).
enum class GemmPrecision : int { kFp32 = 0, kTf32 = 1, kBf16 = 2 };

// model.activation
enum class Activation : int { kGelu = 0, kRelu = 1 };

inline const char* device_name(Device d) {
  return d == Device::kCuda ? "cuda" : "cpu";
}
inline const char* precision_name(GemmPrecision p) {
  return p == GemmPrecision::kTf32 ? "tf32" : p == GemmPrecision::kBf16 ? "bf16" : "fp32";
}
inline const char* activation_name(Activation a) {
  return a == Activation::kRelu ? "relu" : "gelu";
}

// The inverses of device_name and precision_name, for names already checked against them.
inline Device parse_device(const std::string& name) {
  return name == device_name(Device::kCuda) ? Device::kCuda : Device::kCpu;
}
inline GemmPrecision parse_precision(const std::string& name) {
  for (GemmPrecision p : {GemmPrecision::kTf32, GemmPrecision::kBf16})
    if (name == precision_name(p)) return p;
  return GemmPrecision::kFp32;
}

}  // namespace rf
