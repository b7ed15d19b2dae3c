// A small tmpfs mounted on a fresh temporary folder, unmounted and removed when it goes out of
// scope: a real filesystem that fills up, for tests of what a full disk does to the program's
// writes. Mounting needs root (CAP_SYS_ADMIN); without it the tests skip, except in CI (which
// runs as root), where they fail.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_python.h"

namespace rf::test {

class SmallTmpfs {
 public:
  explicit SmallTmpfs(int64_t bytes) {
    if (::geteuid() != 0) {
      problem_ = "mounting a tmpfs needs root";
      return;
    }
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / "rf_tmpfs_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) {
      problem_ = "cannot create a temporary folder: " + std::string(std::strerror(errno));
      return;
    }
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    if (::mount("tmpfs", pattern.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      problem_ = "mount -t tmpfs -o " + options + " failed: " + std::strerror(errno);
      ::rmdir(pattern.c_str());
      return;
    }
    path_ = pattern;
  }
  ~SmallTmpfs() {
    if (path_.empty()) return;
    // A descriptor still open on it (a file the program under test kept) makes a plain unmount
    // busy: detach it then, the kernel finishes when the last descriptor closes.
    if (::umount2(path_.c_str(), 0) != 0) ::umount2(path_.c_str(), MNT_DETACH);
    ::rmdir(path_.c_str());
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool mounted() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  const std::string& problem() const { return problem_; }

  // Writes a file `name` until the filesystem has no space left; returns its path.
  std::string fill(const std::string& name = "filler") {
    std::string file = path_ + "/" + name;
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    EXPECT_GE(fd, 0) << file << ": " << std::strerror(errno);
    const std::vector<char> block(size_t{64} * 1024, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC) << "filling " << file << " stopped with " << std::strerror(errno);
    ::close(fd);
    EXPECT_EQ(free_bytes(), 0) << "the filesystem is not full";
    return file;
  }

  int64_t free_bytes() const {
    struct statvfs s;
    if (::statvfs(path_.c_str(), &s) != 0) return -1;
    return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
  }

 private:
  std::string path_;
  std::string problem_;
};

}  // namespace rf::test

// Declares `::rf::test::SmallTmpfs var(bytes)`; skips the test where it cannot be mounted (not
// root, no mount permission in a container), except in CI, where that fails it.
// NOLINTBEGIN(bugprone-macro-parentheses): `var` is the name the macro declares
#define RF_SMALL_TMPFS_OR_SKIP(var, bytes)                                                 \
  ::rf::test::SmallTmpfs var(bytes);                                                       \
  if (!var.mounted()) {                                                                    \
    if (::rf::test::running_in_ci()) FAIL() << "cannot mount a tmpfs: " << var.problem();  \
    GTEST_SKIP() << "cannot mount a small tmpfs for the full-disk test (" << var.problem() \
                 << "); run as root to include it";                                        \
  }
// NOLINTEND(bugprone-macro-parentheses)
