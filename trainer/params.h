// All trainable parameters live in one flat buffer, and their gradients in a second buffer with
// the same layout. Tensors are grouped (embedding, each layer, head) and every group is one
// contiguous range, so a group's gradients can be handed to the all-reduce as soon as the
// backward pass has finished with it, and checkpoints, clipping and AdamW see one array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/device_buffer.h"
#include "kernels/linear.h"

namespace rf {

enum class InitKind { kZeros, kOnes, kNormal, kGlorotUniform };

struct ParamInit {
  InitKind kind = InitKind::kZeros;
  float stddev = 1.0f;              // kNormal
  int64_t fan_in = 0, fan_out = 0;  // kGlorotUniform: U(+-sqrt(6 / (fan_in + fan_out)))
};

struct ParamTensor {
  std::string name;            // e.g. "layer3.attention.w_qk"
  std::vector<int64_t> shape;  // row-major
  size_t offset = 0;           // into the flat buffers
  size_t count = 0;
  bool decay = false;  // AdamW weight decay applies (matrices and embeddings)
  ParamInit init;
  int group = 0;
};

struct ParamGroup {
  std::string name;
  size_t offset = 0, count = 0;
};

class ParamStore {
 public:
  // Starts a new group; tensors added afterwards belong to it.
  int begin_group(const std::string& name);
  // Declares a tensor and returns its index. Only before allocate().
  int add(const std::string& name, std::vector<int64_t> shape, ParamInit init, bool decay);
  // Allocates parameters and gradients (zeroed) on the executor.
  void allocate(Executor& ex);
  // Draws every tensor's initial values from Philox keyed by (seed, tensor index).
  void initialize(Executor& ex, uint64_t seed);

  float* param(int index) { return params_.data() + tensors_[index].offset; }
  float* grad(int index) { return grads_.data() + tensors_[index].offset; }
  // A 2-D tensor as a matrix of its declared shape (the bf16 copy while one is current, for
  // products that read bf16), and its gradient.
  MatrixView weight(int index);
  MutableMatrixView weight_grad(int index);
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  const ParamTensor& tensor(int index) const { return tensors_[index]; }
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  size_t size() const { return total_; }
  void zero_grads() { grads_.zero(); }
  // On an executor whose products take bf16 operands (the CPU at runtime.precision = bf16):
  // rounds every parameter into a bf16 copy once, which weight() then hands to the products
  // instead of each product rounding the fp32 weights again (a 4K-token step rounded 35M weight
  // values that way, the parameters being 4.5M). Elsewhere it drops the copy. Call it whenever
  // the parameters may have changed and before the products read them: the model does at the
  // start of every pass (ReformerModel::stage), so a pass never reads a stale copy.
  void refresh_bf16_weights(Executor& ex);

 private:
  std::vector<ParamTensor> tensors_;
  std::vector<ParamGroup> groups_;
  size_t total_ = 0;
  DeviceBuffer<float> params_;
  DeviceBuffer<float> grads_;
  DeviceBuffer<uint16_t> params_bf16_;  // refresh_bf16_weights's copy
  bool bf16_weights_ = false;           // the copy is current and weight() hands it out
};

}  // namespace rf
