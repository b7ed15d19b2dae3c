// libFuzzer's entry point for one target (fuzz/targets.h): fuzz/CMakeLists.txt compiles this file
// once per target with RF_FUZZ_TARGET naming its function.
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rf::fuzz::RF_FUZZ_TARGET(data, size);
  return 0;
}
