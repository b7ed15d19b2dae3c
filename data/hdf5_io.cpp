#include "data/hdf5_io.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "base/error.h"
#include "data/file_seal.h"

namespace rf {
namespace {

// HDF5 closes whatever is still open when the process exits (a handler it registers with atexit
// when it first starts). A file whose close failed on a full disk stays half-closed in its
// tables, and that handler then crashed the process: `train` exited with SIGSEGV (139) instead of
// 1, or 75 when stopped for a requeue, after any checkpoint that did not fit. Every file this
// program writes is flushed and closed by it, so the handler has nothing to do: it is not
// registered. (Run before main, before any HDF5 call starts the library: H5dont_atexit does
// nothing once it has started. So no static initializer anywhere may call HDF5, H5T_NATIVE_*
// included, which start it; the DiskFull tests would find the crash again.)
[[gnu::constructor]] void register_no_hdf5_exit_handler() {
  H5dont_atexit();
}

// HDF5 prints a stack trace on every failed call by default; errors are reported by us instead.
// Once per thread, by every call into HDF5 here: a thread-safe HDF5 keeps the setting per thread,
// and the data loader's thread, which only reads, printed HDF5's trace over the one-line error
// (a damaged shard read with data.prefetch > 0).
void silence_hdf5_errors() {
  thread_local const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

// Closes an HDF5 object id when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  ~Handle() {
    if (id_ >= 0) closer_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  // Closes now and returns the status (the destructor cannot report one).
  herr_t release_and_close() {
    const hid_t id = id_;
    id_ = -1;
    return id >= 0 ? closer_(id) : 0;
  }

 private:
  hid_t id_;
  herr_t (*closer_)(hid_t);
};

// The operating system's reason for the failure HDF5 has just reported, e.g. "No space left on
// device", or "" when the failure was not a system call's. HDF5 records it only in the text of
// the innermost entry of its error stack ("..., errno = 28, error message = 'No space left on
// device', ..."), and clears that stack at the start of its next API call: ask right away.
std::string failure_reason() {
  int found_errno = 0;
  const auto visit = [](unsigned, const H5E_error2_t* entry, void* data) -> herr_t {
    static constexpr char kKey[] = "errno = ";
    const char* at = entry->desc ? std::strstr(entry->desc, kKey) : nullptr;
    // (No number after the key leaves 0: no system reason.)
    if (at)
      *static_cast<int*>(data) = static_cast<int>(std::strtol(at + sizeof kKey - 1, nullptr, 10));
    return 0;
  };
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, visit, &found_errno) < 0 || found_errno <= 0)
    return "";
  return std::strerror(found_errno);
}

// The reason to append to a message about a failed call: the system's when there is one, else
// the likely causes.
std::string reason_or(const std::string& guess) {
  const std::string reason = failure_reason();
  return reason.empty() ? " (" + guess + ")" : ": " + reason;
}

void check(herr_t status, const std::string& path, const std::string& what) {
  if (status < 0)
    fail("'", path, "': HDF5 could not ", what, reason_or("file damaged or not writable?"));
}

// Closes a dataset that was written to and checks the result: the chunk cache writes the data
// only now (chunks up to the 1 MB cache), so this is where a full disk often shows first.
void close_written_dataset(Handle& set, const std::string& path, const std::string& name) {
  check(set.release_and_close(), path, "write dataset '" + name + "'");
}

// Fails unless the attribute holds one value: one read into a single value's buffer overran it
// (an array attribute written by another tool crashed the program).
void check_one_value(hid_t attr, const std::string& path, const std::string& attribute) {
  Handle space(H5Aget_space(attr), H5Sclose);
  const hssize_t values = space.ok() ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (values != 1)
    fail("'", path, "': attribute '", attribute, "' holds ", values, " values, not one");
}

