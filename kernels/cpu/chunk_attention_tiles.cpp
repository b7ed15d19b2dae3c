#include "kernels/cpu/chunk_attention_tiles.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "base/error.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/attention_query_tiles.h"
#include "kernels/cpu/attention_score_terms.h"
#include "kernels/cpu/attention_tile_gather.h"
#include "kernels/cpu/small_gemm.h"
#include "kernels/cpu/streaming_store.h"

namespace rf::cpu {
namespace {

using namespace tile_gather;

// visit(tile) for each key tile of chunk c's window, in window order: the previous chunk's,
// then its own.
template <class Visit>
void for_each_window_tile(const ChunkLayout& L, int64_t c, const Visit& visit) {
  for (int64_t part = 0; part <= L.lookback; ++part) {
    const int64_t chunk = part < L.lookback ? (c + L.n_chunks() - 1) % L.n_chunks() : c;
    for (int64_t k = 0; k < L.chunk; k += kTile)
      visit(SlotTile{chunk * L.chunk + k, std::min(kTile, L.chunk - k), part * L.chunk + k});
  }
}

// The part of a tile of query slots that has queries: none before memory_len (the memory's
// positions are keys only; a memory comes with the original order, where slot = position).
// Count 0: none.
SlotTile query_part(const ChunkAttentionParams& p, SlotTile tile) {
  const int64_t skip = std::clamp<int64_t>(p.memory_len - tile.first, 0, tile.count);
  tile.first += skip;
  tile.count -= skip;
  return tile;
}

// visit(tile) for each query tile of chunk c (its slots with queries).
template <class Visit>
void for_each_chunk_tile(const ChunkAttentionParams& p, int64_t c, const Visit& visit) {
  const ChunkLayout& L = p.layout;
  for (int64_t q = 0; q < L.chunk; q += kTile) {
    const SlotTile tile = query_part(p, {c * L.chunk + q, std::min(kTile, L.chunk - q), 0});
    if (tile.count > 0) visit(tile);
  }
}

// Entirely masked by causality (original order only: slot order is position order there).
bool all_later(const ChunkAttentionParams& p, const SlotTile& keys, const SlotTile& queries) {
  return p.perm == nullptr && keys.first > queries.first + queries.count - 1;
}

// Every pass gets a new number; a thread's key cache is valid within one pass only.
std::atomic<uint64_t> g_pass_number{0};

struct ThreadState {
  Scratch scratch;
  KeyTileCache keys;
  uint64_t pass = 0;                 // the pass the cache was filled in
  std::vector<uint8_t> key_started;  // gradients_item: which window tiles hold a sum yet
  // gradients_item's window sums dk, dv [W, dp], two of each: an item that keeps its own chunk's
  // sums for the next one (KeyGradCarry) leaves them where it made them, and the next item reads
  // them there while it writes the other pair.
  std::vector<float> window_dk[2], window_dv[2];
  int window = 0;  // the pair the next item writes
};

// How a gradient item with look-back passes its own chunk's key and value gradients to the next
// item on its thread, whose look-back chunk it is: `in`, this item's look-back chunk's sums from
// the item before it (added here, and the chunk's rows, then complete, are stored once), and
// `out`, this item's own chunk's sums kept for the next item instead of stored. Without them the
// first of a chunk's two contributions went to memory with streaming stores and the second read
// it back to add to it: the adds' loads were 40% of gradients_item's own time in the 4K bf16
// attention_bench (perf). With the carry the gradient pass took 46.1-47.5 ms per 4K bf16 step
// instead of 49.7-50.2 and 855-877 ms per 64K bf16 step instead of 898-941; at 4K fp32 it is
// within noise (step_bench --profile-ops, alternated, 2026-12-05). Same bits.
struct KeyGradCarry {
  bool in = false, out = false;
};

ThreadState& thread_state(uint64_t pass) {
  static thread_local ThreadState state;
  if (state.pass != pass) {
    state.keys.clear();
    state.pass = pass;
  }
  return state;
}

// The dropout multipliers of a query tile's nq queries (from slot first_query) against nk keys from
// window index col, transposed as the scores are: keep_t[kk * nqp + i], 1 for the padding queries.
// Drawn a query at a time, so that each Philox block (four consecutive keys) is drawn once rather
// than once per key.
void tile_dropout_scales(const DropoutMask& drop, int64_t first_query, int64_t nq, int64_t nqp,
                         int64_t col, int64_t nk, float* keep_t) {
  for (int64_t i = 0; i < nqp; ++i) {
    if (i < nq)
      drop.for_each_scale(first_query + i, col, col + nk,
                          [&](int64_t c, float scale) { keep_t[(c - col) * nqp + i] = scale; });
    else
      for (int64_t kk = 0; kk < nk; ++kk) keep_t[kk * nqp + i] = 1.0f;
  }
}

// Scores are kept transposed, st [keys, queries]: the softmax statistics are vectors across the
// queries of a tile (no horizontal reductions), and the queries are transposed once per tile.

// The scores st [nk, nqp] of a key tile against a query tile become the (dropped) unnormalised
// probabilities exp(score - m), with the running maximum m and sum l of each query updated and
// correction[i] = exp(old m - new m), the factor its earlier output must be scaled by.
// (Inlined, and its arrays declared unaliased, so its loops vectorise as they did in place.)
inline __attribute__((always_inline)) void softmax_tile(
    const ChunkAttentionParams& p, int64_t s, const DropoutMask& drop, const SlotTile& q_tile,
    const SlotTile& k_tile, const KeyTileCache::Entry& kv, const int32_t* __restrict qpos,
    int64_t nqp, float* __restrict st, float* __restrict m, float* __restrict l,
    float* __restrict correction) {
  const int64_t nk = k_tile.count, nq = q_tile.count;
  float tile_max[kTile];
  std::fill(tile_max, tile_max + nqp, kNoMaxYet);
  // (relative positions, a distance mask: off the plain path)
  std::optional<ScoreTerms> terms;
  if (p.has_score_terms()) terms.emplace(p, p.relative_base(s), qpos, nqp, kv.kpos, nk);
  for (int64_t kk = 0; kk < nk; ++kk) {
    float* row = st + kk * nqp;
    if (terms) {
      terms->add_offsets(p, qpos, kv.kpos[kk], row, nqp);
      for (int64_t i = 0; i < nqp; ++i) tile_max[i] = fmax_hd(tile_max[i], row[i]);
    } else {
      for (int64_t i = 0; i < nqp; ++i) {
        row[i] -= mask_penalty(qpos[i], kv.kpos[kk], p.self_mask);
        tile_max[i] = fmax_hd(tile_max[i], row[i]);
      }
    }
  }
  for (int64_t i = 0; i < nqp; ++i) {
    const float m_new = fmax_hd(m[i], tile_max[i]);
    correction[i] = exp_up_to_88(m[i] - m_new);
    m[i] = m_new;
    l[i] *= correction[i];
  }
  float keep_t[kTile * kTile];
  if (drop.active())
    tile_dropout_scales(drop, q_tile.first, nq, nqp, k_tile.window_offset, nk, keep_t);
  for (int64_t kk = 0; kk < nk; ++kk) {
    float* row = st + kk * nqp;
    for (int64_t i = 0; i < nqp; ++i) {
      row[i] = exp_up_to_88(row[i] - m[i]);
      l[i] += row[i];
    }
    if (drop.active())
      for (int64_t i = 0; i < nq; ++i) row[i] *= keep_t[kk * nqp + i];
  }
}

// Writes a query tile's outputs (acc [nq, dp], unnormalised; streaming stores, streaming_store.h)
// and statistics.
void store_outputs(const ChunkAttentionParams& p, int64_t s, const SlotTile& q_tile,
                   const float* acc, const float* m, const float* l) {
  const int64_t dp = padded(p.d);
  for (int64_t i = 0; i < q_tile.count; ++i) {
    const int64_t slot = s * p.layout.n_slots + q_tile.first + i;
    const float inv = 1.0f / l[i];
    float* o = p.o + slot * p.d;
    stream_scaled_row(acc + i * dp, inv, p.d, o);
    p.row_max[slot] = m[i];
    p.row_log_sum[slot] = logf(l[i]);
  }
}

// The forward of one query tile over its window. With bf16 products (AMX) the output accumulates
// transposed, acc [dp, nqp] += V^T P^T, so that both products take their B operand from rows the
// tile already has (Q^T and P^T) and the per-query rescaling runs along rows; with fp32 products
// acc is [nq, dp] += P V.
void forward_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& slots,
                  ThreadState& state, bool bf16) {
  const SlotTile q_tile = query_part(p, slots);
  if (q_tile.count == 0) return;
  const ChunkLayout& L = p.layout;
  const TileGather gather(p, s);
  const int64_t dp = gather.dp(), nq = q_tile.count, nqp = padded(nq);
  Scratch& scratch = state.scratch;
  float* qt = scratch.take(dp * kTile);
  float* st = scratch.take(kTile * kTile);
  float* acc = scratch.take(kTile * dp);
  float m[kTile], l[kTile], correction[kTile];
  int32_t qpos[kTile];
  gather.positions(q_tile, qpos, nqp);
  uint16_t *q_pairs = nullptr, *p_pairs = nullptr;
  if (bf16) {
    amx::load_tile_config();  // (once per item: nothing in it uses AMX otherwise)
    const int64_t depth = amx::padded_depth(p.d);
    q_pairs = scratch.take_bf16(depth * kTile);
    p_pairs = scratch.take_bf16(amx::padded_depth(kTile) * kTile);
    uint16_t* q_rows16 = scratch.take_bf16(kTile * depth);
    gather.query_rows_bf16(q_tile, q_rows16);
    amx::pairs_transposed_of_rows(q_rows16, depth, nqp, q_pairs);
  } else {
    gather.query_columns(q_tile, qt, nqp);
  }
  std::fill(acc, acc + dp * nqp, 0.0f);
  std::fill(m, m + nqp, kNoMaxYet);
  std::fill(l, l + nqp, 0.0f);
  const DropoutMask drop = p.segment_dropout(s);
  for_each_window_tile(L, q_tile.first / L.chunk, [&](const SlotTile& k_tile) {
    if (all_later(p, k_tile, q_tile)) return;
    const KeyTileCache::Entry& kv =
        state.keys.get(p, s, k_tile, bf16 ? kForwardLayouts : Bf16Layouts{});
    const int64_t nk = k_tile.count;
    if (bf16)
      amx::multiply(padded(nk), nqp, amx::padded_depth(p.d), kv.k16.data(), q_pairs, st, nqp,
                    false);
    else
      small_gemm(nk, nqp, dp, kv.k.data(), dp, qt, nqp, st, nqp, false);
    softmax_tile(p, s, drop, q_tile, k_tile, kv, qpos, nqp, st, m, l, correction);
    if (bf16) {
      for (int64_t x = 0; x < dp; ++x)
        for (int64_t i = 0; i < nqp; ++i) acc[x * nqp + i] *= correction[i];
      amx::pack_pairs(st, nqp, nk, nqp, p_pairs);
      amx::multiply(dp, nqp, amx::padded_depth(nk), kv.vt16.data(), p_pairs, acc, nqp, true);
    } else {
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t x = 0; x < dp; ++x) acc[i * dp + x] *= correction[i];
      small_gemm_at(nq, dp, nk, st, nqp, kv.v.data(), dp, acc, dp, true);
    }
  });
  if (bf16) {
    amx::transpose_words(acc, nqp, dp, nqp, qt, dp);  // (qt is free again)
    acc = qt;
  }
  store_outputs(p, s, q_tile, acc, m, l);
  finish_streamed_rows();
}

