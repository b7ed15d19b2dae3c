// The operands of a query tile in the CPU's tiled attention backward
// (kernels/cpu/chunk_attention_tiles.cpp), gathered into a thread's scratch: its fp32 rows and
// transposes, or its bf16 AMX layouts packed from the inputs' rows, with its positions and
// softmax statistics. Only that file includes it (see attention_tile_gather.h).
#pragma once

#include <cstdint>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/attention_tile_gather.h"

namespace rf::cpu::tile_gather {

// Per-thread scratch, grown once and reused.
struct Scratch {
  std::vector<float> buffer;
  int64_t used = 0;
  float* take(int64_t n) {
    float* p = buffer.data() + used;
    used += n;
    RF_CHECK(used <= static_cast<int64_t>(buffer.size()), "attention tile scratch overflow");
    return p;
  }
  uint16_t* take_bf16(int64_t n) { return reinterpret_cast<uint16_t*>(take((n + 1) / 2)); }
  void reset(int64_t n) {
    if (static_cast<int64_t>(buffer.size()) < n) buffer.assign(static_cast<size_t>(n), 0.0f);
    used = 0;
  }
};

// Per-query statistics of a tile of slots, for the backward; padding gets zeros.
struct QueryStats {
  float m[kTile], log_sum[kTile], delta[kTile], dlse[kTile];
  void gather(const ChunkAttentionParams& p, int64_t s, const SlotTile& tile, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      if (i < tile.count) {
        const int64_t slot = s * p.layout.n_slots + tile.first + i;
        m[i] = p.row_max[slot];
        log_sum[i] = p.row_log_sum[slot];
        delta[i] = p.delta[slot];
        dlse[i] = p.dlse[slot];
      } else {
        m[i] = log_sum[i] = delta[i] = dlse[i] = 0.0f;
      }
    }
  }
};

// The operands of one query tile in the backward.
struct QueryTile {
  // Its buffers, from the thread's scratch; q and dout only when `rows` (the key gradients).
  QueryTile(Scratch& scratch, int64_t dp, bool rows)
      : qt(scratch.take(dp * kTile)),
        doutt(scratch.take(dp * kTile)),
        q(rows ? scratch.take(kTile * dp) : nullptr),
        dout(rows ? scratch.take(kTile * dp) : nullptr) {}
  SlotTile tile;
  int64_t nqp = 0;
  float *qt, *doutt, *q, *dout;  // [dp, nqp], [dp, nqp], [nq, dp], [nq, dp]
  int32_t qpos[kTile];
  QueryStats stats;
  // The tile's positions and statistics, and its fp32 operands unless `operands` is false (bf16
  // products pack theirs from the inputs, Bf16QueryOperands).
  void gather(const ChunkAttentionParams& p, int64_t s, const SlotTile& t, bool rows,
              bool operands = true) {
    const TileGather g(p, s);
    tile = t;
    nqp = padded(t.count);
    if (operands) {
      g.query_columns(t, qt, nqp);
      g.query_columns(t, doutt, nqp, p.o);
    }
    if (operands && rows) {
      g.query_rows(t, q);
      g.query_rows(t, dout, p.o);
    }
    g.positions(t, qpos, nqp);
    stats.gather(p, s, t, nqp);
  }
};

// The bf16 operands of a query tile for AMX products (kernels/cpu/amx_tiles.h): B operands Q^T
// and dO^T [d, nqp] (scores, dP), Q and dO [nq, dp] (key and value gradients), and per key tile
// dS^T [nk, nqp] as a B operand (query gradients) and dS^T, P^T [nk, nq] as A operands; the
// rows layouts of Q and dO they are made from.
struct Bf16QueryOperands {
  uint16_t *q_rows, *dout_rows;
  uint16_t *q_pairs, *dout_pairs, *q_row_pairs, *dout_row_pairs, *ds_pairs, *ds_rows, *p_rows;
  // Values (bf16) the buffers take.
  static int64_t values(int64_t d, int64_t dp) {
    return 4 * kTile * amx::padded_depth(d) + 2 * amx::padded_depth(kTile) * dp +
           3 * kTile * amx::padded_depth(kTile);
  }
  Bf16QueryOperands(Scratch& scratch, int64_t d, int64_t dp) {
    const int64_t depth = amx::padded_depth(d), query_depth = amx::padded_depth(kTile);
    q_rows = scratch.take_bf16(kTile * depth);
    dout_rows = scratch.take_bf16(kTile * depth);
    q_pairs = scratch.take_bf16(depth * kTile);
    dout_pairs = scratch.take_bf16(depth * kTile);
    q_row_pairs = scratch.take_bf16(query_depth * dp);
    dout_row_pairs = scratch.take_bf16(query_depth * dp);
    ds_pairs = scratch.take_bf16(query_depth * kTile);
    ds_rows = scratch.take_bf16(kTile * query_depth);
    p_rows = scratch.take_bf16(kTile * query_depth);
  }
  // Packed from the inputs' rows of the tile's queries and output gradients, each read once.
  // (Copying the tile in fp32 first, as rows and transposed, then packing those copies took 18%
  // of the bf16 gradient items' time at 4K tokens on one thread; this takes 12%. 2026-12-05)
  void pack(const ChunkAttentionParams& p, int64_t s, const SlotTile& tile) {
    const TileGather g(p, s);
    const int64_t nq = tile.count, nqp = padded(nq), dp = g.dp();
    const int64_t depth = amx::padded_depth(p.d);
    g.query_rows_bf16(tile, q_rows);
    g.query_rows_bf16(tile, dout_rows, p.o);
    amx::pairs_transposed_of_rows(q_rows, depth, nqp, q_pairs);
    amx::pairs_transposed_of_rows(dout_rows, depth, nqp, dout_pairs);
    amx::pairs_of_rows(q_rows, depth, nq, dp, q_row_pairs);
    amx::pairs_of_rows(dout_rows, depth, nq, dp, dout_row_pairs);
  }
};

}  // namespace rf::cpu::tile_gather
