// Fuzzes the token shard reader (data/shards.h): an input is a shard file, listed by a manifest
// with the token count and vocabulary the file itself claims, when the file is large enough to
// hold that many tokens (so a damaged file gets past that comparison to the reads behind it).
// It is opened with its checksum verified (the whole dataset streamed; the checksum rarely
// matches), then without, and every window is read.
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"

namespace rf::fuzz {

void read_shard_input(const uint8_t* data, size_t size) {
  const std::string path = rf::fuzz::write_scratch_file("train-00000.h5", data, size);
  rf::Manifest manifest;
  manifest.path = rf::fuzz::scratch_dir() + "/manifest.yaml";
  manifest.vocab_size = 256;
  manifest.tokenizer = rf::kBytesTokenizer;
  manifest.train = {rf::ShardEntry{path, 0, 0}};
  rf::fuzz::expect_success_or_error([&] {
    const rf::Hdf5File file = rf::Hdf5File::open_read(path);
    if (file.has_attribute("vocab_size")) manifest.vocab_size = file.get_int("vocab_size");
    // A length the file cannot hold (HDF5 reads chunks never written as zeros) would make the
    // checksum pass stream up to 2^63 tokens: the manifest then keeps 0, a mismatch error.
    if (file.has_dataset(rf::kShardDataset) &&
        file.dataset_length(rf::kShardDataset) <= static_cast<int64_t>(size))
      manifest.train[0].tokens = file.dataset_length(rf::kShardDataset);
  });
  for (const bool verify : {true, false}) {
    rf::fuzz::expect_success_or_error([&] {
      const rf::ShardedWindows windows(manifest, "train", 8, 1 << 16, verify);
      std::vector<int32_t> window(static_cast<size_t>(windows.window_length()));
      for (int64_t i = 0; i < windows.num_windows() && i < 1000; ++i)
        windows.read(i, window.data());
    });
  }
  rf::fuzz::expect_no_open_hdf5_objects();
}

}  // namespace rf::fuzz