// Opens dataset `name` or fails saying why: absent, or present but unreadable by this HDF5 (a
// file written by a newer one, h5py's libver='latest': it was reported as absent).
hid_t open_dataset(hid_t file, const std::string& path, const std::string& name) {
  const hid_t set = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (set >= 0) return set;
  H5O_info_t info;
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) {
    // (A group of that name is not a newer file's dataset.)
    if (H5Oget_info_by_name(file, name.c_str(), &info, H5P_DEFAULT) >= 0 &&
        info.type != H5O_TYPE_DATASET)
      fail("'", path, "': '", name, "' is not a dataset (a group?)");
    fail("'", path, "': dataset '", name, "' cannot be opened by this program's HDF5 ",
         hdf5_library_version(), " (written by a newer one? h5py: File(..., libver='v108'))");
  }
  fail("'", path, "' has no dataset '", name, "'");
}

// Fails when the dataset was compressed with a filter this HDF5 lacks (h5py's lzf): its reads
// failed as a "truncated file or checksum mismatch".
void check_filters_available(hid_t set, const std::string& path, const std::string& name) {
  Handle create(H5Dget_create_plist(set), H5Pclose);
  const int filters = create.ok() ? H5Pget_nfilters(create.get()) : 0;
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t values = 0;
    char filter_name[64] = {0};
    const H5Z_filter_t filter =
        H5Pget_filter2(create.get(), static_cast<unsigned>(i), &flags, &values, nullptr,
                       sizeof filter_name, filter_name, &config);
    // (Optional ones too: h5py marks lzf so, and a chunk it filtered cannot be read without it.)
    if (filter >= 0 && H5Zfilter_avail(filter) <= 0)
      fail("'", path, "': dataset '", name, "' is compressed with HDF5 filter ", filter, " (",
           filter_name, "), which this program's HDF5 lacks; write it with gzip or uncompressed");
  }
}

}  // namespace

std::string hdf5_library_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

bool hdf5_is_thread_safe() {
  hbool_t safe = 0;
  return H5is_library_threadsafe(&safe) >= 0 && safe;
}

Hdf5File Hdf5File::create(const std::string& path) {
  silence_hdf5_errors();
  // The file format of HDF5 1.8 (read by every HDF5 since 2008): its dense attribute storage
  // holds attributes past the 64 KiB the original format allows, such as the parameter layout of
  // a model of 256 layers, whose checkpoint could not be written before.
  Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  check(H5Pset_libver_bounds(access.get(), H5F_LIBVER_V18, H5F_LIBVER_V18), path,
        "ask for HDF5 1.8's file format");
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get());
  if (id < 0)
    fail("cannot create HDF5 file '", path, "'", reason_or("directory missing or not writable?"));
  return Hdf5File(id, path);
}

Hdf5File Hdf5File::open_read(const std::string& path, bool check_seal) {
  silence_hdf5_errors();
  if (::access(path.c_str(), R_OK) != 0) fail("'", path, "' is missing or unreadable");
  // (A FIFO listed as a shard blocked the start-up in its open, unstoppable by a first signal.)
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    fail("'", path, "' is not a regular file (a folder, a FIFO or a device)");
  if (check_seal) check_file_seal(path);
  if (H5Fis_hdf5(path.c_str()) <= 0)
    fail("'", path, "' is not an HDF5 file (damaged or truncated?)");
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) fail("'", path, "' cannot be opened as an HDF5 file (truncated or corrupt?)");
  return Hdf5File(id, path);
}

Hdf5File::Hdf5File(Hdf5File&& other) noexcept {
  *this = std::move(other);
}

Hdf5File& Hdf5File::operator=(Hdf5File&& other) noexcept {
  std::swap(id_, other.id_);
  std::swap(path_, other.path_);
  return *this;
}

Hdf5File::~Hdf5File() {
  if (id_ >= 0) H5Fclose(id_);
}

void Hdf5File::close() {
  silence_hdf5_errors();
  if (id_ < 0) return;
  // Closed even when the flush fails, so that no descriptor keeps a removed file's space.
  const herr_t flushed = H5Fflush(id_, H5F_SCOPE_GLOBAL);
  const std::string flush_failure = flushed < 0 ? reason_or("file damaged or not writable?") : "";
  const herr_t closed = H5Fclose(id_);
  id_ = -1;
  if (flushed < 0) fail("'", path_, "': HDF5 could not flush the file", flush_failure);
  check(closed, path_, "close the file");
}

