#include "kernels/launch_recorder.h"

#include <utility>

#include "base/error.h"

namespace rf {

LaunchRecorder::LaunchRecorder(std::unique_ptr<Executor> inner) : inner_(std::move(inner)) {
  RF_CHECK(inner_ != nullptr, "LaunchRecorder needs an executor to run on");
  Executor::set_kernel_variant(inner_->kernel_variant());
}

int64_t LaunchRecorder::recorded_launches() const {
  int64_t n = 0;
  for (const auto& g : graphs_) n += static_cast<int64_t>(g.size());
  return n;
}

void LaunchRecorder::launch(std::function<void(Executor&)> work) {
  if (capturing())
    capture_.push_back(std::move(work));
  else
    work(*inner_);
}

void LaunchRecorder::set_kernel_variant(KernelVariant variant) {
  // Launchers read the variant here; the kernels they hand over run on the inner executor.
  Executor::set_kernel_variant(variant);
  inner_->set_kernel_variant(variant);
}

void LaunchRecorder::chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) {
  count_launch();
  launch([pass, p](Executor& ex) { ex.chunk_attention(pass, p); });
}

std::string LaunchRecorder::describe() const {
  return inner_->describe() + "; steps replayed from recorded graphs";
}

void* LaunchRecorder::allocate(size_t bytes) {
  refuse_while_capturing("an allocation");
  void* p = inner_->allocate(bytes);
  count_allocation(bytes);
  return p;
}

void LaunchRecorder::release(void* ptr, size_t bytes) {
  refuse_while_capturing("a release of memory");
  inner_->release(ptr, bytes);
  count_release(bytes);
}

void LaunchRecorder::upload(void* device_dst, const void* host_src, size_t bytes) {
  refuse_while_capturing("an upload from the host");
  count_memory_operation();
  inner_->upload(device_dst, host_src, bytes);
}

void LaunchRecorder::download(void* host_dst, const void* device_src, size_t bytes) {
  refuse_while_capturing("a download to the host");
  count_memory_operation();
  inner_->download(host_dst, device_src, bytes);
}

void LaunchRecorder::copy(void* dst, const void* src, size_t bytes) {
  count_memory_operation();
  launch([dst, src, bytes](Executor& ex) { ex.copy(dst, src, bytes); });
}

void LaunchRecorder::zero(void* ptr, size_t bytes) {
  count_memory_operation();
  launch([ptr, bytes](Executor& ex) { ex.zero(ptr, bytes); });
}

void LaunchRecorder::synchronize() {
  refuse_while_capturing("a wait for the device");
  inner_->synchronize();
}

void LaunchRecorder::gemm(const GemmDesc& desc, const void* a, const void* b, float* c) {
  count_launch();
  launch([desc, a, b, c](Executor& ex) { ex.gemm(desc, a, b, c); });
}

void LaunchRecorder::set_gemm_operand_reuse(bool on) {
  launch([on](Executor& ex) { ex.set_gemm_operand_reuse(on); });
}

size_t LaunchRecorder::sort_scratch_bytes(const BucketSort& sort) {
  return inner_->sort_scratch_bytes(sort);
}

void LaunchRecorder::sort_buckets(const BucketSort& sort, void* scratch) {
  count_launch();
  launch([sort, scratch](Executor& ex) { ex.sort_buckets(sort, scratch); });
}

void LaunchRecorder::capture_begin() {
  capture_.clear();
}

void LaunchRecorder::capture_end() {
  graphs_.push_back(std::move(capture_));
  capture_.clear();
}

void LaunchRecorder::graph_replay(int graph) {
  for (const Work& work : graphs_[static_cast<size_t>(graph)]) work(*inner_);
}

}  // namespace rf
