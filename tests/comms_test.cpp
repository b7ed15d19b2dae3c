// Tests of the MPI Communicator. Three ways to run this program:
//
//   mpirun -np N comms_test
//       every rank runs every test (ctest: comms_test_2_ranks, comms_test_4_ranks);
//   comms_test --spawn-dead-rank-check [--mpirun PATH]
//       not under mpirun: launches mpirun itself, once per way a rank can fail, and checks that
//       the job ends with a non-zero status within seconds (ctest: comms_dead_rank);
//   mpirun -np 2 comms_test --dead-rank-child exit|kill|hang
//       the job the check above launches: rank 1 exits, is killed, or stays alive without
//       joining the collective that rank 0 waits in.
//
// Under mpirun, rank 0 prints GoogleTest's usual report and the other ranks print only their
// failures, prefixed with their rank. Each test ends by telling every rank whether it failed
// anywhere, so rank 0's report names a test that failed only on another rank, and every rank
// exits non-zero when any rank had a failure.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "comms/collective_text.h"
#include "comms/communicator.h"
#include "comms/mpi_communicator.h"
#include "comms/mpi_completion_log.h"
#include "tests/rank_report.h"
#include "trainer/job.h"

namespace rf {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kTestTimeoutSeconds = 30;    // a test that fails on one rank ends within this
constexpr double kHangTimeoutSeconds = 5;     // the deadline in the --dead-rank-child hang job
constexpr double kSlowestAcceptableEnd = 30;  // seconds for a job with a dead rank to end

// The communicator the tests share; set by main() for the MPI mode (a test-only global).
Communicator*& shared_comm() {
  static Communicator* comm = nullptr;
  return comm;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- fixture: every rank runs the test, then learns whether any rank failed it ------------------

class Comms : public ::testing::Test {
 protected:
  Communicator& comm() { return *shared_comm(); }
  int rank() { return comm().rank(); }
  int ranks() { return comm().size(); }

  void TearDown() override {
    const int32_t failed_here = HasFailure() ? 1 : 0;
    int32_t failed_anywhere = failed_here;
    comm().all_reduce_sum(&failed_anywhere, 1, DType::kInt32);
    if (failed_anywhere > failed_here) {
      ADD_FAILURE() << "this test failed on " << failed_anywhere - failed_here
                    << " other rank(s); see their [rank R] lines";
    }
  }

  // The last `n` entries of the completion log.
  std::vector<std::string> last_completed(size_t n) {
    std::vector<std::string> log = mpi_completed_collectives(comm());
    if (log.size() < n) return log;
    return {log.end() - static_cast<std::ptrdiff_t>(n), log.end()};
  }
};

// ---- all_reduce_sum, per type -------------------------------------------------------------------

// A value that depends on the rank, is exact in every type, and whose sum over ranks is exact:
// negative numbers for int32, numbers beyond 32 bits for int64, wrap-around sums for uint8.
template <class T>
T rank_value(int rank, size_t i);
template <>
float rank_value<float>(int rank, size_t i) {
  return 0.25f * static_cast<float>(rank + 1) + static_cast<float>(i % 97);
}
template <>
double rank_value<double>(int rank, size_t i) {
  return 0.125 * (rank + 1) + static_cast<double>(i % 1013) * 1e6;
}
template <>
int32_t rank_value<int32_t>(int rank, size_t i) {
  return (rank % 2 == 0 ? 1 : -1) * (rank + 1) * 1000 + static_cast<int32_t>(i % 500);
}
template <>
int64_t rank_value<int64_t>(int rank, size_t i) {
  return (int64_t{rank + 1} << 33) + static_cast<int64_t>(i);
}
template <>
uint8_t rank_value<uint8_t>(int rank, size_t i) {
  return static_cast<uint8_t>(200 + rank * 7 + i % 50);  // sums wrap modulo 256, as MPI's do
}

template <class T>
void expect_all_reduce_sum(Communicator& comm, DType type, size_t count) {
  std::vector<T> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = rank_value<T>(comm.rank(), i);
  comm.all_reduce_sum(values.data(), count, type);
  for (size_t i = 0; i < count; ++i) {
    T expected = 0;
    for (int r = 0; r < comm.size(); ++r) expected = static_cast<T>(expected + rank_value<T>(r, i));
    if (values[i] != expected) {  // (one assertion, not one per element: see holds_bucket_means)
      FAIL() << dtype_name(type) << " element " << i << " of " << count << " is " << +values[i]
             << ", the sum is " << +expected;
    }
  }
}

TEST_F(Comms, AllReduceSumAddsEveryRanksValuesForEachType) {
  for (size_t count : {size_t{1}, size_t{1001}, size_t{70000}}) {
    expect_all_reduce_sum<float>(comm(), DType::kFloat32, count);
    expect_all_reduce_sum<double>(comm(), DType::kFloat64, count);
    expect_all_reduce_sum<int32_t>(comm(), DType::kInt32, count);
    expect_all_reduce_sum<int64_t>(comm(), DType::kInt64, count);
    expect_all_reduce_sum<uint8_t>(comm(), DType::kUint8, count);
  }
}

// ---- broadcast ----------------------------------------------------------------------------------

template <class T>
void expect_broadcast(Communicator& comm, DType type, int root) {
  const size_t count = 3001;
  std::vector<T> values(count, static_cast<T>(99));  // what non-roots hold before
  if (comm.rank() == root) {
    for (size_t i = 0; i < count; ++i) values[i] = rank_value<T>(root, i);
  }
  comm.broadcast(values.data(), count, type, root);
  for (size_t i = 0; i < count; ++i) {
    if (values[i] != rank_value<T>(root, i)) {
      FAIL() << dtype_name(type) << " element " << i << " from root " << root << " is "
             << +values[i] << ", the root's is " << +rank_value<T>(root, i);
    }
  }
}

TEST_F(Comms, BroadcastFromFirstAndLastRankReachesEveryRank) {
  for (int root : {0, ranks() - 1}) {
    expect_broadcast<float>(comm(), DType::kFloat32, root);
    expect_broadcast<double>(comm(), DType::kFloat64, root);
    expect_broadcast<int32_t>(comm(), DType::kInt32, root);
    expect_broadcast<int64_t>(comm(), DType::kInt64, root);
    expect_broadcast<uint8_t>(comm(), DType::kUint8, root);
  }
}

TEST_F(Comms, BroadcastFromARankOutsideTheJobIsAnError) {
  int32_t value = 1;
  EXPECT_THROW(comm().broadcast(&value, 1, DType::kInt32, ranks()), Error);
  EXPECT_THROW(comm().broadcast(&value, 1, DType::kInt32, -1), Error);
}

TEST_F(Comms, CollectivesOfNoValuesDoNothing) {
  comm().all_reduce_sum(nullptr, 0, DType::kFloat32);
  comm().broadcast(nullptr, 0, DType::kInt64, 0);
  comm().start_average(nullptr, 0, "empty");
  comm().wait_all();
  EXPECT_EQ(last_completed(3), (std::vector<std::string>{"all-reduce (sum) of 0 float32 values",
                                                         "broadcast of 0 int64 values from rank 0",
                                                         bucket_text("empty", 0)}));
}

// ---- hosts and local ranks ----------------------------------------------------------------------

TEST_F(Comms, AllHostsNamesTheHostOfEveryRankAlikeOnEveryRank) {
  const std::vector<std::string> hosts = comm().all_hosts();
  ASSERT_EQ(hosts.size(), static_cast<size_t>(ranks()));
  EXPECT_EQ(hosts[static_cast<size_t>(rank())], comm().host());
  EXPECT_FALSE(comm().host().empty());
  std::string joined;
  for (const std::string& h : hosts) joined += h + "\n";
  EXPECT_EQ(broadcast_string(comm(), joined), joined);
}

TEST_F(Comms, LocalRanksNumberTheRanksOfEachHostInRankOrder) {
  ASSERT_GE(comm().local_rank(), 0);
  ASSERT_LT(comm().local_rank(), comm().local_size());
  ASSERT_LE(comm().local_size(), ranks());
  // Every rank's (local rank, local size), gathered with a sum of one-hot vectors.
  std::vector<int32_t> local_rank(static_cast<size_t>(ranks()), 0);
  std::vector<int32_t> local_size(static_cast<size_t>(ranks()), 0);
  local_rank[static_cast<size_t>(rank())] = comm().local_rank();
  local_size[static_cast<size_t>(rank())] = comm().local_size();
  comm().all_reduce_sum(local_rank.data(), local_rank.size(), DType::kInt32);
  comm().all_reduce_sum(local_size.data(), local_size.size(), DType::kInt32);
  const std::vector<std::string> hosts = comm().all_hosts();
  for (size_t r = 0; r < hosts.size(); ++r) {
    int32_t lower_ranks_on_host = 0, ranks_on_host = 0;
    for (size_t other = 0; other < hosts.size(); ++other) {
      if (hosts[other] != hosts[r]) continue;
      ++ranks_on_host;
      if (other < r) ++lower_ranks_on_host;
    }
    EXPECT_EQ(local_rank[r], lower_ranks_on_host) << "rank " << r;
    EXPECT_EQ(local_size[r], ranks_on_host) << "rank " << r;
  }
}

TEST_F(Comms, LaunchIsDetectedFromTheEnvironment) {
  EXPECT_EQ(launched_as_multi_rank_job(), ranks() > 1);
}

// ---- averages -----------------------------------------------------------------------------------

// Integer-valued floats: every partial sum is exact, so the mean is exact in any order.
float bucket_value(int rank, size_t bucket, size_t i) {
  return static_cast<float>(i % 1024 + bucket) + 3.0f * static_cast<float>(rank);
}
float bucket_mean(int ranks, size_t bucket, size_t i) {
  return static_cast<float>(i % 1024 + bucket) + 1.5f * static_cast<float>(ranks - 1);
}
// Whether every element of a bucket is its mean, naming the first that is not. One assertion
// per bucket: an ASSERT_EQ per element of these megabyte buckets was most of this test's time in
// the sanitizer builds (GoogleTest's assertions compiled at -O0).
::testing::AssertionResult holds_bucket_means(const std::vector<float>& values, int ranks,
                                              size_t bucket) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] != bucket_mean(ranks, bucket, i)) {
      return ::testing::AssertionFailure()
             << "bucket " << bucket << " element " << i << " is " << values[i] << ", the mean is "
             << bucket_mean(ranks, bucket, i);
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(Comms, ManyBucketsAverageExactlyAndCompleteInStartOrder) {
  const std::vector<size_t> sizes = {0, 1, 7, 1000, size_t{4} << 20, 3, 65537, 1, 0, 12345};
  std::vector<std::vector<float>> buckets(sizes.size());
  std::vector<std::string> expected_log;
  for (size_t b = 0; b < sizes.size(); ++b) {
    buckets[b].resize(sizes[b]);
    for (size_t i = 0; i < sizes[b]; ++i) buckets[b][i] = bucket_value(rank(), b, i);
  }
  for (size_t b = 0; b < sizes.size(); ++b) {
    const std::string label = "layer" + std::to_string(b);
    comm().start_average(buckets[b].data(), sizes[b], label);
    expected_log.push_back(bucket_text(label, sizes[b]));
  }
  comm().wait_all();
  for (size_t b = 0; b < sizes.size(); ++b) ASSERT_TRUE(holds_bucket_means(buckets[b], ranks(), b));
  EXPECT_EQ(last_completed(expected_log.size()), expected_log);
}

TEST_F(Comms, StartAverageReturnsBeforeThePeersHaveArrived) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  std::vector<float> bucket(1 << 20);
  for (size_t i = 0; i < bucket.size(); ++i) bucket[i] = bucket_value(rank(), 0, i);
  // The other ranks start 300 ms late, so a blocking start_average on rank 0 would take that long.
  if (rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Clock::time_point start = Clock::now();
  comm().start_average(bucket.data(), bucket.size(), "late");
  const double start_seconds = seconds_since(start);
  comm().wait_all();
  if (rank() == 0) {
    EXPECT_LT(start_seconds, 0.15) << "start_average waited for the other ranks";
  }
  ASSERT_TRUE(holds_bucket_means(bucket, ranks(), 0));
}

TEST_F(Comms, AveragesProgressWhileTheCallerComputes) {
  std::vector<float> bucket(1 << 20);
  for (size_t i = 0; i < bucket.size(); ++i) bucket[i] = bucket_value(rank(), 1, i);
  const std::string done = bucket_text("overlap", bucket.size());
  comm().start_average(bucket.data(), bucket.size(), "overlap");
  // The caller stays out of wait_all (as the backward pass does) and only watches the log.
  const Clock::time_point start = Clock::now();
  bool completed = false;
  while (!completed && seconds_since(start) < 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    completed = last_completed(1) == std::vector<std::string>{done};
  }
  EXPECT_TRUE(completed) << "the average did not complete within 10 s without wait_all()";
  comm().wait_all();
  ASSERT_TRUE(holds_bucket_means(bucket, ranks(), 1));
}

// Values of many magnitudes, different on every rank: their sums depend on the order of addition.
std::vector<float> order_sensitive_values(int rank, size_t count) {
  std::mt19937 generator(1234u + static_cast<unsigned>(rank));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i)
    values[i] = normal(generator) * std::pow(10.0f, float(i % 9) - 4);
  return values;
}

