// Transformer-XL's segment-level recurrence: each layer that sees the memory
// (Config::layer_sees_memory) keeps the input of its
// attention (the x2 stream, or with one residual stream the stream itself) at the last `max_len`
// positions before the current segment, per example (lane), and the segment's attention runs over
// [memory; segment] with causal masks on the concatenated positions, its queries from the segment
// only (the memory gives keys and values). No gradient flows into the memory; the projections and
// the layer norm applied to it do get theirs. With relative positions a memory row at distance d
// from a query is treated as any key d positions back, which is what makes cached states
// meaningful. An LSH layer hashes the memory's positions with the segment's (lsh.sees_memory), or
// sees the segment alone, its entry in `layers` then staying empty.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/device_buffer.h"

namespace rf {

struct SegmentMemory {
  explicit SegmentMemory(int64_t max_len) : max_len(max_len) {}
  int64_t max_len = 0;  // M
  int64_t len = 0;      // positions held now: grows by each segment up to max_len
  std::vector<DeviceBuffer<float>> layers;  // per layer [batch, len, d_model] (or empty: above)
  // Training: the forward pass writes the next segment's memory here, because the backward pass
  // still reads `layers` (it rebuilds each layer's attention); advance() adopts it.
  std::vector<DeviceBuffer<float>> next;
  int64_t next_len = 0;
  // Step graphs (runtime.step_graphs): a captured step keeps the addresses of `layers` and
  // `next`, so advance() copies `next` into `layers` (device work, which the graph holds) instead
  // of swapping the buffers (host work, which a replay would not do). Once the memory is full the
  // sizes match and the copy allocates nothing.
  bool fixed_buffers = false;

  // Whether the memory holds all it can: from then on (with fixed_buffers) its buffers keep their
  // sizes and addresses, so a step with it can be captured. (Until then the memory grows and its
  // buffers are reallocated; a step graph's warm-up call, eager, takes the last reallocation.)
  bool full() const { return len == max_len; }

  void advance(Executor& ex) {
    if (fixed_buffers)
      copy_layers(ex, next, layers);
    else
      std::swap(layers, next);
    len = next_len;
  }

  // to[i] = from[i] for every layer, on the device; a buffer of another size is reallocated.
  static void copy_layers(Executor& ex, const std::vector<DeviceBuffer<float>>& from,
                          std::vector<DeviceBuffer<float>>& to) {
    to.resize(from.size());
    for (size_t i = 0; i < from.size(); ++i) {
      if (to[i].size() != from[i].size()) to[i] = DeviceBuffer<float>(ex, from[i].size());
      if (from[i].size() > 0) ex.copy(to[i].data(), from[i].data(), from[i].size() * sizeof(float));
    }
  }
  void clear() {
    len = next_len = 0;
    layers.clear();
    next.clear();
  }
};

}  // namespace rf
