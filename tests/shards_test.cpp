// Tests of the HDF5 token shards: every damaged or mismatched manifest or shard (missing,
// truncated, not HDF5, wrong type or shape, checksum or count mismatch, tokens past the
// vocabulary, the same shard twice) gives a one-line error naming it.
#include "data/shards.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iterator>
#include <thread>

#include "base/error.h"
#include "base/fnv1a.h"
#include "data/byte_corpus.h"
#include "data/prepare.h"
#include "tests/shard_files.h"
#include "tests/test_util.h"

namespace rf {
namespace {
namespace fs = std::filesystem;
using test::expect_error;
using test::prepare_text;
using test::PreparedText;
using test::read_text;
using test::ScratchDir;
using test::write_file;

// A shard written by hand (bypassing ShardWriter) and a manifest listing it as the train split.
std::string hand_written_manifest(const std::string& dir, const std::string& shard, int64_t tokens,
                                  uint64_t checksum, int64_t vocab) {
  Manifest m;
  m.vocab_size = vocab;
  m.tokenizer = "bytes";
  m.train.push_back({dir + "/" + shard, tokens, checksum});
  std::string path = dir + "/manifest.yaml";
  write_manifest(m, path);
  return path;
}

void set_shard_attributes(Hdf5File& file, int64_t vocab) {
  file.set_int("format_version", 1);
  file.set_int("vocab_size", vocab);
  file.set_string("tokenizer", "bytes");
  file.set_string("split", "train");
}

// Overwrites token `position` of a shard in place (its Fletcher-32 chunk checksum stays valid).
void flip_token(const std::string& path, int64_t position) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  const hid_t set = H5Dopen2(file, "tokens", H5P_DEFAULT);
  const hid_t space = H5Dget_space(set);
  const hsize_t start = static_cast<hsize_t>(position), count = 1;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  const hid_t memory = H5Screate_simple(1, &count, nullptr);
  uint8_t token = 0;
  ASSERT_GE(H5Dread(set, H5T_NATIVE_UINT8, memory, space, H5P_DEFAULT, &token), 0);
  token ^= 1;
  ASSERT_GE(H5Dwrite(set, H5T_NATIVE_UINT8, memory, space, H5P_DEFAULT, &token), 0);
  H5Sclose(memory);
  H5Sclose(space);
  H5Dclose(set);
  H5Fclose(file);
}

// --- damaged or mismatched shards ----------------------------------------------------------

TEST(ShardErrors, ManifestMissingOrMalformed) {
  const ScratchDir scratch("manifest_errors");
  const std::string& dir = scratch.path();
  expect_error([&] { read_manifest(dir + "/manifest.yaml"); }, {"manifest.yaml", "not exist"});
  write_file(dir + "/bad.yaml", "train: [unclosed\n");
  expect_error([&] { read_manifest(dir + "/bad.yaml"); }, {"bad.yaml", "YAML"});
  write_file(dir + "/nokey.yaml", "format_version: 1\ntokenizer: bytes\ntrain: []\nval: []\n");
  expect_error([&] { read_manifest(dir + "/nokey.yaml"); }, {"nokey.yaml", "vocab_size"});
  write_file(dir + "/noval.yaml",
             "format_version: 1\nvocab_size: 256\ntokenizer: bytes\n"
             "train: [{file: a.h5, tokens: 5, checksum: 'zz'}]\nval: []\n");
  expect_error([&] { read_manifest(dir + "/noval.yaml"); }, {"noval.yaml", "checksum"});
}

// Hand-edited manifests: a shard listed twice was read twice an epoch, a validation shard listed
// for training trained on the validation tokens, and an unknown key was ignored. Each is refused.
TEST(ShardErrors, AShardListedTwiceOrInBothSplitsAndUnknownKeysAreRefused) {
  const PreparedText p = prepare_text("listed_twice", 3000, 2);
  const std::string text = read_text(p.manifest);
  const Manifest m = read_manifest(p.manifest);
  ASSERT_EQ(m.train.size(), 2u);
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from << " in " << t;
    if (at != std::string::npos) t.replace(at, from.size(), to);
    const std::string path = p.dir + "/out/edited.yaml";
    write_file(path, t);
    return path;
  };
  expect_error([&] { read_manifest(edited("train-00001.h5", "train-00000.h5")); },
               {"edited.yaml': train[1] '", "train-00000.h5' is the same file as train[0] '"});
  expect_error([&] { read_manifest(edited("val-00000.h5", "train-00001.h5")); },
               {"val[0] '", "is the same file as train[1] '",
                "each shard may be listed once, in train or in val"});
  // A hard link is the same file by another name; a copy holds the same tokens.
  fs::create_hard_link(p.dir + "/out/train-00000.h5", p.dir + "/out/linked.h5");
  expect_error([&] { read_manifest(edited("train-00001.h5", "linked.h5")); },
               {"train[1] '", "linked.h5' is the same file as train[0] '"});
  fs::copy_file(p.dir + "/out/train-00000.h5", p.dir + "/out/copied.h5");
  const std::string copy_listed = edited("train-00001.h5", "copied.h5");
  expect_error(
      [&] {
        // (the copy's entry keeps train-00001's count and checksum unless edited to train-00000's)
        std::string t = read_text(copy_listed);
        const Manifest original = read_manifest(p.manifest);
        const std::string from = checksum_to_hex(original.train[1].checksum);
        t.replace(t.find(from), from.size(), checksum_to_hex(original.train[0].checksum));
        const std::string tokens1 = "tokens: " + std::to_string(original.train[1].tokens);
        if (t.find(tokens1) != std::string::npos)
          t.replace(t.find(tokens1), tokens1.size(),
                    "tokens: " + std::to_string(original.train[0].tokens));
        write_file(copy_listed, t);
        read_manifest(copy_listed);
      },
      {"train[1] '", "copied.h5' holds the same tokens as train[0] '"});
  expect_error([&] { read_manifest(edited("vocab_size:", "extra_key: 5\nvocab_size:")); },
               {"edited.yaml': unknown key 'extra_key'"});
  // A key twice (YAML keeps one: a second train list dropped the first's shards), and an entry's
  // unknown or repeated key, were ignored.
  expect_error([&] { read_manifest(edited("vocab_size:", "val: []\nvocab_size:")); },
               {"edited.yaml': key 'val' twice"});
  expect_error([&] { read_manifest(edited("file: train-00001.h5", "file: train-00001.h5, x: 1")); },
               {"edited.yaml': train[1]", "unknown key 'x' (file, tokens, checksum)"});
  expect_error(
      [&] { read_manifest(edited("file: train-00001.h5", "file: train-00001.h5, tokens: 5")); },
      {"edited.yaml': train[1]", "key 'tokens' twice"});
  expect_error(
      [&] {
        read_manifest(edited("vocab_size:",
                             "tokenizer_model: {file: m.model, checksum: "
                             "\"0000000000000001\", sha: 1}\nvocab_size:"));
      },
      {"edited.yaml': tokenizer_model", "unknown key 'sha' (file, checksum)"});
  EXPECT_NO_THROW(read_manifest(edited("vocab_size:", "vocab_size:")));  // the copy itself reads
}

