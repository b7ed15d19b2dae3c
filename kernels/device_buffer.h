// Owning handles for executor memory: DeviceBuffer<T> is one typed allocation; Workspace is a set
// of named scratch buffers that grow on first use and are then reused every step (no allocation
// on the hot path after the first step), plus a few named host buffers for launch logic.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "kernels/executor.h"

namespace rf {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Executor& ex, size_t count) : ex_(&ex), count_(count) {
    data_ = static_cast<T*>(ex.allocate(count * sizeof(T)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~DeviceBuffer() {
    if (ex_ && data_) ex_->release(data_, count_ * sizeof(T));
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }

  void upload(const std::vector<T>& host) {
    RF_CHECK(host.size() == count_, "upload of ", host.size(), " into ", count_);
    ex_->upload(data_, host.data(), count_ * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    ex_->download(host.data(), data_, count_ * sizeof(T));
    return host;
  }
  void zero() { ex_->zero(data_, count_ * sizeof(T)); }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(ex_, o.ex_);
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
  }
  Executor* ex_ = nullptr;
  T* data_ = nullptr;
  size_t count_ = 0;
};

class Workspace {
 public:
  explicit Workspace(Executor& ex) : ex_(ex) {}

  // A scratch buffer of at least `count` elements under `name`; contents are not preserved when
  // it grows.
  template <class T>
  T* get(std::string_view name, size_t count) {
    auto it = buffers_.find(name);  // heterogeneous lookup: no string is built per call
    if (it == buffers_.end()) it = buffers_.emplace(std::string(name), DeviceBuffer<char>()).first;
    DeviceBuffer<char>& b = it->second;
    const size_t bytes = count * sizeof(T);
    if (b.size() < bytes) b = DeviceBuffer<char>(ex_, bytes);
    return reinterpret_cast<T*>(b.data());
  }
  float* floats(std::string_view name, size_t count) { return get<float>(name, count); }
  int32_t* ints(std::string_view name, size_t count) { return get<int32_t>(name, count); }

  // Host scratch of `count` ints under `name` (for launch logic that works on the host, such as
  // grouping rows by token); kept between steps, resized to `count`.
  std::vector<int32_t>& host_ints(std::string_view name, size_t count) {
    auto it = host_.find(name);
    if (it == host_.end()) it = host_.emplace(std::string(name), std::vector<int32_t>()).first;
    it->second.resize(count);
    return it->second;
  }

 private:
  Executor& ex_;
  std::map<std::string, DeviceBuffer<char>, std::less<>> buffers_;
  std::map<std::string, std::vector<int32_t>, std::less<>> host_;
};

}  // namespace rf