// dS^T [nk, nqp] of a key tile against a query tile, in st (which holds the scores); and the
// dropped probabilities (what dV is weighted by) in dpt (which holds dP^T). The pass that owns the
// queries' gradients (`queries_owner`) also adds dS to the relative scores' gradients.
void score_gradients(const ChunkAttentionParams& p, int64_t s, const DropoutMask& drop,
                     const QueryTile& qt, const KeyTileCache::Entry& kv, int64_t key_offset,
                     float* st, float* dpt, bool queries_owner) {
  const int64_t nk = kv.count, nqp = qt.nqp, nq = qt.tile.count;
  std::optional<ScoreTerms> terms;  // (relative positions, a distance mask: off the plain path)
  if (p.has_score_terms()) terms.emplace(p, p.relative_base(s), qt.qpos, nqp, kv.kpos, nk);
  float ones[kTile], keep_t[kTile * kTile];
  std::fill(ones, ones + nqp, 1.0f);
  if (drop.active()) tile_dropout_scales(drop, qt.tile.first, nq, nqp, key_offset, nk, keep_t);
  for (int64_t kk = 0; kk < nk; ++kk) {
    float* row = st + kk * nqp;
    float* dp_row = dpt + kk * nqp;
    const float* keep = drop.active() ? keep_t + kk * nqp : ones;
    const int32_t kp = kv.kpos[kk];
    if (terms) {
      terms->add_offsets(p, qt.qpos, kp, row, nqp);
      for (int64_t i = 0; i < nqp; ++i) {
        const float prob = exp_up_to_88((row[i] - qt.stats.m[i]) - qt.stats.log_sum[i]);
        row[i] = prob * (dp_row[i] * keep[i] - qt.stats.delta[i] + qt.stats.dlse[i]);
        dp_row[i] = prob * keep[i];
      }
    } else {
      for (int64_t i = 0; i < nqp; ++i) {  // (padding queries have keep 1 and zero gradients)
        const float x = row[i] - mask_penalty(qt.qpos[i], kp, p.self_mask);
        const float prob = exp_up_to_88((x - qt.stats.m[i]) - qt.stats.log_sum[i]);
        row[i] = prob * (dp_row[i] * keep[i] - qt.stats.delta[i] + qt.stats.dlse[i]);
        dp_row[i] = prob * keep[i];
      }
    }
    if (terms && queries_owner && p.rel_grads) terms->add_relative_grads(p, qt.qpos, kp, row, nq);
  }
}

