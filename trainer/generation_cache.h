// What cached generation and cached evaluation keep between steps (ReformerModel::
// cached_next_token_logits, forward_cached): per layer the keys and values of every position of
// the current context, so that new positions' attention reads them instead of re-running the
// window, and with relative positions the projected distance encodings W_R R_dist (weights only,
// computed once); for LSH layers (generate --lsh-cache) the shared queries as keys, and the sorted
// orders that fix each position's windows (trainer/lsh_generation_windows.h). Positions count
// from the context's start: position p of the context is row start + p of each layer's cache.
//
// Generation without a memory fills the cache up to its capacity (then restarts its context).
// With a memory of M positions (Transformer-XL's: evaluation, and generation with --memory-len)
// only the last M positions are kept when a new segment starts (in generation a segment arrives
// in pieces: the prompt's, then one token at a time): the context's start moves forward, and
// when the next segment would not fit, the held rows are copied back to row 0 (a capacity of
// 2M + segment makes that copy never overlap: it happens only when start > M = len).
#pragma once

#include <cstdint>
#include <vector>

#include "base/error.h"
#include "kernels/device_buffer.h"
#include "trainer/lsh_generation_windows.h"

namespace rf {

struct GenerationCache {
  struct Layer {
    DeviceBuffer<float> keys;       // [capacity, heads * d_head]
    DeviceBuffer<float> values;     // [capacity, heads * d_head]
    DeviceBuffer<float> distances;  // relative positions: [rel_len, heads * d_head]; else empty
    int64_t rel_len = 0;
    LshGenerationWindows lsh;  // LSH layers: the sorted orders of the context's positions
  };
  int64_t capacity = 0;     // rows of each layer's cache
  int64_t start = 0;        // row of the context's position 0
  int64_t len = 0;          // positions held now
  int64_t memory_len = -1;  // positions kept before each new segment (-1: all)
  // With a memory: positions per segment where a segment arrives in several passes (generation:
  // the prompt's pieces, then one token at a time); 0: each pass is a segment (evaluation).
  int64_t segment = 0;
  int64_t in_segment = 0;     // positions of the current segment held (segment > 0; < segment)
  int64_t max_distance = -1;  // keys further back are masked (same_length; -1: none)
  uint64_t seed = 1;          // train.seed: LSH layers draw the uncached pass's rotations
  std::vector<Layer> layers;

  // Starts a new context (the buffers stay).
  void clear() {
    start = len = in_segment = 0;
    for (Layer& layer : layers) layer.lsh.clear();
  }

  // Positions the current segment still takes (segment > 0): a pass may not cross its end.
  int64_t segment_room() const {
    RF_CHECK(segment > 0, "a memory's segments arrive whole (segment = 0)");
    return segment - in_segment;
  }

  // Before `rows` new positions: with a memory, where they start a segment, drops all but the last
  // memory_len positions; then moves the held rows to row 0 when the new ones (with segments in
  // pieces, the whole segment) would not fit after them. (So the memory's capacity, 2 M + S, never
  // asks for an overlapping move: one happens only when start > M = len.)
  void make_room(Executor& ex, int64_t rows) {
    int64_t reserve = rows;
    if (memory_len >= 0) {
      if (segment > 0)
        RF_CHECK(rows <= segment_room(), "a pass of ", rows, " positions crosses the end of a ",
                 "segment of ", segment, " (", segment_room(), " left)");
      if (in_segment == 0 && len > memory_len) {  // (a new segment)
        start += len - memory_len;
        len = memory_len;
      }
      if (segment > 0) {
        if (in_segment == 0) reserve = segment;
        in_segment = (in_segment + rows) % segment;  // (0 again once the segment is complete)
      }
    }
    if (start + len + reserve <= capacity || start == 0) return;
    RF_CHECK(start >= len, "overlapping copy in the generation cache");
    for (const Layer& layer : layers)  // (LSH layers are cached only without a memory)
      RF_CHECK(layer.lsh.positions() == 0, "LSH windows cannot move in the generation cache");
    for (Layer& layer : layers) {
      if (len == 0) break;  // (nothing held to move)
      const int64_t row_floats = static_cast<int64_t>(layer.keys.size()) / capacity;
      const size_t bytes = static_cast<size_t>(len * row_floats) * sizeof(float);
      ex.copy(layer.keys.data(), layer.keys.data() + start * row_floats, bytes);
      ex.copy(layer.values.data(), layer.values.data() + start * row_floats, bytes);
    }
    start = 0;
  }
};

}  // namespace rf