// Buckets from a few hundred bytes to megabytes, so that MPI's different algorithms for small and
// large messages are all exercised.
void average_in_buckets(Communicator& comm, std::vector<float>& values) {
  const std::vector<size_t> ends = {100, 3100, 70000, values.size() / 2, values.size()};
  size_t begin = 0;
  for (size_t end : ends) {
    comm.start_average(values.data() + begin, end - begin, "part-" + std::to_string(begin));
    begin = end;
  }
  comm.wait_all();
}

TEST_F(Comms, AveragingTheSameDataTwiceIsBitIdenticalOnEveryRank) {
  const std::vector<float> original = order_sensitive_values(rank(), 1 << 20);
  std::vector<float> once = original, twice = original;
  average_in_buckets(comm(), once);
  average_in_buckets(comm(), twice);
  EXPECT_EQ(std::memcmp(once.data(), twice.data(), once.size() * sizeof(float)), 0);
  std::vector<float> from_rank_0 = once;
  comm().broadcast(from_rank_0.data(), from_rank_0.size(), DType::kFloat32, 0);
  EXPECT_EQ(std::memcmp(once.data(), from_rank_0.data(), once.size() * sizeof(float)), 0)
      << "ranks hold different averages, so their parameters would drift apart";
}

TEST_F(Comms, BlockingCollectivesInterleaveWithAveragesInStartOrder) {
  std::vector<float> a(100000), b(1), c(65536);
  for (size_t i = 0; i < a.size(); ++i) a[i] = bucket_value(rank(), 2, i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = bucket_value(rank(), 3, i);
  for (size_t i = 0; i < c.size(); ++i) c[i] = bucket_value(rank(), 4, i);
  double loss = 0.5 * (rank() + 1);
  int32_t from_last = rank() == ranks() - 1 ? 77 : 0;
  int64_t tokens = int64_t{rank()} + (int64_t{1} << 40);

  comm().start_average(a.data(), a.size(), "a");
  comm().all_reduce_sum(&loss, 1, DType::kFloat64);
  comm().start_average(b.data(), b.size(), "b");
  comm().broadcast(&from_last, 1, DType::kInt32, ranks() - 1);
  comm().barrier();
  comm().start_average(c.data(), c.size(), "c");
  comm().all_reduce_sum(&tokens, 1, DType::kInt64);
  comm().wait_all();

  EXPECT_EQ(loss, 0.25 * ranks() * (ranks() + 1));
  EXPECT_EQ(from_last, 77);
  EXPECT_EQ(tokens, int64_t{ranks()} * (ranks() - 1) / 2 + int64_t{ranks()} * (int64_t{1} << 40));
  EXPECT_TRUE(holds_bucket_means(a, ranks(), 2));
  EXPECT_TRUE(holds_bucket_means(b, ranks(), 3));
  EXPECT_TRUE(holds_bucket_means(c, ranks(), 4));
  const std::string last = std::to_string(ranks() - 1);
  EXPECT_EQ(last_completed(7),
            (std::vector<std::string>{
                bucket_text("a", a.size()), "all-reduce (sum) of 1 float64 value",
                bucket_text("b", b.size()), "broadcast of 1 int32 value from rank " + last,
                "barrier", bucket_text("c", c.size()), "all-reduce (sum) of 1 int64 value"}));
}

TEST_F(Comms, WaitAllWithNothingStartedReturnsAtOnce) {
  comm().wait_all();
  comm().wait_all();
  comm().set_step(7);
  comm().barrier();
}

TEST(MakeMpiCommunicator, RejectsTimeoutsThatAreNotPositiveAndFinite) {
  EXPECT_THROW(make_mpi_communicator(0), Error);
  EXPECT_THROW(make_mpi_communicator(-1), Error);
  EXPECT_THROW(make_mpi_communicator(std::numeric_limits<double>::quiet_NaN()), Error);
  EXPECT_THROW(make_mpi_communicator(std::numeric_limits<double>::infinity()), Error);
}

// ---- the dead-rank check (spawn mode) -----------------------------------------------------------

struct SpawnOptions {
  bool enabled = false;
  std::string mpirun = "mpirun";
};

SpawnOptions& spawn_options() {
  static SpawnOptions options;
  return options;
}

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string this_executable() {
  std::vector<char> path(4096, '\0');
  const ssize_t length = readlink("/proc/self/exe", path.data(), path.size() - 1);
  if (length <= 0) fail("cannot find this program's path in /proc/self/exe");
  return std::string(path.data(), static_cast<size_t>(length));
}

struct JobResult {
  int exit_status = -1;  // -1: did not exit normally
  double seconds = 0;
  std::string output;
};

// Runs a 2-rank job of this program in child `mode`, killed after 90 s if it hangs (then it
// exits 124 and the check fails with the output so far).
JobResult run_dead_rank_job(const std::string& mode) {
  const std::string command = "timeout -k 5 90 " + shell_quote(spawn_options().mpirun) +
                              " --allow-run-as-root --oversubscribe --bind-to none -np 2 " +
                              shell_quote(this_executable()) + " --dead-rank-child " + mode +
                              " 2>&1";
  JobResult result;
  const Clock::time_point start = Clock::now();
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) fail("cannot run: ", command);
  char chunk[4096];
  size_t n = 0;
  while ((n = fread(chunk, 1, sizeof(chunk), pipe)) > 0) result.output.append(chunk, n);
  const int status = pclose(pipe);
  result.seconds = seconds_since(start);
  if (status != -1 && WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
  return result;
}

class DeadRankCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!spawn_options().enabled) GTEST_SKIP() << "runs only with --spawn-dead-rank-check";
  }

  // The job must end, non-zero, well before anyone would think it hung.
  void expect_prompt_failure(const JobResult& job) {
    EXPECT_NE(job.exit_status, 0) << job.output;
    EXPECT_NE(job.exit_status, 124) << "the job hung and was killed by timeout(1):\n" << job.output;
    EXPECT_LT(job.seconds, kSlowestAcceptableEnd) << job.output;
    std::printf("    job ended after %.1f s with exit status %d\n", job.seconds, job.exit_status);
  }
};