// data.val given as another manifest: a shard of it that data.train trains on (the same file or
// a copy) is refused; so is a validation shard listed for training (prepare's split attribute).
TEST(ShardErrors, ValidationShardsThatTrainingReadsAreRefused) {
  const PreparedText p = prepare_text("validation_trained", 3000, 2);
  const Manifest a = read_manifest(p.manifest);
  Manifest b = a;
  b.path = p.dir + "/other.yaml";
  EXPECT_NO_THROW(check_no_shard_in_both(a, b));
  b.val = {a.train[1]};
  expect_error([&] { check_no_shard_in_both(a, b); },
               {"data.train and data.val: val of '", "other.yaml' [0] '",
                "train-00001.h5' is the "
                "same file as train of '",
                "validation would score tokens that training trains on"});
  Manifest swapped = a;
  swapped.train[1] = a.val[0];
  expect_error([&] { ShardedWindows(swapped, "train", 16, 256, false); },
               {"val-00000.h5' was written as a val shard (its split attribute) but is listed "
                "for train"});
}

// A manifest's folder, or a shard, given as the manifest: one line saying which it is (the folder
// failed as "basic_filebuf::underflow error"). A symbolic link to a manifest reads the shards
// beside the manifest, not beside the link (they were "missing").
TEST(ShardErrors, AFolderOrAShardGivenAsTheManifestAndALinkToAManifest) {
  const PreparedText p = prepare_text("manifest_kinds", 3000, 1);
  expect_error([&] { read_manifest(p.dir + "/out"); },
               {"/out' is a directory: give the manifest.yaml in it"});
  expect_error([&] { read_manifest(p.dir + "/out/train-00000.h5"); },
               {"train-00000.h5' is an HDF5 file (a shard?), not a manifest"});
  const std::string link = p.dir + "/linked-manifest.yaml";
  fs::create_symlink(p.manifest, link);
  const Manifest m = read_manifest(link);
  EXPECT_EQ(ShardedWindows(m, "train", 16, 256, true).num_windows(),
            ShardedWindows(read_manifest(p.manifest), "train", 16, 256, true).num_windows());
}