// The scores and the value-product gradients of a key tile against a query tile (st = K Q^T,
// dpt = V dO^T, both [nk, nqp]), then their gradients as score_gradients leaves them.
void tile_score_gradients(const ChunkAttentionParams& p, int64_t s, const DropoutMask& drop,
                          const QueryTile& qt, const KeyTileCache::Entry& kv, int64_t key_offset,
                          float* st, float* dpt, bool queries_owner) {
  const int64_t nk = kv.count, nqp = qt.nqp, dp = kv.dp;
  small_gemm(nk, nqp, dp, kv.k.data(), dp, qt.qt, nqp, st, nqp, false);
  small_gemm(nk, nqp, dp, kv.v.data(), dp, qt.doutt, nqp, dpt, nqp, false);
  score_gradients(p, s, drop, qt, kv, key_offset, st, dpt, queries_owner);
}

// Writes the finished query gradients of a tile (dq [count, dp]) to their slots, with streaming
// stores (nothing in the pass reads them; streaming_store.h).
void store_query_grads(const ChunkAttentionParams& p, int64_t s, const SlotTile& q_tile,
                       const float* dq, int64_t dp) {
  for (int64_t i = 0; i < q_tile.count; ++i) {
    float* out = p.dq + (s * p.layout.n_slots + q_tile.first + i) * p.d;
    stream_row(dq + i * dp, p.d, out);
  }
}

