// An executor that gives any other executor step graphs by recording: while capturing, each
// launch handed to it (kernels, GEMMs, attention passes, sorts, device copies and fills) is kept
// with a copy of its arguments instead of running; replay_graph() runs the kept launches in order
// on the wrapped executor. This is what a CUDA graph does with a stream's work, so a training step
// that trains the same through a LaunchRecorder as without one (tests/step_graph_test.cpp) has no
// launch argument that changes from step to step and no host work inside it, and can be captured
// as a CUDA graph. `runtime.step_graphs: true` on a CPU trains through one.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/executor_impl.h"

namespace rf {

// Backend of the recorder's kernels: each run(n, op) becomes a kept launch (defined below).
struct RecordingBackend {
  template <class Op>
  static void for_each(Executor& self, int64_t n, const Op& op);
};

class LaunchRecorder final : public KernelExecutor<RecordingBackend> {
 public:
  explicit LaunchRecorder(std::unique_ptr<Executor> inner);

  // Launches kept in all graphs so far.
  int64_t recorded_launches() const;

  // A launch: run now, or kept while capturing.
  void launch(std::function<void(Executor&)> work);

  void set_kernel_variant(KernelVariant variant) override;
  bool warp_per_row() const override { return inner_->warp_per_row(); }
  bool rounds_operands_to_bf16() const override { return inner_->rounds_operands_to_bf16(); }
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override;
  Device device() const override { return inner_->device(); }
  std::string describe() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
  void upload(void* device_dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* device_src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* ptr, size_t bytes) override;
  void synchronize() override;

  void gemm(const GemmDesc& desc, const void* a, const void* b, float* c) override;
  void set_gemm_operand_reuse(bool on) override;
  size_t sort_scratch_bytes(const BucketSort& sort) override;
  void sort_buckets(const BucketSort& sort, void* scratch) override;

  bool supports_graphs() const override { return true; }

 private:
  void capture_begin() override;
  void capture_end() override;
  void graph_replay(int graph) override;

  using Work = std::function<void(Executor&)>;
  std::unique_ptr<Executor> inner_;
  std::vector<std::vector<Work>> graphs_;  // the launches each kept graph holds
  std::vector<Work> capture_;              // the capture under way
};

template <class Op>
void RecordingBackend::for_each(Executor& self, int64_t n, const Op& op) {
  static_cast<LaunchRecorder&>(self).launch([n, op](Executor& ex) { ex.run(n, op); });
}

}  // namespace rf
