// A small RAII layer over the HDF5 C API for what the project stores: 1-D datasets (written
// chunked with Fletcher-32 checksums, read whole or by hyperslab) and scalar attributes. Every
// call is checked; a failure throws rf::Error naming the file, the object and the operation.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rf {

// The eight bytes an HDF5 file starts with (its superblock's format signature, where no user
// block comes first, as in every file this program writes): how a shard or checkpoint given where
// text or a manifest is read is recognised.
inline constexpr std::string_view kHdf5Signature{"\x89HDF\r\n\x1a\n", 8};

// Whether this HDF5 library may be called from two threads at once (a loader thread reading shards
// while the main thread writes a checkpoint). Debian's build is; many cluster modules are not.
bool hdf5_is_thread_safe();

// "<major>.<minor>.<release>" of the HDF5 library this process runs (for --version).
std::string hdf5_library_version();

class Hdf5File {
 public:
  static Hdf5File create(const std::string& path);  // truncates
  // Fails clearly if unreadable. With check_seal, a file sealed with its checksum
  // (data/file_seal.h) is checked before HDF5 reads any of it.
  static Hdf5File open_read(const std::string& path, bool check_seal = true);
  Hdf5File(Hdf5File&& other) noexcept;
  Hdf5File& operator=(Hdf5File&& other) noexcept;
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;
  ~Hdf5File();

  const std::string& path() const { return path_; }

  // 1-D dataset of `count` elements of the given native type (H5T_NATIVE_FLOAT, ..._UINT8, ...).
  void write(const std::string& name, hid_t native_type, const void* data, int64_t count);
  bool has_dataset(const std::string& name) const;
  int64_t dataset_length(const std::string& name) const;
  // Storage class and size of a dataset's elements, e.g. (H5T_INTEGER, 2), and its rank.
  void dataset_type(const std::string& name, H5T_class_t* type_class, size_t* element_size,
                    int* rank) const;
  // Whether a dataset holds unsigned integers (false for signed integers and for non-integers).
  bool dataset_is_unsigned(const std::string& name) const;
  // Streaming writes: an empty 1-D dataset of `stored_type` (e.g. H5T_STD_U16LE) with unlimited
  // length, chunked by `chunk_elements` and Fletcher-32 checksummed, that grows with append().
  void create_extendible(const std::string& name, hid_t stored_type, int64_t chunk_elements);
  // Appends data[0 .. count), given as `native_type`, at the end of an extendible dataset.
  void append(const std::string& name, hid_t native_type, const void* data, int64_t count);
  // Reads elements [first, first + count) as the native type (a hyperslab, never the whole set).
  void read(const std::string& name, hid_t native_type, int64_t first, int64_t count,
            void* out) const;

  void set_int(const std::string& attribute, int64_t value);
  void set_string(const std::string& attribute, const std::string& value);
  bool has_attribute(const std::string& attribute) const;
  int64_t get_int(const std::string& attribute) const;
  std::string get_string(const std::string& attribute) const;

  // Flushes and closes; errors here mean the data may not be on disk.
  void close();

 private:
  Hdf5File(hid_t id, std::string path) : id_(id), path_(std::move(path)) {}
  hid_t id_ = -1;
  std::string path_;
};

}  // namespace rf