// Adds a window's key and value gradients (dk, dv [W, dp], window order) to its slots, the
// look-back chunk's first; a part whose chunk no earlier phase has written (first_lookback,
// first_own) is stored instead (streaming stores, streaming_store.h), so the pass needs no zero
// fill of dk and dv.
// With a carry (KeyGradCarry, look-back windows only): the look-back chunk's rows add the sums
// the thread's previous item kept (carried_dk, carried_dv, its own chunk's [chunk, dp]; null for
// none) and are stored complete; with keep_own the own chunk's rows stay in dk and dv for the next
// item.
void add_window_grads(const ChunkAttentionParams& p, int64_t s, int64_t c, float* dk, float* dv,
                      bool first_lookback, bool first_own, const float* carried_dk,
                      const float* carried_dv, bool keep_own) {
  const ChunkLayout& L = p.layout;
  const int64_t dp = padded(p.d), lookback_rows = L.lookback * L.chunk;
  const bool carried = carried_dk != nullptr;
  if (carried)
    for (int64_t e = 0; e < lookback_rows * dp; ++e) {
      dk[e] += carried_dk[e];
      dv[e] += carried_dv[e];
    }
  const int64_t rows = keep_own ? lookback_rows : L.window();
  for (int64_t w = 0; w < rows; ++w) {
    const int64_t slot = s * L.n_slots + L.window_slot(c, w);
    float* k_out = p.dk + slot * p.d;
    float* v_out = p.dv + slot * p.d;
    if (w < lookback_rows ? first_lookback || carried : first_own) {
      stream_row(dk + w * dp, p.d, k_out);
      stream_row(dv + w * dp, p.d, v_out);
      continue;
    }
    for (int64_t x = 0; x < p.d; ++x) {
      k_out[x] += dk[w * dp + x];
      v_out[x] += dv[w * dp + x];
    }
  }
}

// Adds rows [0, rows) of c [*, dp] to out [*, dp], or (accumulate false) copies them there.
void add_rows(const float* c, int64_t rows, int64_t dp, float* out, bool accumulate) {
  if (!accumulate) {
    std::copy(c, c + rows * dp, out);
    return;
  }
  for (int64_t e = 0; e < rows * dp; ++e) out[e] += c[e];
}

