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

// `dir` without "." or ".." parts and without a trailing separator ("runs/x/" -> "runs/x").
fs::path normalized(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  return p.has_filename() || p == p.root_path() ? p : p.parent_path();
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
  // The outermost folder this creates (runs/a/b with runs/ alone there: runs/a), so that a start
  // that fails removes all it made.
  for (fs::path p = normalized(out_dir); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    created_root_ = p.string();
    if (p == p.parent_path()) break;
  }
  fs::create_directories(out_dir, ec);
  if (ec) fail("cannot create train.out_dir '", out_dir, "': ", ec.message());
  const std::string path = (fs::path(out_dir) / file_name()).string();
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int error = errno;
    remove_what_it_created();
    fail("cannot open '", path, "': ", std::strerror(error));
  }
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error == EWOULDBLOCK) {
      const std::string holder = holder_of(fd_);
      close(fd_);
      fd_ = -1;
      fail("train.out_dir '", out_dir, "' is in use by another training run",
           holder.empty() ? "" : " (" + holder + ")",
           "; wait for it to end, or give this run another train.out_dir (if that host is down "
           "and its network file system kept the lock, remove ",
           file_name(), ")");
    }
    std::cerr << "note: cannot lock '" << path << "' (" << std::strerror(error)
              << "): a second run started into train.out_dir would not be detected" << std::endl;
    return;
  }
  const std::string holder = this_process() + "\n";
  // (Informative only: the lock is the flock, not the text.)
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, holder.data(), holder.size(), 0) < 0) return;
}

void RunDirectoryLock::remove_what_it_created() {
  if (created_root_.empty()) return;
  std::error_code ec;
  fs::remove(fs::path(out_dir_) / file_name(), ec);
  // Empty folders only, from out_dir up to the outermost one this made.
  for (fs::path p = normalized(out_dir_); !p.empty(); p = p.parent_path()) {
    if (!fs::remove(p, ec) || p.string() == created_root_ || p == p.parent_path()) break;
  }
}

RunDirectoryLock::~RunDirectoryLock() {
  if (fd_ < 0) return;
  std::error_code ec;
  bool only_the_lock = !created_root_.empty();
  for (fs::directory_iterator it(out_dir_, ec), end; only_the_lock && !ec && it != end;
       it.increment(ec))
    only_the_lock = it->path().filename() == file_name();
  if (only_the_lock && !ec) remove_what_it_created();
  close(fd_);  // releases the flock
}

}  // namespace rf