TEST(ShardErrors, MissingShard) {
  const PreparedText p = prepare_text("missing", 3000, 2);
  fs::remove(p.dir + "/out/train-00001.h5");
  const Manifest m = read_manifest(p.manifest);
  expect_error([&] { ShardedWindows(m, "train", 16, 256, false); }, {"train-00001.h5", "missing"});
  EXPECT_NO_THROW(ShardedWindows(m, "val", 16, 256, true));
}

TEST(ShardErrors, TruncatedShard) {
  const PreparedText p = prepare_text("truncated", 3000, 1);
  const std::string shard = p.dir + "/out/train-00000.h5";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  expect_error([&] { ShardedWindows(read_manifest(p.manifest), "train", 16, 256, false); },
               {"train-00000.h5"});
}

TEST(ShardErrors, NotHdf5) {
  const PreparedText p = prepare_text("not_hdf5", 3000, 1);
  write_file(p.dir + "/out/val-00000.h5", "just some text");
  expect_error([&] { ShardedWindows(read_manifest(p.manifest), "val", 16, 256, false); },
               {"val-00000.h5", "HDF5"});
  // A FIFO in its place blocked the start-up in its open.
  fs::remove(p.dir + "/out/val-00000.h5");
  ASSERT_EQ(::mkfifo((p.dir + "/out/val-00000.h5").c_str(), 0600), 0);
  expect_error([&] { ShardedWindows(read_manifest(p.manifest), "val", 16, 256, true); },
               {"val-00000.h5' is not a regular file"});
}

// data.format text given a manifest (or a shard) trained on its bytes without a word.
TEST(ShardErrors, AManifestOrAShardReadAsTextIsRefused) {
  const PreparedText p = prepare_text("read_as_text", 3000, 1);
  const std::string copied = p.dir + "/listing.yaml";  // (recognised by its first line)
  fs::copy_file(p.manifest, copied);
  for (const std::string& manifest : {p.manifest, copied})
    expect_error([&] { ByteCorpus(manifest, "data.train", 16, 0.0, 1.0); },
                 {"data.train", manifest, "shard manifest", "data.format: hdf5"});
  expect_error([&] { ByteCorpus(p.dir + "/out/train-00000.h5", "data.val", 16, 0.0, 1.0); },
               {"data.val", "train-00000.h5", "HDF5 file"});
  write_file(p.dir + "/notes.txt", std::string(100, 'x'));  // (text still reads)
  EXPECT_EQ(ByteCorpus(p.dir + "/notes.txt", "data.train", 16, 0.0, 1.0).num_windows(), 6);
}