// One key tile's share of gradients_item with bf16 products: dqt [dp, nqp] += K^T dS^T (the query
// gradients accumulate transposed), dk_tile += dS^T Q and dv_tile += P^T dO, straight into the
// window's rows when the key tile is a whole number of 16-row tiles, else through c_tile. Sums
// that have not started (dq_started, key_started false) are written instead of added to, so
// their buffers need no zero fill (an addition to zero gives the same bits).
void key_tile_gradients_bf16(const ChunkAttentionParams& p, int64_t s, const DropoutMask& drop,
                             const QueryTile& qt, const Bf16QueryOperands& ops,
                             const KeyTileCache::Entry& kv, int64_t key_offset, float* st,
                             float* dpt, float* dqt, bool dq_started, float* c_tile, float* dk_tile,
                             float* dv_tile, bool key_started) {
  const int64_t dp = padded(p.d), depth = amx::padded_depth(p.d), nqp = qt.nqp;
  const int64_t nq = qt.tile.count, nq_depth = amx::padded_depth(nq);
  const int64_t nk = kv.count, nkp = padded(nk);
  amx::multiply(nkp, nqp, depth, kv.k16.data(), ops.q_pairs, st, nqp, false);
  amx::multiply(nkp, nqp, depth, kv.v16.data(), ops.dout_pairs, dpt, nqp, false);
  score_gradients(p, s, drop, qt, kv, key_offset, st, dpt, true);
  amx::pack_pairs(st, nqp, nk, nqp, ops.ds_pairs);
  amx::multiply(dp, nqp, amx::padded_depth(nk), kv.kt16.data(), ops.ds_pairs, dqt, nqp, dq_started);
  amx::pack_rows(st, nqp, nk, nkp, nq, ops.ds_rows);
  amx::pack_rows(dpt, nqp, nk, nkp, nq, ops.p_rows);
  if (nkp == nk) {
    amx::multiply(nkp, dp, nq_depth, ops.ds_rows, ops.q_row_pairs, dk_tile, dp, key_started);
    amx::multiply(nkp, dp, nq_depth, ops.p_rows, ops.dout_row_pairs, dv_tile, dp, key_started);
  } else {  // (the padding rows must not reach the next tile's)
    amx::multiply(nkp, dp, nq_depth, ops.ds_rows, ops.q_row_pairs, c_tile, dp, false);
    add_rows(c_tile, nk, dp, dk_tile, key_started);
    amx::multiply(nkp, dp, nq_depth, ops.p_rows, ops.dout_row_pairs, c_tile, dp, false);
    add_rows(c_tile, nk, dp, dv_tile, key_started);
  }
}

// Gradients of the slots of chunk c's window, from the queries of chunk c: dQ of chunk c
// (complete, written) and the contributions to dK and dV of the window's keys (added to p.dk,
// p.dv). With look-back a window holds two chunks (gradients_by_phase); without, its own chunk
// (gradients_by_chunk).
void gradients_item(const ChunkAttentionParams& p, int64_t s, int64_t c, ThreadState& state,
                    bool bf16, bool first_lookback, bool first_own, KeyGradCarry carry = {}) {
  const ChunkLayout& L = p.layout;
  const int64_t dp = padded(p.d), W = L.window();
  Scratch& scratch = state.scratch;
  QueryTile qt(scratch, dp, true);
  float* st = scratch.take(kTile * kTile);
  float* dpt = scratch.take(kTile * kTile);
  float* dq = scratch.take(kTile * dp);  // [nq, dp], or with bf16 products [dp, nqp]
  float* c_tile = scratch.take(kTile * dp);
  // The window's sums (window order), in the pair of buffers the previous item did not keep.
  const int mine = state.window, kept = 1 - mine;
  for (std::vector<float>* sums : {&state.window_dk[mine], &state.window_dv[mine]})
    if (static_cast<int64_t>(sums->size()) < W * dp) sums->resize(static_cast<size_t>(W * dp));
  float* dk = state.window_dk[mine].data();
  float* dv = state.window_dv[mine].data();
  std::optional<Bf16QueryOperands> ops;
  if (bf16) {
    amx::load_tile_config();  // (once per item: nothing in it uses AMX otherwise)
    ops.emplace(scratch, p.d, dp);
  }
  // The sums of dQ (per query tile) and of each window tile's dK and dV start with their first
  // product, which writes instead of adding: no zero fill of their buffers (without the fills
  // the LSH gradient pass took 4% less time at 4K tokens at fp32, 7% at bf16; 2026-12-04).
  const int64_t tiles_per_chunk = (L.chunk + kTile - 1) / kTile;
  auto window_tile = [&](int64_t window_offset) {  // a window tile's index: (part, tile)
    return static_cast<size_t>(window_offset / L.chunk * tiles_per_chunk +
                               window_offset % L.chunk / kTile);
  };
  std::vector<uint8_t>& key_started = state.key_started;
  key_started.assign(static_cast<size_t>((L.lookback + 1) * tiles_per_chunk), 0);
  const DropoutMask drop = p.segment_dropout(s);
  for_each_chunk_tile(p, c, [&](const SlotTile& q_tile) {
    qt.gather(p, s, q_tile, true, !ops);
    const int64_t nq = q_tile.count, nqp = qt.nqp;
    if (ops) ops->pack(p, s, q_tile);
    bool dq_started = false;
    for_each_window_tile(L, c, [&](const SlotTile& k_tile) {
      if (all_later(p, k_tile, q_tile)) return;
      const KeyTileCache::Entry& kv =
          state.keys.get(p, s, k_tile, bf16 ? kGradientLayouts : Bf16Layouts{});
      float* dk_tile = dk + k_tile.window_offset * dp;
      float* dv_tile = dv + k_tile.window_offset * dp;
      uint8_t& started = key_started[window_tile(k_tile.window_offset)];
      if (ops) {
        key_tile_gradients_bf16(p, s, drop, qt, *ops, kv, k_tile.window_offset, st, dpt, dq,
                                dq_started, c_tile, dk_tile, dv_tile, started != 0);
      } else {
        const int64_t nk = k_tile.count;
        tile_score_gradients(p, s, drop, qt, kv, k_tile.window_offset, st, dpt, true);
        small_gemm_at(nq, dp, nk, st, nqp, kv.k.data(), dp, dq, dp, dq_started);
        small_gemm(nk, dp, nq, st, nqp, qt.q, dp, dk_tile, dp, started != 0);
        small_gemm(nk, dp, nq, dpt, nqp, qt.dout, dp, dv_tile, dp, started != 0);
      }
      dq_started = true;
      started = 1;
    });
    if (!dq_started) std::fill(dq, dq + dp * nqp, 0.0f);  // (every key later: zero)
    if (ops) {
      amx::transpose_words(dq, nqp, dp, nqp, c_tile, dp);
      store_query_grads(p, s, q_tile, c_tile, dp);
    } else {
      store_query_grads(p, s, q_tile, dq, dp);
    }
  });
  for_each_window_tile(L, c, [&](const SlotTile& k_tile) {  // (tiles no query saw: zero)
    if (key_started[window_tile(k_tile.window_offset)]) return;
    const int64_t first = k_tile.window_offset, rows = k_tile.count;
    std::fill(dk + first * dp, dk + (first + rows) * dp, 0.0f);
    std::fill(dv + first * dp, dv + (first + rows) * dp, 0.0f);
  });
  const int64_t own_part = L.lookback * L.chunk * dp;  // the previous item's own chunk's sums
  add_window_grads(p, s, c, dk, dv, first_lookback, first_own,
                   carry.in ? state.window_dk[kept].data() + own_part : nullptr,
                   carry.in ? state.window_dv[kept].data() + own_part : nullptr, carry.out);
  if (carry.out) state.window = kept;  // (the next item writes the other pair)
  finish_streamed_rows();
}