TEST_F(DeadRankCheck, ARankThatExitsEndsTheJobAtOnce) {
  const JobResult job = run_dead_rank_job("exit");
  expect_prompt_failure(job);
  EXPECT_EQ(job.output.find("completed the all-reduce"), std::string::npos) << job.output;
  EXPECT_NE(job.output.find("exit"), std::string::npos) << job.output;  // mpirun names it
}

TEST_F(DeadRankCheck, ARankThatIsKilledEndsTheJobAtOnce) {
  const JobResult job = run_dead_rank_job("kill");
  expect_prompt_failure(job);
  EXPECT_EQ(job.output.find("completed the all-reduce"), std::string::npos) << job.output;
  EXPECT_NE(job.output.find("signal 9"), std::string::npos) << job.output;  // mpirun names it
}

TEST_F(DeadRankCheck, ARankThatHangsIsEndedByTheDeadline) {
  const JobResult job = run_dead_rank_job("hang");
  expect_prompt_failure(job);
  const std::string expected =
      "error: " + rank_text(0, this_host_name()) + ": " +
      timeout_text("all-reduce (sum) of 1 float64 value", 42, kHangTimeoutSeconds);
  EXPECT_NE(job.output.find(expected), std::string::npos) << "expected the line\n"
                                                          << expected << "\nin\n"
                                                          << job.output;
  EXPECT_GE(job.seconds, kHangTimeoutSeconds - 0.5) << "ended before the deadline?\n" << job.output;
}

