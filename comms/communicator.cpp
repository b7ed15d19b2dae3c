#include "comms/communicator.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "base/error.h"

namespace rf {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kUint8:
      return 1;
  }
  return 0;
}

std::string this_host_name() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

namespace {

class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string host() const override { return this_host_name(); }
  std::vector<std::string> all_hosts() override { return {this_host_name()}; }
  void all_reduce_sum(void*, size_t, DType) override {}
  void broadcast(void*, size_t, DType, int root) override { RF_CHECK(root == 0); }
  void barrier() override {}
  void start_average(float*, size_t, const std::string&) override {}
  void wait_all() override {}
  void set_step(int64_t) override {}
  [[noreturn]] void abort(const std::string& why) override {
    std::cerr << "error: " << one_line(why) << std::endl;
    std::exit(1);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_process_communicator() {
  return std::make_unique<SingleProcessCommunicator>();
}

}  // namespace rf