// Without look-back (dense attention, one chunk) a key's gradient comes from every query tile of
// its chunk; with too few chunks to go round the threads, queries and keys are separate work
// items.
void query_grads_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& slots,
                      ThreadState& state) {
  const SlotTile q_tile = query_part(p, slots);
  if (q_tile.count == 0) return;
  const ChunkLayout& L = p.layout;
  const int64_t dp = padded(p.d), nq = q_tile.count;
  Scratch& scratch = state.scratch;
  QueryTile qt(scratch, dp, false);
  float* st = scratch.take(kTile * kTile);
  float* dpt = scratch.take(kTile * kTile);
  float* dq = scratch.take(kTile * dp);
  qt.gather(p, s, q_tile, false);
  std::fill(dq, dq + nq * dp, 0.0f);
  const DropoutMask drop = p.segment_dropout(s);
  for_each_window_tile(L, q_tile.first / L.chunk, [&](const SlotTile& k_tile) {
    if (all_later(p, k_tile, q_tile)) return;
    const KeyTileCache::Entry& kv = state.keys.get(p, s, k_tile);
    const int64_t nk = k_tile.count, nqp = qt.nqp;
    tile_score_gradients(p, s, drop, qt, kv, k_tile.window_offset, st, dpt, true);
    small_gemm_at(nq, dp, nk, st, nqp, kv.k.data(), dp, dq, dp, true);
  });
  store_query_grads(p, s, q_tile, dq, dp);
}

void key_grads_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& k_tile,
                    ThreadState& state) {
  const ChunkLayout& L = p.layout;
  const int64_t dp = padded(p.d), nk = k_tile.count;
  Scratch& scratch = state.scratch;
  QueryTile qt(scratch, dp, true);
  float* st = scratch.take(kTile * kTile);
  float* dpt = scratch.take(kTile * kTile);
  float* dk = scratch.take(kTile * dp);
  float* dv = scratch.take(kTile * dp);
  std::fill(dk, dk + nk * dp, 0.0f);
  std::fill(dv, dv + nk * dp, 0.0f);
  const KeyTileCache::Entry& kv = state.keys.get(p, s, k_tile);
  const DropoutMask drop = p.segment_dropout(s);
  const int64_t within = k_tile.first % L.chunk;
  for_each_chunk_tile(p, k_tile.first / L.chunk, [&](const SlotTile& q_tile) {
    if (all_later(p, k_tile, q_tile)) return;
    qt.gather(p, s, q_tile, true);
    const int64_t nq = q_tile.count, nqp = qt.nqp;
    tile_score_gradients(p, s, drop, qt, kv, within, st, dpt, false);
    small_gemm(nk, dp, nq, st, nqp, qt.q, dp, dk, dp, true);
    small_gemm(nk, dp, nq, dpt, nqp, qt.dout, dp, dv, dp, true);
  });
  for (int64_t kk = 0; kk < nk; ++kk) {
    const int64_t slot = s * L.n_slots + k_tile.first + kk;
    copy_row(dk + kk * dp, p.d, p.dk + slot * p.d);
    copy_row(dv + kk * dp, p.d, p.dv + slot * p.d);
  }
}