// A stop signal (SIGTERM, as mpirun sends when it ends a job whose host is gone) that finds rank 0
// waiting in the all-reduce gets a note naming the operation, the step and the wait; the deadline
// still ends the job.
TEST_F(DeadRankCheck, AStopSignalThatFindsARankWaitingInACollectiveNamesIt) {
  const JobResult job = run_dead_rank_job("hang-signalled");
  expect_prompt_failure(job);
  const std::string note = "note: " + rank_text(0, this_host_name()) +
                           ": SIGTERM arrived while all-reduce (sum) of 1 float64 value at step "
                           "42 had waited 2";
  EXPECT_NE(job.output.find(note), std::string::npos) << "expected the line\n"
                                                      << note << "\nin\n"
                                                      << job.output;
  EXPECT_NE(job.output.find("did not complete within"), std::string::npos) << job.output;
}

// The job that run_dead_rank_job() launches: rank 1 fails in the way `mode` names while rank 0
// waits in an all-reduce (hang-signalled: rank 1 hangs, and rank 0 gets SIGTERM after 2 s of it).
// Returns 0 only if the all-reduce completed, which it must not.
int run_dead_rank_child(const std::string& mode) {
  if (mode != "exit" && mode != "kill" && mode != "hang" && mode != "hang-signalled")
    fail("unknown --dead-rank-child mode ", mode);
  const bool hang = mode == "hang" || mode == "hang-signalled";
  // exit and kill must be noticed by mpirun, long before this deadline; hang only by the deadline.
  const double timeout = hang ? kHangTimeoutSeconds : 120;
  std::unique_ptr<Communicator> comm = make_mpi_communicator(timeout);
  comm->set_step(42);
  comm->barrier();  // every rank is up
  if (comm->rank() == 1) {
    if (mode == "exit") std::_Exit(3);
    if (mode == "kill") std::raise(SIGKILL);
    std::this_thread::sleep_for(std::chrono::seconds(60));  // alive, but not in the collective
  }
  if (mode == "hang-signalled") {
    install_stop_signal_handlers();
    std::thread([] {  // (detached: the deadline ends the process while it waits)
      std::this_thread::sleep_for(std::chrono::seconds(2));
      std::raise(SIGTERM);
    })
        .detach();
  }
  double value = 1;
  comm->all_reduce_sum(&value, 1, DType::kFloat64);
  std::fprintf(stderr, "dead-rank child: rank %d completed the all-reduce, which it must not\n",
               comm->rank());
  return 0;
}

