#include "kernels/device_peak.h"

namespace rf {
namespace {

struct DevicePeak {
  const char* name_part;  // a part of the name the driver reports
  double fp32, tf32, bf16;
};

// Longer names first: "GH200" and "H200 NVL" contain "H200", "H100 PCIe" contains "H100". The
// plain H100 and H200 names are their SXM parts ("NVIDIA H100 80GB HBM3", "NVIDIA H200").
constexpr DevicePeak kPeaks[] = {
    {"H100 PCIe", 51, 378, 756}, {"H100 NVL", 60, 418, 835}, {"H200 NVL", 60, 418, 835},
    {"GH200", 67, 495, 989},     {"H200", 67, 495, 989},     {"H100", 67, 495, 989},
    {"A100", 19.5, 156, 312},
};

}  // namespace

double dense_peak_tflops(const std::string& device_model, GemmPrecision precision) {
  for (const DevicePeak& d : kPeaks) {
    if (device_model.find(d.name_part) == std::string::npos) continue;
    switch (precision) {
      case GemmPrecision::kFp32:
        return d.fp32;
      case GemmPrecision::kTf32:
        return d.tf32;
      case GemmPrecision::kBf16:
        return d.bf16;
    }
  }
  return 0;
}

}  // namespace rf
