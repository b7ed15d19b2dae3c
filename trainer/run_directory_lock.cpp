#include "trainer/run_directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "base/error.h"

namespace fs = std::filesystem;

namespace rf {
namespace {

// "pid 1234 on host node7", as the holder wrote it into the lock file; "" if unreadable.
std::string holder_of(int fd) {
  char text[256] = {};
  const ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
  if (n <= 0) return "";
  std::string holder(text, static_cast<size_t>(n));
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
  return holder;
}

std::string this_process() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  return concat("pid ", getpid(), " on host ", host);
}

}  // namespace

RunDirectoryLock::RunDirectoryLock(const std::string& out_dir) : out_dir_(out_dir) {
  std::error_code ec;
  if (fs::is_symlink(out_dir, ec) && !fs::exists(out_dir, ec))
    fail("train.out_dir '", out_dir, "' is a symbolic link to '",
         fs::read_symlink(out_dir, ec).string(), "', which does not exist");
  created_dir_ = !fs::exists(out_dir, ec);
  fs::create_directories(out_dir, ec);
  if (ec) fail("cannot create train.out_dir '", out_dir, "': ", ec.message());
  const std::string path = (fs::path(out_dir) / file_name()).string();
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error == EWOULDBLOCK) {
      const std::string holder = holder_of(fd_);
      close(fd_);
      fd_ = -1;
      created_dir_ = false;  // (the other run's directory)
      fail("train.out_dir '", out_dir, "' is in use by another training run",
           holder.empty() ? "" : " (" + holder + ")",
           "; wait for it to end, or give this run another train.out_dir");
    }
    std::cerr << "note: cannot lock '" << path << "' (" << std::strerror(error)
              << "): a second run started into train.out_dir would not be detected" << std::endl;
    return;
  }
  const std::string holder = this_process() + "\n";
  // (Informative only: the lock is the flock, not the text.)
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, holder.data(), holder.size(), 0) < 0) return;
}

RunDirectoryLock::~RunDirectoryLock() {
  if (fd_ < 0) return;
  std::error_code ec;
  const fs::path lock = fs::path(out_dir_) / file_name();
  bool only_the_lock = created_dir_;
  for (fs::directory_iterator it(out_dir_, ec), end; only_the_lock && !ec && it != end;
       it.increment(ec))
    only_the_lock = it->path().filename() == lock.filename();
  if (only_the_lock && !ec) {
    fs::remove(lock, ec);
    fs::remove(out_dir_, ec);
  }
  close(fd_);  // releases the flock
}

}  // namespace rf
