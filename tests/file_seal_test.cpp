// Whole-file checksums sealed onto checkpoints and shards (data/file_seal.h): a sealed file reads
// back through HDF5 as before; any damaged byte, a truncation or an append is a one-line error
// naming the file, raised before HDF5 parses the file, so HDF5's own crashes on damaged metadata
// (fuzz/hdf5-crashes/) cannot happen on a file this program wrote; unsealed files still open.
#include "data/file_seal.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/hdf5_io.h"
#include "data/shards.h"
#include "tests/run_fixture.h"
#include "trainer/checkpoint.h"

namespace rf {
namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A sealed shard of `tokens` byte tokens, as prepare writes one.
std::string sealed_shard(const std::string& dir, int64_t tokens) {
  std::string path = dir + "/shard.h5";
  ShardWriter writer(path, 256, kBytesTokenizer, "train", tokens);
  std::vector<uint8_t> data(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) data[static_cast<size_t>(i)] = static_cast<uint8_t>(i * 7);
  writer.append(data.data(), tokens);
  writer.finish();
  return path;
}

TEST(FileSeal, SealedShardsReadBackAndAnyDamageIsNamedBeforeHdf5Opens) {
  const std::string dir = test::fresh_dir("shards");
  const std::string path = sealed_shard(dir, 5000);
  EXPECT_TRUE(check_file_seal(path));
  {
    const Hdf5File file = Hdf5File::open_read(path);  // HDF5 ignores the trailer
    EXPECT_EQ(file.dataset_length("tokens"), 5000);
  }
  const std::string sealed = read_bytes(path);
  // One byte of the superblock, of the middle, of the checksum itself.
  for (const size_t at : {size_t{20}, sealed.size() / 2, sealed.size() - 25}) {
    std::string damaged = sealed;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);
    write_bytes(path, damaged);
    const std::string e = error_of([&] { Hdf5File::open_read(path); });
    EXPECT_NE(e.find("'" + path + "' is damaged"), std::string::npos) << at << ": " << e;
  }
  write_bytes(path, sealed.substr(0, 100) + sealed.substr(101));  // one byte lost
  EXPECT_NE(error_of([&] { Hdf5File::open_read(path); }).find("sealed over"), std::string::npos);
  // Unsealed files (older versions, other tools) are opened without the check.
  const std::string plain = dir + "/plain.bin";
  write_bytes(plain, "not sealed");
  EXPECT_FALSE(check_file_seal(plain));
  // Opening without the check (ranks that do not verify) leaves a damaged byte to HDF5's
  // Fletcher-32 checksums or its own checks; the seal is what covers the metadata.
  write_bytes(path, sealed);
  EXPECT_EQ(Hdf5File::open_read(path, false).dataset_length("tokens"), 5000);
}

// The input on which HDF5 1.10.8 divides by zero (SIGFPE) while opening a dataset, as a sealed file
// damaged into it: refused with an error instead of a crash of the whole process.
TEST(FileSeal, AKnownHdf5CrashInputIsRefusedWhenItWasSealedBeforeTheDamage) {
  const std::string crash = read_bytes(std::string(RF_SOURCE_DIR) +
                                       "/fuzz/hdf5-crashes/shard-chunk-dimension-zero-sigfpe.h5");
  ASSERT_GT(crash.size(), 1000u);
  const std::string dir = test::fresh_dir("crash");
  const std::string path = dir + "/shard.h5";
  std::string original = crash;  // what was sealed: one byte other than the damage left it
  original[crash.size() / 2] = static_cast<char>(original[crash.size() / 2] ^ 0x01);
  write_bytes(path, original);
  seal_file(path);
  std::string damaged = read_bytes(path);
  damaged.replace(0, crash.size(), crash);
  write_bytes(path, damaged);
  const std::string e = error_of([&] {
    const Hdf5File file = Hdf5File::open_read(path);
    file.dataset_length("tokens");  // where HDF5 crashes on this input
  });
  EXPECT_NE(e.find("is damaged: its contents do not match the checksum"), std::string::npos) << e;
}

TEST(FileSeal, DamagedCheckpointsAreRefusedWithTheirNameAndResumeTakesTheOlderOne) {
  const std::string dir = test::fresh_dir("run");
  const Config cfg = test::short_run_config(dir, 4, 1, {"train.checkpoint_every=2"});
  test::train_quietly(cfg);
  const std::string newest = checkpoint_dir(dir) + "/" + checkpoint_file_name(4);
  ASSERT_TRUE(check_file_seal(newest));
  std::string bytes = read_bytes(newest);
  bytes[64] = static_cast<char>(bytes[64] ^ 0x40);  // HDF5's metadata, which no dataset checks
  write_bytes(newest, bytes);
  const std::string e = error_of([&] { checkpoint_config_text(newest); });
  EXPECT_NE(e.find("'" + newest + "' is damaged"), std::string::npos) << e;
  EXPECT_EQ(find_latest_checkpoint(checkpoint_dir(dir)),
            checkpoint_dir(dir) + "/" + checkpoint_file_name(2));
}

}  // namespace
}  // namespace rf