// ---- main ---------------------------------------------------------------------------------------

int run_tests_on_every_rank() {
  std::unique_ptr<Communicator> comm = make_mpi_communicator(kTestTimeoutSeconds);
  shared_comm() = comm.get();
  if (comm->rank() != 0) test::report_failures_only(comm->rank());
  if (comm->rank() == 0) {
    std::printf("comms_test: %d rank(s) of the MPI communicator\n", comm->size());
  }
  int32_t failed_ranks = RUN_ALL_TESTS() == 0 ? 0 : 1;
  comm->all_reduce_sum(&failed_ranks, 1, DType::kInt32);
  if (comm->rank() == 0 && failed_ranks > 0) {
    std::printf("comms_test: %d rank(s) had failures\n", failed_ranks);
  }
  shared_comm() = nullptr;
  comm.reset();  // finalises MPI
  return failed_ranks > 0 ? 1 : 0;
}

int run_dead_rank_check() {
  if (launched_as_multi_rank_job()) {
    fail("--spawn-dead-rank-check launches mpirun itself; run it without mpirun");
  }
  spawn_options().enabled = true;
  GTEST_FLAG_SET(filter, "DeadRankCheck.*");
  return RUN_ALL_TESTS();
}

}  // namespace
}  // namespace rf

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);  // takes out the --gtest_ flags
  try {
    std::string child_mode;
    bool spawn_check = false;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--dead-rank-child" && i + 1 < argc) {
        child_mode = argv[++i];
      } else if (arg == "--spawn-dead-rank-check") {
        spawn_check = true;
      } else if (arg == "--mpirun" && i + 1 < argc) {
        rf::spawn_options().mpirun = argv[++i];
      } else {
        rf::fail("unknown argument ", arg,
                 "; use --spawn-dead-rank-check [--mpirun PATH], "
                 "--dead-rank-child exit|kill|hang, or GoogleTest's flags");
      }
    }
    if (!child_mode.empty()) return rf::run_dead_rank_child(child_mode);
    if (spawn_check) return rf::run_dead_rank_check();
    return rf::run_tests_on_every_rank();
  } catch (const rf::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
