#include "kernels/executor.h"

#include <utility>

#include "base/error.h"

namespace rf {

std::unique_ptr<Executor> make_executor(const ExecutorOptions& options) {
  if (options.device == Device::kCuda) return make_cuda_executor(options.gpu, options.precision);
  return make_cpu_executor(options.threads, options.precision, options.ranks_on_host);
}

void Executor::chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) {
  const int64_t rows = p.segments * p.layout.n_slots;
  switch (pass) {
    case ChunkAttentionPass::kForward:
      run(rows, ChunkAttentionForwardRow{p});
      break;
    case ChunkAttentionPass::kGradients:
      run(rows, ChunkAttentionQueryGradRow{p});
      run(rows, ChunkAttentionKeyGradRow{p});
      break;
  }
}

void Executor::begin_capture() {
  if (!supports_graphs()) fail("step graphs are not available on this executor (", describe(), ")");
  RF_CHECK(!capturing_, "begin_capture while a capture is under way");
  capture_begin();
  capture_start_ = {launches_, memory_operations_, collectives_};
  capturing_ = true;
}

int Executor::end_capture() {
  RF_CHECK(capturing_, "end_capture without begin_capture");
  capturing_ = false;
  // A capture runs nothing: its launches count when the graph is replayed.
  const GraphCounts held{launches_ - capture_start_.launches,
                         memory_operations_ - capture_start_.memory_operations,
                         collectives_ - capture_start_.collectives};
  launches_ = capture_start_.launches;
  memory_operations_ = capture_start_.memory_operations;
  collectives_ = capture_start_.collectives;
  capture_end();
  graphs_.push_back(held);
  return static_cast<int>(graphs_.size()) - 1;
}

void Executor::replay_graph(int graph) {
  RF_CHECK(!capturing_, "replay_graph while a capture is under way");
  RF_CHECK(graph >= 0 && graph < static_cast<int>(graphs_.size()), "no step graph ", graph);
  graph_replay(graph);
  launches_ += graphs_[static_cast<size_t>(graph)].launches;
  memory_operations_ += graphs_[static_cast<size_t>(graph)].memory_operations;
  collectives_ += graphs_[static_cast<size_t>(graph)].collectives;
}

void Executor::drop_graphs() {
  RF_CHECK(!capturing_, "drop_graphs while a capture is under way");
  graphs_release();
  graphs_.clear();
  ++memory_generation_;  // any id a caller kept is stale
}

void Executor::start_collective(std::function<void()> start) {
  ++collectives_;
  collective_issue(std::move(start));
}

int64_t Executor::collectives_in_graphs() const {
  int64_t n = 0;
  for (const GraphCounts& g : graphs_) n += g.collectives;
  return n;
}

void Executor::capture_begin() {
  fail("step graphs are not available on this executor (", describe(), ")");
}

void Executor::capture_end() {
  fail("step graphs are not available on this executor (", describe(), ")");
}

void Executor::graph_replay(int) {
  fail("step graphs are not available on this executor (", describe(), ")");
}

void Executor::refuse_while_capturing(const char* call) const {
  if (capturing_)
    fail(call,
         " while a step graph is being captured: a graph holds device work only (a "
         "transfer to or from the host, a wait or an allocation must come before or after it)");
}

void matmul(Executor& ex, const RowMajorGemm& g, const void* a, const void* b, float* c) {
  // Column-major C^T = op(B)^T op(A)^T: the row-major B is the column-major A.
  ex.gemm(to_column_major(g), b, a, c);
}

#ifndef RF_WITH_CUDA
bool cuda_compiled_in() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_versions() {
  return "";
}
std::unique_ptr<Executor> make_cuda_executor(int, GemmPrecision) {
  fail(
      "runtime.device is cuda, but this build has no CUDA support (nvcc was not found when "
      "CMake configured the build); use runtime.device=cpu or rebuild with the CUDA toolkit");
}
#endif

}  // namespace rf
