// An executor that gives any other executor step graphs by recording: while capturing, each
// launch handed to it (kernels, GEMMs, attention passes, sorts, device copies and fills) is kept
// with a copy of its arguments instead of running; replay_graph() runs the kept launches in order
// on the wrapped executor. This is what a CUDA graph does with a stream's work, so a training step
// that trains the same through a LaunchRecorder as without one (tests/step_graph_test.cpp) has no
// launch argument that changes from step to step and no host work inside it, and can be captured
// as a CUDA graph. `runtime.step_graphs: true` on a CPU trains through one. A collective started
// among the launches (a gradient average) is kept too and started again at its place in each
// replay, so the communication overlaps the launches after it as it does in a CUDA graph.
//
// Because every launch passes through it, it also times launches by name when asked
// (set_launch_timing; `step_bench --profile-ops`): outside a capture, each launch runs between two
// waits for the wrapped executor, so its wall time is its own on a CPU and on a GPU alike.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>
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

  // Launches (and collectives) kept in all graphs so far.
  int64_t recorded_launches() const;

  // A launch: run now, or kept while capturing. `name` says what it is for launch timing (null:
  // not a launch, never timed); `flop` is its arithmetic (GEMMs), for the rate the table shows.
  void launch(std::function<void(Executor&)> work, const char* name = nullptr, double flop = 0);

  // What launch timing gathered for one name of launch.
  struct LaunchTime {
    double seconds = 0;
    int64_t launches = 0;
    double flop = 0;
  };
  // On: launches run now are timed by name (kernels by their op, GEMMs by shape and operand
  // types, attention passes, sorts, device copies and fills) until turned off. Each is waited
  // for before and after, which makes a step slower: for where time goes, not how much.
  void set_launch_timing(bool on) {
    timing_ = on;
    launches_timed_ = launches_timed_ || on;
  }
  const std::map<std::string, LaunchTime>& launch_times() const { return launch_times_; }
  void clear_launch_times() { launch_times_.clear(); }

  void set_kernel_variant(KernelVariant variant) override;
  bool warp_per_row() const override { return inner_->warp_per_row(); }
  bool rounds_operands_to_bf16() const override { return inner_->rounds_operands_to_bf16(); }
  void chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) override;
  Device device() const override { return inner_->device(); }
  std::string describe() const override;
  std::string device_model() const override { return inner_->device_model(); }
  std::string arithmetic() const override { return inner_->arithmetic(); }  // (replays add none)

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

 protected:
  void capture_begin() override;
  void capture_end() override;
  void graph_replay(int graph) override;
  void graphs_release() override { graphs_.clear(); }
  void collective_issue(std::function<void()> start) override;

 private:
  using Work = std::function<void(Executor&)>;
  std::unique_ptr<Executor> inner_;
  std::vector<std::vector<Work>> graphs_;  // the launches each kept graph holds
  std::vector<Work> capture_;              // the capture under way
  bool timing_ = false;
  bool launches_timed_ = false;  // ever: describe() says so
  std::map<std::string, LaunchTime> launch_times_;
};

// The name launch timing gives kernels of type Op: the op's type without its namespace.
const char* kernel_launch_name(const char* mangled_type_name);

template <class Op>
void RecordingBackend::for_each(Executor& self, int64_t n, const Op& op) {
  static const char* const name = kernel_launch_name(typeid(Op).name());
  static_cast<LaunchRecorder&>(self).launch([n, op](Executor& ex) { ex.run(n, op); }, name);
}

}  // namespace rf
