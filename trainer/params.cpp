#include "trainer/params.h"

#include <cmath>

#include "base/philox.h"
#include "kernels/elementwise.h"

namespace rf {

int ParamStore::begin_group(const std::string& name) {
  RF_CHECK(params_.size() == 0, "groups are fixed once allocated");
  ParamGroup g;
  g.name = name;
  g.offset = total_;
  groups_.push_back(g);
  return static_cast<int>(groups_.size()) - 1;
}

int ParamStore::add(const std::string& name, std::vector<int64_t> shape, ParamInit init,
                    bool decay) {
  RF_CHECK(!groups_.empty(), "begin_group before add");
  RF_CHECK(params_.size() == 0, "tensors are fixed once allocated");
  ParamTensor t;
  t.name = name;
  t.count = 1;
  for (int64_t s : shape) t.count *= static_cast<size_t>(s);
  t.shape = std::move(shape);
  // Keep every tensor 16-float aligned so vector loads and device accesses stay aligned.
  total_ = (total_ + 15) / 16 * 16;
  t.offset = total_;
  total_ += t.count;
  t.decay = decay;
  t.init = init;
  t.group = static_cast<int>(groups_.size()) - 1;
  groups_.back().count = total_ - groups_.back().offset;
  tensors_.push_back(t);
  return static_cast<int>(tensors_.size()) - 1;
}

void ParamStore::allocate(Executor& ex) {
  params_ = DeviceBuffer<float>(ex, total_);
  grads_ = DeviceBuffer<float>(ex, total_);
  params_.zero();
  grads_.zero();
}

MatrixView ParamStore::weight(int index) {
  const ParamTensor& t = tensors_[index];
  RF_CHECK(t.shape.size() == 2, t.name, " is not a matrix");
  if (bf16_weights_) return bf16_matrix(params_bf16_.data() + t.offset, t.shape[0], t.shape[1]);
  return matrix(param(index), t.shape[0], t.shape[1]);
}

void ParamStore::refresh_bf16_weights(Executor& ex) {
  bf16_weights_ = ex.gemm_takes_bf16_operands() && total_ > 0;
  if (!bf16_weights_) {
    params_bf16_ = DeviceBuffer<uint16_t>();
    return;
  }
  if (params_bf16_.size() != total_) params_bf16_ = DeviceBuffer<uint16_t>(ex, total_);
  write_bf16_copy(ex, params_.data(), params_bf16_.data(), static_cast<int64_t>(total_));
}

MutableMatrixView ParamStore::weight_grad(int index) {
  const ParamTensor& t = tensors_[index];
  RF_CHECK(t.shape.size() == 2, t.name, " is not a matrix");
  return matrix(grad(index), t.shape[0], t.shape[1]);
}

void ParamStore::initialize(Executor& ex, uint64_t seed) {
  params_.zero();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const ParamTensor& t = tensors_[i];
    float* p = params_.data() + t.offset;
    const RngStream stream =
        make_rng_stream(seed, RngPurpose::kParamInit, static_cast<uint32_t>(i), 0, 0, 0);
    const int64_t n = static_cast<int64_t>(t.count);
    switch (t.init.kind) {
      case InitKind::kZeros:
        break;
      case InitKind::kOnes:
        fill(ex, p, n, 1.0f);
        break;
      case InitKind::kNormal:
        fill_normal(ex, p, n, stream, t.init.stddev);
        break;
      case InitKind::kGlorotUniform: {
        const float limit = std::sqrt(6.0f / static_cast<float>(t.init.fan_in + t.init.fan_out));
        fill_uniform(ex, p, n, stream, -limit, limit);
        break;
      }
    }
  }
}

}  // namespace rf
