// Fills a buffer from a Philox stream: normal (LSH rotations, embedding init) or uniform (Glorot
// init). Element i of the buffer is element i of the stream, whatever executor or thread runs it.
#pragma once

#include "base/philox.h"

namespace rf {

struct RandomNormalFill {
  float* x;
  RngStream stream;
  float stddev;
  RF_HD void operator()(int64_t i) const {
    x[i] = stddev * stream.normal(static_cast<uint64_t>(i));
  }
};

struct RandomUniformFill {
  float* x;
  RngStream stream;
  float low, high;
  RF_HD void operator()(int64_t i) const {
    x[i] = low + (high - low) * stream.uniform(static_cast<uint64_t>(i));
  }
};

}  // namespace rf
