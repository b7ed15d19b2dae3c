// Transformer-XL's segment-level recurrence for forward passes (evaluation): each layer keeps the
// input of its attention (the reversible x2 stream) at the last `max_len` positions before the
// current segment, per example, and the segment's attention runs over [memory; segment] with
// causal masks on the concatenated positions (queries of the memory rows are computed and
// dropped). With relative positions a memory row at distance d from a query is treated as any
// key d positions back, which is what makes cached states meaningful.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/device_buffer.h"

namespace rf {

struct SegmentMemory {
  explicit SegmentMemory(int64_t max_len) : max_len(max_len) {}
  int64_t max_len = 0;  // M
  int64_t len = 0;      // positions held now: grows by each segment up to max_len
  std::vector<DeviceBuffer<float>> layers;  // per layer [batch, len, d_model]
  void clear() {
    len = 0;
    layers.clear();
  }
};

}  // namespace rf
