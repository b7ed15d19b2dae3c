// STUB: HDF5 token shards and their manifest (helper A fills this in).
#pragma once