// Work items of tiles of up to kTile slots in each chunk of each segment.
struct TileItems {
  int64_t per_chunk, per_segment, total;
  explicit TileItems(const ChunkAttentionParams& p)
      : per_chunk((p.layout.chunk + kTile - 1) / kTile),
        per_segment(p.layout.n_chunks() * per_chunk),
        total(p.segments * per_segment) {}
  SlotTile tile(const ChunkLayout& L, int64_t i, int64_t* segment) const {
    *segment = i / per_segment;
    const int64_t c = i % per_segment / per_chunk, k = i % per_chunk * kTile;
    return {c * L.chunk + k, std::min(kTile, L.chunk - k), 0};
  }
};

int64_t scratch_floats(const ChunkAttentionParams& p) {
  const int64_t dp = padded(p.d);
  // (each take_bf16 rounds its floats up: one more at most for each of its buffers)
  const int64_t bf16_operands = Bf16QueryOperands::values(p.d, dp) / 2 + 16;
  return 6 * kTile * dp + 2 * kTile * kTile + bf16_operands;
}

// Items of a tile pass, in blocks of consecutive items per thread (neighbouring chunks share key
// tiles through the cache).
template <class Item>
void for_each_tile(const ChunkAttentionParams& p, const Item& item) {
  const TileItems items(p);
  const int64_t block = std::max<int64_t>(1, items.total / (int64_t{8} * omp_get_max_threads()));
  const uint64_t pass = ++g_pass_number;
#pragma omp parallel for schedule(dynamic, block)
  for (int64_t i = 0; i < items.total; ++i) {
    ThreadState& state = thread_state(pass);
    state.scratch.reset(scratch_floats(p));
    int64_t s = 0;
    const SlotTile tile = items.tile(p.layout, i, &s);
    item(s, tile, state);
  }
}

// The gradient pass with look-back. Item (s, c) adds to the key gradients of chunks c - 1 (its
// look-back, cyclically) and c of segment s, so items c and c + 1 must not run at once. Items run
// in blocks of consecutive (segment, chunk) pairs, each block on one thread in chunk order: the
// key tiles that item c gathered for its own chunk serve item c + 1's look-back from the thread's
// cache, where phases of even and odd chunks gathered every chunk twice (the 4K reference step's
// gradient pass took 7-13% longer at bf16 and 4-6% at fp32). An item whose look-back chunk's other
// item belongs to another block waits for a second round, in phases of chunks whose windows do not
// overlap (even chunks, then odd ones, then the last when their count is odd). A key slot gets two
// contributions, the first stored (dk and dv need no zero fill) and the second added, or, when
// the two items run one after the other in a block, added on the thread and stored once
// (KeyGradCarry): an addition of two terms gives the same bits in either order, so the result
// does not depend on the blocks, nor on the thread count. (A single chunk is its own look-back:
// filled with zeros first, and its items run one per segment.)
void gradients_by_phase(const ChunkAttentionParams& p, bool bf16) {
  const ChunkLayout& L = p.layout;
  const int64_t nc = L.n_chunks(), per_segment = L.n_slots * p.d, total = p.segments * nc;
  const uint64_t pass = ++g_pass_number;  // (the keys do not change: one cache for both rounds)
  if (nc == 1) {
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < p.segments; ++s) {
      std::fill(p.dk + s * per_segment, p.dk + (s + 1) * per_segment, 0.0f);
      std::fill(p.dv + s * per_segment, p.dv + (s + 1) * per_segment, 0.0f);
      ThreadState& state = thread_state(pass);
      state.scratch.reset(scratch_floats(p));
      gradients_item(p, s, 0, state, bf16, false, false);
    }
    return;
  }
  // written[s * nc + j]: chunk j of segment s holds its first contribution. Only the two items
  // that write a chunk touch its flag, and they never run at once.
  std::vector<uint8_t> written(static_cast<size_t>(total), 0);
  auto lookback_item = [&](int64_t i) { return i / nc * nc + (i % nc + nc - 1) % nc; };
  auto run_item = [&](int64_t i, ThreadState& state, KeyGradCarry carry) {
    const int64_t lookback = lookback_item(i);
    state.scratch.reset(scratch_floats(p));
    gradients_item(p, i / nc, i % nc, state, bf16, written[lookback] == 0, written[i] == 0, carry);
    written[lookback] = written[i] = 1;
  };
  const int64_t rounds_of_blocks = int64_t{4} * omp_get_max_threads();
  const int64_t block = std::max<int64_t>(2, (total + rounds_of_blocks - 1) / rounds_of_blocks);
  const int64_t blocks = (total + block - 1) / block;
  // The second round's items by phase: even chunks, odd ones, the last when their count is odd.
  std::vector<int64_t> deferred[3];
  for (int64_t i = 0; i < total; ++i)
    if (lookback_item(i) / block != i / block)
      deferred[nc % 2 == 1 && i % nc == nc - 1 ? 2 : i % nc % 2].push_back(i);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < blocks; ++b) {
    ThreadState& state = thread_state(pass);
    const int64_t end = std::min(total, (b + 1) * block);
    bool carried = false;  // the item run last on this thread kept its own chunk's sums
    for (int64_t i = b * block; i < end; ++i) {
      if (lookback_item(i) / block != i / block) {  // (deferred: the item before kept nothing)
        carried = false;
        continue;
      }
      // Item i + 1, whose look-back is chunk i, runs next here when it is in this block.
      const bool keep = i + 1 < end && (i + 1) % nc != 0;
      run_item(i, state, KeyGradCarry{carried, keep});
      carried = keep;
    }
  }
  for (const std::vector<int64_t>& phase : deferred) {
    const int64_t n = static_cast<int64_t>(phase.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < n; ++k)
      run_item(phase[static_cast<size_t>(k)], thread_state(pass), KeyGradCarry{});
  }
}