// Every shard stays open: more shards than `ulimit -n` failed at the first past the limit as if
// it were damaged. The soft limit is raised as far as the hard one; past that, one line says so.
TEST(ShardErrors, MoreShardsThanTheOpenFileLimitAllowsAreNamedAsSuch) {
  const PreparedText p = prepare_text("open_files", 12000, 80);
  const Manifest m = read_manifest(p.manifest);
  ASSERT_GE(m.train.size(), 70u);
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  const rlim_t low = 40 + static_cast<rlim_t>(std::distance(fs::directory_iterator("/proc/self/fd"),
                                                            fs::directory_iterator()));
  if (original.rlim_max != RLIM_INFINITY && original.rlim_max < low + 200)
    GTEST_SKIP() << "the hard limit on open files is too low to test raising the soft one";
  rlimit lowered = original;
  lowered.rlim_cur = low;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  EXPECT_NO_THROW(ShardedWindows(m, "train", 16, 256, true));
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_GT(now.rlim_cur, low);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
  // With the hard limit that low too (in a child process: it cannot be raised again).
  const auto open_under_a_low_hard_limit = [&] {
    rlimit hard{};
    hard.rlim_cur = hard.rlim_max = low;
    if (setrlimit(RLIMIT_NOFILE, &hard) != 0) std::_Exit(2);
    try {
      ShardedWindows(m, "train", 16, 256, true);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::_Exit(3);
    }
    std::_Exit(0);
  };
  EXPECT_EXIT(
      open_under_a_low_hard_limit(), ::testing::ExitedWithCode(3),
      "the 'train' split of manifest '.*manifest.yaml' \\([0-9]+ shards, each kept open\\) keeps "
      "[0-9]+ files open at once, but this process may open [0-9]+ \\(the hard limit of ulimit -n");
}

TEST(ShardErrors, WrongDtype) {
  const ScratchDir scratch("dtype");
  const std::string& dir = scratch.path();
  const std::vector<float> values(100, 1.0f);
  Hdf5File file = Hdf5File::create(dir + "/floats.h5");
  file.write("tokens", H5T_NATIVE_FLOAT, values.data(), 100);
  set_shard_attributes(file, 256);
  file.close();
  const std::string manifest = hand_written_manifest(dir, "floats.h5", 100, 0, 256);
  expect_error([&] { ShardedWindows(read_manifest(manifest), "train", 16, 256, false); },
               {"floats.h5", "floating-point", "unsigned integers"});
}

