// A whole-file checksum sealed onto the end of a file this program wrote (checkpoints, shards):
// a 32-byte trailer holding the length of what precedes it, its CRC-32C and a magic string. HDF5
// ignores bytes past the end-of-file address its superblock records, so a sealed HDF5 file opens
// as before; readers check the seal first, so a file damaged anywhere (metadata included) is
// refused with a clear error before HDF5 parses it: HDF5 1.10 can crash on damaged metadata
// (fuzz/hdf5-crashes/), which no check after the call can catch.
#pragma once

#include <string>

namespace rf {

// Appends the seal to `path` (written, closed); the caller syncs it to disk.
void seal_file(const std::string& path);

// Whether `path` ends with a seal; when it does, checks the seal and fails with one line naming
// the file when its contents do not match it (damaged or changed since written). Files without a
// seal (written by older versions, or by other tools) return false and are not checked.
bool check_file_seal(const std::string& path);

}  // namespace rf
