// The launcher of attention over a key/value cache (kernels/ops/cached_attention.h): the new
// positions of cached generation against the keys and values of every position before them, one
// index per (head, new position). It computes what chunked_attention_forward computes for the
// same rows of the whole sequence (dense or local, relative terms, distance limit), in the cost of
// the new positions' windows.
#pragma once

#include "kernels/device_buffer.h"
#include "kernels/ops/cached_attention.h"

namespace rf {

// params.out [queries, ldo] = the attention of the new positions (every field of `params` set).
void cached_attention_forward(Executor& ex, const CachedAttentionParams& params);

}  // namespace rf
