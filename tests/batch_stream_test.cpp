// The loader thread of BatchStream (trainer/batches.h), run without MPI so that the thread
// sanitizer build (launch/sanitize.sh thread) sees it alone: a prefetching stream hands out what
// reading on demand does, an error on the loader thread reaches next(), and a stream whose
// loader is waiting for room (or still reading) ends when destroyed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/error.h"
#include "data/sample_order.h"
#include "trainer/batches.h"

namespace rf {
namespace {

// Window i is (i, i + 1, ..., i + 4); reading window `fail_at` fails, and each read can be slowed
// down to make the consumer wait for the loader.
class ArithmeticSource final : public WindowSource {
 public:
  ArithmeticSource(int64_t n, int64_t fail_at = -1, std::chrono::microseconds delay = {})
      : n_(n), fail_at_(fail_at), delay_(delay) {}
  int64_t num_windows() const override { return n_; }
  int64_t window_length() const override { return 5; }
  void read(int64_t index, int32_t* out) const override {
    reads_.fetch_add(1);
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (index == fail_at_) fail("window ", index, " is damaged");
    for (int i = 0; i < 5; ++i) out[i] = static_cast<int32_t>(index + i);
  }
  std::string describe() const override { return "arithmetic source"; }
  bool consecutive() const override { return false; }
  int64_t reads() const { return reads_.load(); }

 private:
  int64_t n_, fail_at_;
  std::chrono::microseconds delay_;
  mutable std::atomic<int64_t> reads_{0};
};

TEST(BatchStream, PrefetchingHandsOutWhatReadingOnDemandDoes) {
  const ArithmeticSource source(96);
  const SampleOrder order(96, 5);
  const BatchGeometry geometry{3, 2, 1, 0};
  for (const int64_t depth : {1, 2, 5}) {
    BatchStream direct(source, order, geometry, 6, 0);
    BatchStream prefetched(source, order, geometry, 6, depth);
    for (int64_t micro = 0; micro < 40; ++micro) {  // past the end of an epoch (16 micro-steps)
      const TokenBatch want = direct.next(), got = prefetched.next();
      ASSERT_EQ(got.inputs, want.inputs) << "depth " << depth << ", micro-batch " << micro;
      ASSERT_EQ(got.targets, want.targets) << "depth " << depth << ", micro-batch " << micro;
    }
  }
}

TEST(BatchStream, AnErrorOnTheLoaderThreadIsRethrownByNextAfterTheGoodBatches) {
  // Sample n is window n (an unbounded order); batches of 2: micro-batch 3 holds window 7.
  const ArithmeticSource source(0, 7, std::chrono::microseconds(200));
  const SampleOrder order(0, 1);
  BatchStream stream(source, order, BatchGeometry{2, 1, 1, 0}, 0, 4);
  for (int64_t micro = 0; micro < 3; ++micro) EXPECT_EQ(stream.next().inputs[0], 2 * micro);
  try {
    stream.next();
    FAIL() << "the damaged window was not reported";
  } catch (const Error& error) {
    EXPECT_STREQ(error.what(), "window 7 is damaged");
  }
}

TEST(BatchStream, DestroyingAStreamEndsItsLoaderWhetherWaitingOrReading) {
  const ArithmeticSource fast(0), slow(0, -1, std::chrono::milliseconds(2));
  const SampleOrder order(0, 1);
  for (const ArithmeticSource* source : {&fast, &slow}) {
    for (int consumed = 0; consumed < 3; ++consumed) {
      BatchStream stream(*source, order, BatchGeometry{4, 1, 1, 0}, 0, 2);
      for (int i = 0; i < consumed; ++i) stream.next();
    }  // the destructor joins the loader (a hang here times the test out)
  }
  // The loader never reads more than `depth` micro-batches ahead of the consumer.
  const ArithmeticSource counted(0);
  {
    BatchStream stream(counted, order, BatchGeometry{4, 1, 1, 0}, 0, 2);
    stream.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(counted.reads(), 4 * 3);
}

}  // namespace
}  // namespace rf
