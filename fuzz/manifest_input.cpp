// Fuzzes the shard manifest reader (data/shards.h): an input is a manifest.yaml beside two
// intact shards (train-00000.h5, val-00000.h5); a manifest that reads is opened as both splits
// with checksums verified, and every window of each is read.
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"

namespace {

void read_split(const rf::Manifest& manifest, const std::string& split) {
  rf::fuzz::expect_success_or_error([&] {
    const rf::ShardedWindows windows(manifest, split, 8, 256, true);
    std::vector<int32_t> window(static_cast<size_t>(windows.window_length()));
    for (int64_t i = 0; i < windows.num_windows(); ++i) windows.read(i, window.data());
  });
}

}  // namespace

namespace rf::fuzz {

void read_manifest_input(const uint8_t* data, size_t size) {
  static const rf::Manifest shards = rf::fuzz::write_fixed_shards(rf::fuzz::scratch_dir());
  const std::string path = rf::fuzz::write_scratch_file("manifest.yaml", data, size);
  rf::Manifest manifest;
  bool read = false;
  rf::fuzz::expect_success_or_error([&] {
    manifest = rf::read_manifest(path);
    read = true;
  });
  if (!read) return;  // (read_manifest opens no HDF5 file)
  read_split(manifest, "train");
  read_split(manifest, "val");
  rf::fuzz::expect_no_open_hdf5_objects();
}

}  // namespace rf::fuzz