// Attributes as another tool may write them: an array where one value belongs crashed the program
// (SIGSEGV, or free(): invalid size for strings); h5py's variable-length strings were refused.
TEST(ShardErrors, AttributesOfSeveralValuesAreRefusedAndVariableLengthStringsRead) {
  const ScratchDir scratch("attributes");
  const std::string& dir = scratch.path();
  const std::vector<uint8_t> values(100, 3);
  auto shard = [&](const std::string& name, const std::function<void(hid_t)>& attributes) {
    Hdf5File file = Hdf5File::create(dir + "/" + name);
    file.write("tokens", H5T_NATIVE_UINT8, values.data(), 100);
    file.close();
    const hid_t id = H5Fopen((dir + "/" + name).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    attributes(id);
    H5Fclose(id);
    return hand_written_manifest(dir, name, 100, 0, 256);
  };
  auto attribute = [](hid_t file, const char* name, hid_t type, hsize_t count, const void* data) {
    const hid_t space = count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, nullptr);
    const hid_t attr = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attr, type, data);
    H5Aclose(attr);
    H5Sclose(space);
  };
  const int64_t one = 1, vocab[2] = {256, 256};
  auto strings = [&](hid_t file, bool variable, hsize_t count) {
    const hid_t type = H5Tcopy(H5T_C_S1);
    if (variable) {  // (UTF-8, as h5py writes a str)
      H5Tset_size(type, H5T_VARIABLE);
      H5Tset_cset(type, H5T_CSET_UTF8);
      const char* texts[2] = {"bytes", "train"};
      attribute(file, "tokenizer", type, 0, &texts[0]);
      attribute(file, "split", type, count, &texts[1]);
    } else {
      H5Tset_size(type, 6);
      attribute(file, "tokenizer", type, 0, "bytes");
      attribute(file, "split", type, count, "train\0longer");
    }
    H5Tclose(type);
  };
  const std::string two_vocab = shard("vocab2.h5", [&](hid_t f) {
    attribute(f, "format_version", H5T_NATIVE_INT64, 0, &one);
    attribute(f, "vocab_size", H5T_NATIVE_INT64, 2, vocab);
    strings(f, false, 0);
  });
  expect_error([&] { ShardedWindows(read_manifest(two_vocab), "train", 16, 256, false); },
               {"vocab2.h5", "attribute 'vocab_size' holds 2 values, not one"});
  const std::string two_splits = shard("split2.h5", [&](hid_t f) {
    attribute(f, "format_version", H5T_NATIVE_INT64, 0, &one);
    attribute(f, "vocab_size", H5T_NATIVE_INT64, 0, vocab);
    strings(f, false, 2);
  });
  expect_error([&] { ShardedWindows(read_manifest(two_splits), "train", 16, 256, false); },
               {"split2.h5", "attribute 'split' holds 2 values, not one"});
  const std::string variable = shard("variable.h5", [&](hid_t f) {
    attribute(f, "format_version", H5T_NATIVE_INT64, 0, &one);
    attribute(f, "vocab_size", H5T_NATIVE_INT64, 0, vocab);
    strings(f, true, 0);
  });
  EXPECT_EQ(ShardedWindows(read_manifest(variable), "train", 16, 256, false).num_windows(), 6);
}

// A shard compressed with a filter this HDF5 lacks (h5py's lzf): its reads failed as "truncated
// file or checksum mismatch". (The filter here: a pass-through registered while writing only.)
size_t pass_through(unsigned, size_t, const unsigned[], size_t bytes, size_t*, void**) {
  return bytes;
}