// Dense (or look-back-free local) gradients, one item per (segment, chunk); fp32 products.
void gradients_by_chunk(const ChunkAttentionParams& p) {
  const int64_t nc = p.layout.n_chunks(), total = p.segments * nc;
  const uint64_t pass = ++g_pass_number;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < total; ++i) {
    ThreadState& state = thread_state(pass);
    state.scratch.reset(scratch_floats(p));
    gradients_item(p, i / nc, i % nc, state, false, false, true);
  }
}

}  // namespace

// Without look-back a chunk's keys get gradients from its own queries only, so one work item per
// (segment, chunk) can compute every gradient of the chunk in one pass over its (query tile, key
// tile) pairs (gradients_item), where separate query and key items (query_grads_item,
// key_grads_item) each recompute the scores and dP: 5 tile products per pair instead of 7. Fewer,
// larger items balance worse: one pass per chunk runs when its rounds of items cost no more than
// the two passes' evenly spread products.
bool dense_gradients_by_chunk(int64_t chunks, int64_t threads) {
  constexpr int64_t kOnePassProducts = 5, kTwoPassProducts = 7;
  const int64_t rounds = (chunks + threads - 1) / threads;
  return rounds * kOnePassProducts * threads <= chunks * kTwoPassProducts;
}

bool bf16_tile_products_available() {
  // The AMX layouts need tiles padded to 16 slots and dimensions, which AVX-512 builds use.
  return kTileVector == 16 && amx::available();
}

void chunk_attention_tiled(ChunkAttentionPass pass, const ChunkAttentionParams& p,
                           TileProducts products) {
  RF_CHECK(products != TileProducts::kBf16 || bf16_tile_products_available(),
           "bf16 tile products need AMX");
  // Heads narrower than an AMX tile (16) would be mostly padding: their products stay fp32.
  const bool bf16 = products == TileProducts::kBf16 && p.d >= amx::kTileRows;
  if (pass == ChunkAttentionPass::kForward) {
    for_each_tile(
        p, [&](int64_t s, const SlotTile& t, ThreadState& st) { forward_item(p, s, t, st, bf16); });
  } else if (p.layout.lookback == 1) {
    gradients_by_phase(p, bf16);
  } else if (dense_gradients_by_chunk(p.segments * p.layout.n_chunks(), omp_get_max_threads())) {
    gradients_by_chunk(p);  // (dense attention: fp32 products)
  } else {
    for_each_tile(
        p, [&](int64_t s, const SlotTile& t, ThreadState& st) { query_grads_item(p, s, t, st); });
    for_each_tile(
        p, [&](int64_t s, const SlotTile& t, ThreadState& st) { key_grads_item(p, s, t, st); });
  }
}

}  // namespace rf::cpu
