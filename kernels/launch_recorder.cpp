#include "kernels/launch_recorder.h"

#include <cxxabi.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <sstream>
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

void LaunchRecorder::launch(std::function<void(Executor&)> work, const char* name, double flop) {
  if (capturing()) {
    capture_.push_back(std::move(work));
    return;
  }
  if (!timing_ || !name) {
    work(*inner_);
    return;
  }
  inner_->synchronize();
  const auto start = std::chrono::steady_clock::now();
  work(*inner_);
  inner_->synchronize();
  LaunchTime& t = launch_times_[name];
  t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++t.launches;
  t.flop += flop;
}

const char* kernel_launch_name(const char* mangled_type_name) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled_type_name, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled ? demangled : mangled_type_name;
  std::free(demangled);
  if (name.rfind("rf::", 0) == 0) name = name.substr(4);
  // Kept for the life of the process (one per kernel type, named once; a deque never moves them).
  static std::mutex mutex;
  static std::deque<std::string> names;
  const std::lock_guard<std::mutex> lock(mutex);
  return names.emplace_back(std::move(name)).c_str();
}

namespace {

// "gemm NT 256x1024x1024 bf16 B": transposes of A and B, m x n x k (column-major, as cuBLAS
// reads them), a batch, and which operands a producer wrote in bf16.
std::string gemm_launch_name(const GemmDesc& d) {
  std::ostringstream s;
  s << "gemm " << (d.trans_a ? 'T' : 'N') << (d.trans_b ? 'T' : 'N') << ' ' << d.m << 'x' << d.n
    << 'x' << d.k;
  if (d.batch > 1) s << " batch " << d.batch;
  if (d.a_type == OperandType::kBf16) s << " bf16 A";
  if (d.b_type == OperandType::kBf16) s << " bf16 B";
  return s.str();
}

}  // namespace

void LaunchRecorder::set_kernel_variant(KernelVariant variant) {
  // Launchers read the variant here; the kernels they hand over run on the inner executor.
  Executor::set_kernel_variant(variant);
  inner_->set_kernel_variant(variant);
}

void LaunchRecorder::chunk_attention(ChunkAttentionPass pass, const ChunkAttentionParams& p) {
  count_launch();
  launch([pass, p](Executor& ex) { ex.chunk_attention(pass, p); },
         pass == ChunkAttentionPass::kForward ? "attention forward" : "attention gradients");
}

std::string LaunchRecorder::describe() const {
  return inner_->describe() + (launches_timed_ ? "; every launch timed, waited for one by one"
                                               : "; steps replayed from recorded graphs");
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
  launch([dst, src, bytes](Executor& ex) { ex.copy(dst, src, bytes); }, "device copy");
}

void LaunchRecorder::zero(void* ptr, size_t bytes) {
  count_memory_operation();
  launch([ptr, bytes](Executor& ex) { ex.zero(ptr, bytes); }, "device fill with zeros");
}

void LaunchRecorder::synchronize() {
  refuse_while_capturing("a wait for the device");
  inner_->synchronize();
}

void LaunchRecorder::gemm(const GemmDesc& desc, const void* a, const void* b, float* c) {
  count_launch();
  Work work = [desc, a, b, c](Executor& ex) { ex.gemm(desc, a, b, c); };
  if (!timing_ || capturing()) {
    launch(std::move(work));  // untimed: no name needed
    return;
  }
  launch(std::move(work), gemm_launch_name(desc).c_str(),
         2.0 * static_cast<double>(desc.m) * static_cast<double>(desc.n) *
             static_cast<double>(desc.k) * static_cast<double>(desc.batch));
}

void LaunchRecorder::set_gemm_operand_reuse(bool on) {
  launch([on](Executor& ex) { ex.set_gemm_operand_reuse(on); });
}

size_t LaunchRecorder::sort_scratch_bytes(const BucketSort& sort) {
  return inner_->sort_scratch_bytes(sort);
}

void LaunchRecorder::sort_buckets(const BucketSort& sort, void* scratch) {
  count_launch();
  launch([sort, scratch](Executor& ex) { ex.sort_buckets(sort, scratch); }, "bucket sort");
}

void LaunchRecorder::collective_issue(std::function<void()> start) {
  // Not a launch: never timed, and run on the host when the replay reaches it.
  launch([start = std::move(start)](Executor&) { start(); });
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
