// What the tests of `prepare` and of the shard format share: a scratch folder removed at scope
// exit, pseudo-random text, a small text prepared into shards, and the check that an action fails
// with one line naming what is wrong.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/prepare.h"

namespace rf::test {

// A fresh directory under ::testing::TempDir(), removed with everything in it at scope exit.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_((std::filesystem::path(::testing::TempDir()) /
               ("shard_files_" + name + "_" + std::to_string(::getpid())))
                  .string()) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string pseudo_text(size_t bytes, uint32_t seed) {
  std::string text(bytes, ' ');
  uint32_t state = seed;
  for (char& c : text) {
    state = state * 1664525u + 1013904223u;
    c = static_cast<char>(32 + (state >> 24) % 95);
  }
  return text;
}

inline std::string write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

// Runs `action`, expecting an rf::Error whose one-line message contains every fragment.
inline void expect_error(const std::function<void()>& action,
                         const std::vector<std::string>& fragments) {
  try {
    action();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "message lacks '" << fragment << "': " << message;
    return;
  }
  ADD_FAILURE() << "expected an rf::Error";
}

inline PrepareOptions text_options(std::vector<std::string> inputs, const std::string& out,
                                   int64_t shards) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.output_dir = out;
  o.shards = shards;
  o.val_fraction = 0.1;
  return o;
}

// A directory holding a small text prepared into `shards` training shards; `text` is the input.
struct PreparedText {
  ScratchDir scratch;
  std::string dir, manifest, text;
};

inline PreparedText prepare_text(const std::string& name, size_t bytes, int64_t shards) {
  PreparedText p{ScratchDir(name), "", "", pseudo_text(bytes, 7)};
  p.dir = p.scratch.path();
  const std::string input = write_file(p.dir + "/input.txt", p.text);
  std::ostringstream progress;
  prepare_shards(text_options({input}, p.dir + "/out", shards), progress);
  p.manifest = p.dir + "/out/manifest.yaml";
  return p;
}

}  // namespace rf::test
