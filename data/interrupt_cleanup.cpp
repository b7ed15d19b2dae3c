#include "data/interrupt_cleanup.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

namespace rf {
namespace {

std::mutex g_mutex;
std::vector<std::string> g_paths;  // in the order registered; removed newest first

// The signals that would end the process: a signal ignored from the start stays ignored (nohup's
// SIGHUP; the SIGINT of a job a script runs in the background, meant for the script). Blocked, an
// ignored signal would be queued for sigwait instead of dropped.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction current;
    if (sigaction(signal, nullptr, &current) == 0 && current.sa_handler == SIG_IGN) continue;
    sigaddset(&set, signal);
  }
  return set;
}

// The watcher: an ordinary thread, so it may take locks and call the filesystem (a signal
// handler may not).
void remove_registered_when_signalled(sigset_t set) {
  int signal = 0;
  if (sigwait(&set, &signal) != 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);  // (held to the end: nothing new is registered)
  std::error_code ignored;
  for (auto it = g_paths.rbegin(); it != g_paths.rend(); ++it)
    if (!std::filesystem::is_directory(*it, ignored) || std::filesystem::is_empty(*it, ignored))
      std::filesystem::remove(*it, ignored);
  const char* name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "SIGHUP";
  std::fprintf(stderr, "\nstopped by %s: the partial output is removed\n", name);
  std::fflush(stderr);
  ::_exit(128 + signal);
}

}  // namespace

void start_interrupt_cleanup() {
  static std::once_flag started;
  std::call_once(started, [] {
    const sigset_t set = stop_signals();
    if (sigisemptyset(&set)) return;  // (every one ignored: nothing to wait for)
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread(remove_registered_when_signalled, set).detach();
  });
}

void remove_on_interrupt(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_paths.push_back(path);
}

void keep_on_interrupt(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_paths.erase(std::remove(g_paths.begin(), g_paths.end(), path), g_paths.end());
}

}  // namespace rf
