// Helpers for tests that run whole `reformer` jobs as a user would (tests/launch_test.cpp on one
// machine, tests/multihost_test.cpp across simulated hosts): start a job in the background, wait
// for it with a limit, wait for its files, and a tiny job config.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "trainer/checkpoint.h"

namespace rf::test {

// Starts `command` through the shell, in a process group of its own, with output to `log`;
// returns the shell's pid.
inline pid_t spawn(const std::string& command, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    // (A test runner started in the background ignores SIGINT, and the job would inherit that.)
    signal(SIGINT, SIG_DFL);
    execl("/bin/sh", "sh", "-c", ("exec " + command + " > " + log + " 2>&1").c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

// Ends a spawned job when the test leaves early (a failed assertion must not leave a training job
// running into the next test): `first` (SIGKILL, or SIGTERM for a job that cleans up after itself
// on it), then SIGKILL to its process group if it is still there 15 s later.
struct ReapOnExit {
  pid_t pid;
  int first = SIGKILL;
  ~ReapOnExit() {
    int status = 0;
    if (pid <= 0 || waitpid(pid, &status, WNOHANG) != 0) return;
    kill(first == SIGKILL ? -pid : pid, first);
    for (int i = 0; i < 150 && waitpid(pid, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (kill(pid, 0) == 0) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Waits for `pid` to exit (up to `limit` s); returns its exit code (128 + signal when killed), or
// -1 after killing its process group when it did not end in time.
inline int wait_exit(pid_t pid, double limit, double* seconds) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      *seconds = seconds_since(start);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (seconds_since(start) > limit) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      *seconds = seconds_since(start);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Waits until `dir` holds a finished checkpoint (step-*.h5); returns its path or "".
inline std::string wait_for_any_checkpoint(const std::string& dir, double limit) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.path().extension() == ".h5") return e.path().string();
    if (seconds_since(start) > limit) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The step of the newest intact checkpoint in run directory `out` (-1 without one): a resumed job
// that should run one more step stops at this + 1.
inline int64_t newest_checkpoint_step(const std::string& out) {
  return checkpoint_step_of_file(find_latest_checkpoint(checkpoint_dir(out)));
}

inline bool wait_for_file(const std::string& path, double limit) {
  const auto start = std::chrono::steady_clock::now();
  while (!std::filesystem::exists(path)) {
    if (seconds_since(start) > limit) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A tiny experiment (2 layers of width 32, 64 tokens) written to DIR/job.yaml; returns its path.
inline std::string write_tiny_job_config(const std::string& dir) {
  std::string path = dir + "/job.yaml";
  std::ofstream(path) << R"(model:
  vocab_size: 32
  d_model: 32
  d_ff: 64
  n_layers: 2
  n_heads: 2
  d_head: 16
  attention: [lsh, local]
  dropout: 0.1
  position: learned
lsh: {bucket_size: 16, local_chunk: 16}
train: {seq_len: 64, batch_size: 1, steps: 6, lr: 0.003, warmup: 2, log_every: 1,
        eval_every: 0, checkpoint_every: 0}
)";
  return path;
}

// Where a run into `out_dir` leaves its checkpoint of `step`.
inline std::string final_checkpoint(const std::string& out_dir, int64_t step) {
  return (std::filesystem::path(checkpoint_dir(out_dir)) / checkpoint_file_name(step)).string();
}

}  // namespace rf::test