TEST(ShardErrors, AShardCompressedWithAFilterThisHdf5LacksSaysSo) {
  const ScratchDir scratch("filter");
  const std::string& dir = scratch.path();
  const H5Z_filter_t kFilter = 32000;  // (lzf's registered number)
  const H5Z_class2_t filter = {H5Z_CLASS_T_VERS, kFilter, 1,       1,
                               "pass-through",   nullptr, nullptr, pass_through};
  ASSERT_GE(H5Zregister(&filter), 0);
  {
    Hdf5File file = Hdf5File::create(dir + "/lzf.h5");
    set_shard_attributes(file, 256);
    file.close();
    const hid_t id = H5Fopen((dir + "/lzf.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hsize_t count = 100, chunk = 50;
    const hid_t space = H5Screate_simple(1, &count, nullptr);
    const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(create, 1, &chunk);
    H5Pset_filter(create, kFilter, H5Z_FLAG_OPTIONAL, 0, nullptr);  // (as h5py sets lzf)
    const hid_t set =
        H5Dcreate2(id, "tokens", H5T_STD_U8LE, space, H5P_DEFAULT, create, H5P_DEFAULT);
    const std::vector<uint8_t> values(100, 3);
    EXPECT_GE(H5Dwrite(set, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(set);
    H5Pclose(create);
    H5Sclose(space);
    H5Fclose(id);
  }
  ASSERT_GE(H5Zunregister(kFilter), 0);
  const std::string manifest = hand_written_manifest(dir, "lzf.h5", 100, 0, 256);
  expect_error([&] { ShardedWindows(read_manifest(manifest), "train", 16, 256, false); },
               {"lzf.h5': dataset 'tokens' is compressed with HDF5 filter 32000 (pass-through), "
                "which this program's HDF5 lacks"});
}

TEST(ShardErrors, WrongRank) {
  const ScratchDir scratch("rank");
  const std::string& dir = scratch.path();
  const std::string path = dir + "/matrix.h5";
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[2] = {4, 25};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const hid_t set =
      H5Dcreate2(file, "tokens", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const std::vector<uint8_t> values(100, 3);
  ASSERT_GE(H5Dwrite(set, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  H5Dclose(set);
  H5Sclose(space);
  H5Fclose(file);
  const std::string manifest = hand_written_manifest(dir, "matrix.h5", 100, 0, 256);
  expect_error([&] { ShardedWindows(read_manifest(manifest), "train", 16, 256, false); },
               {"matrix.h5", "rank 2"});
  // A group where the dataset belongs (it was taken for a newer HDF5's dataset).
  const hid_t grouped =
      H5Fcreate((dir + "/group.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(H5Gcreate2(grouped, "tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Fclose(grouped);
  const std::string group_listed = hand_written_manifest(dir, "group.h5", 100, 0, 256);
  expect_error([&] { ShardedWindows(read_manifest(group_listed), "train", 16, 256, false); },
               {"group.h5': 'tokens' is not a dataset (a group?)"});
}

TEST(ShardErrors, ChecksumMismatch) {
  const PreparedText p = prepare_text("checksum", 3000, 2);
  flip_token(p.dir + "/out/train-00001.h5", 100);  // (rewritten by HDF5, which drops the seal)
  Manifest m = read_manifest(p.manifest);
  expect_error([&] { ShardedWindows(m, "train", 16, 256, true); },
               {"train-00001.h5", "has no checksum seal"});
  m.sealed_shards = false;  // as another tool's manifest: the tokens' checksum finds it
  expect_error([&] { ShardedWindows(m, "train", 16, 256, true); },
               {"train-00001.h5", "checksum mismatch"});
  EXPECT_NO_THROW(ShardedWindows(m, "train", 16, 256, false));  // only checked when asked
}

// A shard damaged where no seal guards it (unsealed, not verified) fails its read with our one
// line alone, also on another thread (the data loader's): HDF5's own trace is silenced per thread,
// and the loader's thread printed it (about 25 lines) before it was.
TEST(ShardErrors, ADamagedReadOnAnotherThreadPrintsNoHdf5Trace) {
  const PreparedText p = prepare_text("loader_thread", 30000, 1);
  const std::string shard = p.dir + "/out/train-00000.h5";
  const auto size = static_cast<std::streamoff>(fs::file_size(shard));
  fs::resize_file(shard, static_cast<uintmax_t>(size - 32));  // the seal's trailer off
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(size / 2);  // inside the tokens' chunk, which HDF5's Fletcher-32 guards
    f.write("\xA5\x5A\xA5\x5A", 4);
  }
  const ShardedWindows windows(read_manifest(p.manifest), "train", 16, 256, false);
  std::string error;
  testing::internal::CaptureStderr();
  std::thread reader([&] {
    std::vector<int32_t> window(17);
    try {
      for (int64_t i = 0; i < windows.num_windows(); ++i) windows.read(i, window.data());
    } catch (const Error& e) {
      error = e.what();
    }
  });
  reader.join();
  const std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_NE(error.find("train-00000.h5"), std::string::npos) << error;
  EXPECT_EQ(printed, "");
}

// prepare's manifests say their shards are sealed: a shard without its seal (replaced by another
// file, or cut short by exactly its trailer) is refused before HDF5 parses it, where HDF5 1.10
// crashed on some damaged files (fuzz/hdf5-crashes/) with data.verify_checksums on. A manifest of
// another tool, without the key, reads unsealed shards as before.
TEST(ShardErrors, AShardThatLostItsSealIsRefusedBeforeHdf5OpensIt) {
  const PreparedText p = prepare_text("lost_seal", 3000, 2);
  Manifest m = read_manifest(p.manifest);
  EXPECT_TRUE(m.sealed_shards);
  const std::string shard = p.dir + "/out/train-00001.h5";
  fs::resize_file(shard, fs::file_size(shard) - 32);  // the trailer off, the HDF5 file intact
  expect_error([&] { ShardedWindows(m, "train", 16, 256, true); },
               {"shard '", "train-00001.h5' has no checksum seal", "data.verify_checksums: false"});
  EXPECT_NO_THROW(ShardedWindows(m, "train", 16, 256, false));  // asked not to check
  EXPECT_NO_THROW(ShardedWindows(m, "val", 16, 256, true));     // sealed: checked and read
  m.sealed_shards = false;                                      // as a manifest without the key
  EXPECT_NO_THROW(ShardedWindows(m, "train", 16, 256, true));
}

TEST(ShardErrors, TokenCountMismatch) {
  const PreparedText p = prepare_text("count", 3000, 1);
  Manifest m = read_manifest(p.manifest);
  m.val[0].tokens += 1;
  expect_error([&] { ShardedWindows(m, "val", 16, 256, false); },
               {"val-00000.h5", "manifest lists"});
}

TEST(ShardErrors, VocabularyLargerThanModel) {
  const PreparedText p = prepare_text("vocab", 3000, 1);
  expect_error([&] { ShardedWindows(read_manifest(p.manifest), "train", 16, 100, false); },
               {"manifest.yaml", "raise model.vocab_size"});
}

TEST(ShardErrors, TokenAboveModelVocabularyNamesPosition) {
  const ScratchDir scratch("token_range");
  const std::string& dir = scratch.path();
  std::vector<uint8_t> values(100, 7);
  values[37] = 200;  // the shard claims vocab_size 50
  Hdf5File file = Hdf5File::create(dir + "/liar.h5");
  file.write("tokens", H5T_NATIVE_UINT8, values.data(), 100);
  set_shard_attributes(file, 50);
  file.close();
  const uint64_t checksum = fnv1a_bytes(kFnv1aOffsetBasis, values.data(), 100);
  const Manifest m = read_manifest(hand_written_manifest(dir, "liar.h5", 100, checksum, 50));
  const ShardedWindows windows(m, "train", 16, 50, false);
  std::vector<int32_t> window(17);
  EXPECT_NO_THROW(windows.read(0, window.data()));  // tokens 0..16
  expect_error([&] { windows.read(2, window.data()); }, {"liar.h5", "token 200", "position 37"});
  expect_error([&] { ShardedWindows(m, "train", 16, 50, true); }, {"liar.h5", "position 37"});
  // A model with room for it still refuses a token past the shard's own vocabulary.
  const ShardedWindows larger_model(m, "train", 16, 256, false);
  expect_error([&] { larger_model.read(2, window.data()); },
               {"liar.h5", "token 200 at position 37 is >= the vocab_size 50 of its manifest"});
}

TEST(ShardErrors, TooFewTokensForSeqLen) {
  const PreparedText p = prepare_text("short", 3000, 2);
  expect_error([&] { ShardedWindows(read_manifest(p.manifest), "val", 4096, 256, false); },
               {"'val' split has 300 tokens", "needs at least 4097"});
}

TEST(Checksum, TokensHashAsStoredLittleEndianBytes) {
  const std::vector<uint32_t> tokens = {1, 258, 65535};
  const std::vector<uint8_t> bytes = {1, 0, 2, 1, 255, 255};
  EXPECT_EQ(fnv1a_tokens(kFnv1aOffsetBasis, tokens.data(), 3, 2),
            fnv1a_bytes(kFnv1aOffsetBasis, bytes.data(), 6));
  EXPECT_EQ(fnv1a_bytes(kFnv1aOffsetBasis, nullptr, 0), kFnv1aOffsetBasis);
  const uint8_t a = 'a';  // published FNV-1a 64 test vector
  EXPECT_EQ(fnv1a_bytes(kFnv1aOffsetBasis, &a, 1), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(bytes_per_token_for_vocab(256), 1);
  EXPECT_EQ(bytes_per_token_for_vocab(257), 2);
  EXPECT_EQ(bytes_per_token_for_vocab(65537), 4);
}

}  // namespace
}  // namespace rf