void Hdf5File::write(const std::string& name, hid_t native_type, const void* data, int64_t count) {
  silence_hdf5_errors();
  const hsize_t dims[1] = {static_cast<hsize_t>(count)};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (count > 0) {
    const hsize_t chunk[1] = {std::min<hsize_t>(dims[0], 1 << 20)};
    check(H5Pset_chunk(props.get(), 1, chunk), path_, "set the chunking of '" + name + "'");
    check(H5Pset_fletcher32(props.get()), path_, "enable checksums on '" + name + "'");
  }
  Handle set(H5Dcreate2(id_, name.c_str(), native_type, space.get(), H5P_DEFAULT, props.get(),
                        H5P_DEFAULT),
             H5Dclose);
  if (!set.ok()) fail("'", path_, "': cannot create dataset '", name, "'");
  if (count > 0)
    check(H5Dwrite(set.get(), native_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_,
          "write dataset '" + name + "'");
  close_written_dataset(set, path_, name);
}

bool Hdf5File::has_dataset(const std::string& name) const {
  silence_hdf5_errors();
  return H5Lexists(id_, name.c_str(), H5P_DEFAULT) > 0;
}

int64_t Hdf5File::dataset_length(const std::string& name) const {
  silence_hdf5_errors();
  Handle set(open_dataset(id_, path_, name), H5Dclose);
  Handle space(H5Dget_space(set.get()), H5Sclose);
  hsize_t dims[8] = {0};
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank != 1) fail("'", path_, "': dataset '", name, "' has rank ", rank, ", expected 1");
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  return static_cast<int64_t>(dims[0]);
}

void Hdf5File::dataset_type(const std::string& name, H5T_class_t* type_class, size_t* element_size,
                            int* rank) const {
  silence_hdf5_errors();
  Handle set(open_dataset(id_, path_, name), H5Dclose);
  check_filters_available(set.get(), path_, name);
  Handle type(H5Dget_type(set.get()), H5Tclose);
  Handle space(H5Dget_space(set.get()), H5Sclose);
  *type_class = H5Tget_class(type.get());
  *element_size = H5Tget_size(type.get());
  *rank = H5Sget_simple_extent_ndims(space.get());
}

bool Hdf5File::dataset_is_unsigned(const std::string& name) const {
  silence_hdf5_errors();
  Handle set(open_dataset(id_, path_, name), H5Dclose);
  Handle type(H5Dget_type(set.get()), H5Tclose);
  return H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_NONE;
}

void Hdf5File::create_extendible(const std::string& name, hid_t stored_type,
                                 int64_t chunk_elements) {
  silence_hdf5_errors();
  const hsize_t dims[1] = {0};
  const hsize_t max_dims[1] = {H5S_UNLIMITED};
  Handle space(H5Screate_simple(1, dims, max_dims), H5Sclose);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  const hsize_t chunk[1] = {static_cast<hsize_t>(std::max<int64_t>(1, chunk_elements))};
  check(H5Pset_chunk(props.get(), 1, chunk), path_, "set the chunking of '" + name + "'");
  check(H5Pset_fletcher32(props.get()), path_, "enable checksums on '" + name + "'");
  Handle set(H5Dcreate2(id_, name.c_str(), stored_type, space.get(), H5P_DEFAULT, props.get(),
                        H5P_DEFAULT),
             H5Dclose);
  if (!set.ok()) fail("'", path_, "': cannot create dataset '", name, "'");
}

