// Room for the files a reader keeps open: the shards of a manifest stay open for the whole run (one
// descriptor each), and a manifest of more shards than `ulimit -n` allows failed at the first
// shard past the limit as if that shard were damaged ("not an HDF5 file").
#pragma once

#include <cstdint>
#include <string>

namespace rf {

// Makes room for `count` more open files in this process: raises the soft limit on open files up
// to the hard limit where needed (as Go's runtime does at start), and fails with one line naming
// `what` when even the hard limit is too low.
void reserve_open_files(int64_t count, const std::string& what);

}  // namespace rf
