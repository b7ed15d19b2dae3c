// One training run per run directory at a time. Two runs writing one train.out_dir (a job
// requeued while the first still runs, or the same command started twice with --resume auto)
// interleave metrics.jsonl, remove each other's temporary checkpoint files and prune
// checkpoints the other then names as its newest. Rank 0 holds an advisory lock (flock) on
// <out_dir>/.train.lock for the whole run; the kernel drops it when the process ends, however it
// ends, so a killed run leaves no stale lock on a local disk (a network file system may keep the
// lock of a host that died until its lease expires: the refusal says to remove the file then).
#pragma once

#include <string>

namespace rf {

class RunDirectoryLock {
 public:
  // Creates out_dir if needed and takes the lock, or fails naming the process that holds it. A
  // file system without locks (some network mounts) gets a note on stderr and no lock.
  explicit RunDirectoryLock(const std::string& out_dir);
  // Releases the lock. The folders this lock created, when nothing else was written in them (a
  // start that failed), are removed again, so a failed start leaves nothing behind.
  ~RunDirectoryLock();
  RunDirectoryLock(const RunDirectoryLock&) = delete;
  RunDirectoryLock& operator=(const RunDirectoryLock&) = delete;

  static std::string file_name() { return ".train.lock"; }

 private:
  // The lock file, then out_dir and the folders above it this made, while empty.
  void remove_what_it_created();

  std::string out_dir_;
  std::string created_root_;  // the outermost folder this made; "" when out_dir existed
  int fd_ = -1;
};

}  // namespace rf
