#include "trainer/training_memory.h"

#include <cstring>

namespace rf {

TrainingMemory::TrainingMemory(const Config& cfg, const BatchGeometry& geometry)
    : geometry_(geometry),
      layers_(cfg.model.n_layers),
      d_model_(cfg.model.d_model),
      memory_unit_(cfg.memory_unit()),
      memory_unit_rule_(cfg.memory_unit_rule()) {
  for (int64_t l = 0; l < layers_; ++l) {
    sees_memory_.push_back(cfg.layer_sees_memory(l));
    memory_layers_ += sees_memory_.back() ? '1' : '0';
  }
  for (int64_t m = 0; m < geometry.accum; ++m) {
    memories_.emplace_back(cfg.model.memory_len);
    memories_.back().fixed_buffers = cfg.runtime.step_graphs;
  }
}

SegmentMemory& TrainingMemory::for_batch(int64_t micro, const TokenBatch& batch) {
  SegmentMemory& memory = memories_[static_cast<size_t>(micro)];
  if (batch.starts_stream) memory.clear();
  return memory;
}

size_t TrainingMemory::offset(int64_t lane, int64_t layer, int64_t held) const {
  return static_cast<size_t>(((lane * layers_ + layer) * held) * d_model_);
}

void TrainingMemory::gather(Communicator& host, Executor& ex, TrainingState& state) const {
  // Every micro-batch's memory advances (and is cleared) together: one length for all.
  const int64_t held = memories_.front().len;
  state.memory.clear();
  state.memory_lanes = geometry_.global();
  state.memory_held = held;
  state.memory_layers = memory_layers_;
  if (held == 0) return;
  std::vector<float> all(offset(geometry_.global(), 0, held), 0.0f);
  const int64_t b = geometry_.per_rank, per_example = held * d_model_;
  std::vector<float> layer(static_cast<size_t>(b * per_example));
  for (int64_t m = 0; m < geometry_.accum; ++m) {
    const SegmentMemory& memory = memories_[static_cast<size_t>(m)];
    for (int64_t l = 0; l < layers_; ++l) {
      if (!sees_memory_[static_cast<size_t>(l)]) continue;  // (zeros)
      ex.download(layer.data(), memory.layers[static_cast<size_t>(l)].data(),
                  layer.size() * sizeof(float));
      for (int64_t i = 0; i < b; ++i)
        std::memcpy(all.data() + offset(geometry_.first_example(m) + i, l, held),
                    layer.data() + i * per_example, per_example * sizeof(float));
    }
  }
  // Each value is held by one rank and zero elsewhere: summing the bit patterns as integers
  // gathers them exactly (a float sum would turn -0 into +0).
  host.all_reduce_sum(all.data(), all.size(), DType::kInt32);
  state.memory = std::move(all);
}

std::string TrainingMemory::restore(Communicator& host, Executor& ex,
                                    const TrainingState& root_state) {
  int64_t shape[2] = {0, 0};  // held positions, and whether rank 0's memory fits (1)
  std::string note;
  if (host.is_root() && !root_state.memory.empty()) {
    const int64_t max_len = memories_.front().max_len;
    if (root_state.memory_lanes != geometry_.global())
      note = "the checkpoint's memory holds " + std::to_string(root_state.memory_lanes) +
             " lanes, this run's global batch " + std::to_string(geometry_.global());
    else if (root_state.memory_held > max_len)
      note = "the checkpoint's memory holds " + std::to_string(root_state.memory_held) +
             " positions, more than model.memory_len = " + std::to_string(max_len);
    // (Another lsh.local_chunk or lsh.bucket_size: the chunks would cut across the memory.)
    else if (root_state.memory_held % memory_unit_ != 0)
      note = "the checkpoint's memory holds " + std::to_string(root_state.memory_held) +
             " positions, and this run's memory must be " + memory_unit_rule_;
    // (Another lsh.sees_memory or other layer kinds: a layer would see the zeros the checkpoint
    // holds for a layer that saw none.)
    else if (!root_state.memory_layers.empty() && root_state.memory_layers != memory_layers_)
      note = "the checkpoint holds the memories of the layers marked 1 in " +
             root_state.memory_layers + ", this run's layers that see one are " + memory_layers_;
    shape[0] = root_state.memory_held;
    shape[1] = note.empty();
  }
  host.broadcast(shape, 2, DType::kInt64, 0);
  if (!note.empty()) note = "note: " + note + "; training starts with an empty memory";
  if (shape[1] == 0) return note;
  const int64_t held = shape[0];
  std::vector<float> all =
      host.is_root() ? root_state.memory : std::vector<float>(offset(geometry_.global(), 0, held));
  host.broadcast(all.data(), all.size(), DType::kInt32, 0);
  const int64_t b = geometry_.per_rank, per_example = held * d_model_;
  std::vector<float> layer(static_cast<size_t>(b * per_example));
  for (int64_t m = 0; m < geometry_.accum; ++m) {
    SegmentMemory& memory = memories_[static_cast<size_t>(m)];
    memory.clear();
    memory.layers.resize(static_cast<size_t>(layers_));
    for (int64_t l = 0; l < layers_; ++l) {
      if (!sees_memory_[static_cast<size_t>(l)]) continue;  // (its entry stays empty)
      for (int64_t i = 0; i < b; ++i)
        std::memcpy(layer.data() + i * per_example,
                    all.data() + offset(geometry_.first_example(m) + i, l, held),
                    per_example * sizeof(float));
      memory.layers[static_cast<size_t>(l)] = DeviceBuffer<float>(ex, layer.size());
      memory.layers[static_cast<size_t>(l)].upload(layer);
    }
    memory.len = held;
  }
  return note;
}

}  // namespace rf