void Hdf5File::append(const std::string& name, hid_t native_type, const void* data, int64_t count) {
  silence_hdf5_errors();
  if (count <= 0) return;
  Handle set(open_dataset(id_, path_, name), H5Dclose);
  hsize_t old_length[1] = {0};
  {
    Handle space(H5Dget_space(set.get()), H5Sclose);
    H5Sget_simple_extent_dims(space.get(), old_length, nullptr);
  }
  const hsize_t n[1] = {static_cast<hsize_t>(count)};
  const hsize_t new_length[1] = {old_length[0] + n[0]};
  check(H5Dset_extent(set.get(), new_length), path_, "extend dataset '" + name + "'");
  Handle file_space(H5Dget_space(set.get()), H5Sclose);
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, old_length, nullptr, n, nullptr),
        path_, "select the end of '" + name + "'");
  Handle mem_space(H5Screate_simple(1, n, nullptr), H5Sclose);
  check(H5Dwrite(set.get(), native_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data),
        path_, "append to dataset '" + name + "'");
  close_written_dataset(set, path_, name);
}

void Hdf5File::read(const std::string& name, hid_t native_type, int64_t first, int64_t count,
                    void* out) const {
  silence_hdf5_errors();
  Handle set(open_dataset(id_, path_, name), H5Dclose);
  if (count == 0) return;
  Handle file_space(H5Dget_space(set.get()), H5Sclose);
  const hsize_t start[1] = {static_cast<hsize_t>(first)};
  const hsize_t n[1] = {static_cast<hsize_t>(count)};
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr), path_,
        "select elements of '" + name + "'");
  Handle mem_space(H5Screate_simple(1, n, nullptr), H5Sclose);
  if (H5Dread(set.get(), native_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
    fail("'", path_, "': reading elements ", first, "..", first + count, " of dataset '", name,
         "' failed (truncated file or checksum mismatch)");
}

void Hdf5File::set_int(const std::string& attribute, int64_t value) {
  silence_hdf5_errors();
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(
      H5Acreate2(id_, attribute.c_str(), H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!attr.ok()) fail("'", path_, "': cannot create attribute '", attribute, "'");
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), path_, "write attribute " + attribute);
}

void Hdf5File::set_string(const std::string& attribute, const std::string& value) {
  silence_hdf5_errors();
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(type.get(), std::max<size_t>(1, value.size())), path_, "size a string");
  Handle attr(H5Acreate2(id_, attribute.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.ok()) fail("'", path_, "': cannot create attribute '", attribute, "'");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr.get(), type.get(), padded.data()), path_, "write attribute " + attribute);
}

bool Hdf5File::has_attribute(const std::string& attribute) const {
  silence_hdf5_errors();
  return H5Aexists(id_, attribute.c_str()) > 0;
}

int64_t Hdf5File::get_int(const std::string& attribute) const {
  silence_hdf5_errors();
  Handle attr(H5Aopen(id_, attribute.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) fail("'", path_, "' has no attribute '", attribute, "'");
  check_one_value(attr.get(), path_, attribute);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    fail("'", path_, "': attribute '", attribute, "' is not an integer");
  int64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), path_, "read attribute " + attribute);
  return value;
}

std::string Hdf5File::get_string(const std::string& attribute) const {
  silence_hdf5_errors();
  Handle attr(H5Aopen(id_, attribute.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) fail("'", path_, "' has no attribute '", attribute, "'");
  check_one_value(attr.get(), path_, attribute);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING)
    fail("'", path_, "': attribute '", attribute, "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {  // (h5py writes a str so)
    Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    check(H5Tset_size(memory.get(), H5T_VARIABLE), path_, "size a string");
    // (h5py writes a str as UTF-8, and HDF5 converts no string between ASCII and UTF-8.)
    check(H5Tset_cset(memory.get(), H5Tget_cset(type.get())), path_, "set a string's encoding");
    char* text = nullptr;
    check(H5Aread(attr.get(), memory.get(), static_cast<void*>(&text)), path_,
          "read attribute " + attribute);
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::string value(H5Tget_size(type.get()), '\0');
  check(H5Aread(attr.get(), type.get(), value.data()), path_, "read attribute " + attribute);
  while (!value.empty() && value.back() == '\0') value.pop_back();
  return value;
}

}  // namespace rf
