#include "fuzz/fuzz_support.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/hdf5_io.h"
#include "tests/tiny_model_yaml.h"

namespace rf::fuzz {
namespace fs = std::filesystem;

namespace {

// Owns the scratch folder; its destructor (at exit) removes it.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/rf-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("rf fuzz: mkdtemp");
      std::abort();
    }
    path = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

std::string write_scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "rf fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

void reject_internal_check(const Error& error) {
  // RF_CHECK's messages start so; user errors start with the file or key they name (and may
  // quote the input, which can hold any text).
  static const char kInternal[] = "internal check failed";
  if (std::strncmp(error.what(), kInternal, sizeof kInternal - 1) == 0) {
    std::fprintf(stderr, "rf fuzz: input reached an internal check: %s\n", error.what());
    std::abort();
  }
}

void expect_no_open_hdf5_objects() {
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open != 0) {
    std::fprintf(stderr, "rf fuzz: %zd HDF5 objects are still open after the input\n", open);
    std::abort();
  }
}

const char* const kTinyModelYaml = test::kTinyModelYaml;

Manifest write_fixed_shards(const std::string& dir) {
  Manifest manifest;
  manifest.path = dir + "/manifest.yaml";
  manifest.vocab_size = 256;
  manifest.tokenizer = kBytesTokenizer;
  manifest.source = "rf fuzz: fixed shards";
  const auto write = [&](const std::string& split, int64_t tokens) {
    ShardWriter writer(dir + "/" + split + "-00000.h5", 256, kBytesTokenizer, split, tokens);
    std::vector<uint8_t> bytes(static_cast<size_t>(tokens));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 11);
    writer.append(bytes.data(), tokens);
    return writer.finish();
  };
  manifest.train = {write("train", 100)};
  manifest.val = {write("val", 40)};
  return manifest;
}

}  // namespace rf::fuzz
