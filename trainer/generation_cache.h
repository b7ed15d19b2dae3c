// What cached generation keeps between tokens (ReformerModel::cached_logits): per layer the keys
// and values of every position of the current context, so that a new token's attention reads
// them instead of re-running the window, and with relative positions the projected distance
// encodings W_R R_dist (weights only, computed once). Positions count from the context's start:
// position p of the context is row p of each layer's cache.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/device_buffer.h"

namespace rf {

struct GenerationCache {
  struct Layer {
    DeviceBuffer<float> keys;       // [capacity, heads * d_head]
    DeviceBuffer<float> values;     // [capacity, heads * d_head]
    DeviceBuffer<float> distances;  // relative positions: [rel_len, heads * d_head]; else empty
    int64_t rel_len = 0;
  };
  int64_t capacity = 0;  // positions the context may hold (the window the model was built for)
  int64_t len = 0;       // positions held now
  std::vector<Layer> layers;

  // Starts a new context (the buffers stay).
  void clear() { len = 0; }
};

}  // namespace rf
