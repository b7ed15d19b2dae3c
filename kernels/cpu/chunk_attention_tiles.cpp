#include "kernels/cpu/chunk_attention_tiles.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/cpu/tile_gemm.h"

namespace rf::cpu {
namespace {

constexpr int64_t kTile = 64;  // query or key slots per tile

int64_t padded(int64_t n) {
  return (n + kTileVector - 1) / kTileVector * kTileVector;
}

// A run of consecutive slots of one chunk, and where they sit in the window that sees them.
struct SlotTile {
  int64_t first = 0, count = 0;  // slots first .. first + count - 1 of the segment
  int64_t window_offset = 0;     // window index of slot `first` (key tiles)
};

// Per-thread scratch, grown once and reused.
struct Scratch {
  std::vector<float> buffer;
  float* take(int64_t n) {
    float* p = buffer.data() + used;
    used += n;
    return p;
  }
  void reserve(int64_t n) {
    if (static_cast<int64_t>(buffer.size()) < n) buffer.assign(static_cast<size_t>(n), 0.0f);
    used = 0;
  }
  int64_t used = 0;
};

Scratch& thread_scratch() {
  static thread_local Scratch scratch;
  return scratch;
}

// The slots of one tile gathered into cache: rows (and, where a product needs it, the transpose)
// of queries, keys or values, with positions, zero-padded to whole vectors.
class TileGather {
 public:
  TileGather(const ChunkAttentionParams& p, int64_t s) : p_(p), s_(s), dp_(padded(p.d)) {}
  int64_t dp() const { return dp_; }

  // rows [count, dp] of the input rows of `tile`'s slots, times `scale(t)` when scaled.
  template <class RowOf, class Scale>
  void rows(const SlotTile& tile, const RowOf& row_of, const Scale& scale, float* out,
            int64_t out_rows) const {
    for (int64_t r = 0; r < out_rows; ++r) {
      float* o = out + r * dp_;
      if (r >= tile.count) {
        std::fill(o, o + dp_, 0.0f);
        continue;
      }
      const int64_t t = p_.position(s_, tile.first + r);
      const float* in = row_of(t);
      const float f = scale(t);
      for (int64_t x = 0; x < p_.d; ++x) o[x] = in[x] * f;
      std::fill(o + p_.d, o + dp_, 0.0f);
    }
  }
  // The transpose [dp, cols] of the rows above.
  template <class RowOf, class Scale>
  void columns(const SlotTile& tile, const RowOf& row_of, const Scale& scale, float* out,
               int64_t cols) const {
    std::fill(out, out + dp_ * cols, 0.0f);
    for (int64_t r = 0; r < tile.count; ++r) {
      const int64_t t = p_.position(s_, tile.first + r);
      const float* in = row_of(t);
      const float f = scale(t);
      for (int64_t x = 0; x < p_.d; ++x) out[x * cols + r] = in[x] * f;
    }
  }
  // Rows of a per-slot array of width d (the stored dO), padded.
  void slot_rows(const SlotTile& tile, const float* per_slot, float* out, int64_t out_rows) const {
    for (int64_t r = 0; r < out_rows; ++r) {
      float* o = out + r * dp_;
      if (r < tile.count) {
        const float* in = per_slot + (s_ * p_.layout.n_slots + tile.first + r) * p_.d;
        std::copy(in, in + p_.d, o);
        std::fill(o + p_.d, o + dp_, 0.0f);
      } else {
        std::fill(o, o + dp_, 0.0f);
      }
    }
  }
  void slot_columns(const SlotTile& tile, const float* per_slot, float* out, int64_t cols) const {
    std::fill(out, out + dp_ * cols, 0.0f);
    for (int64_t r = 0; r < tile.count; ++r) {
      const float* in = per_slot + (s_ * p_.layout.n_slots + tile.first + r) * p_.d;
      for (int64_t x = 0; x < p_.d; ++x) out[x * cols + r] = in[x];
    }
  }
  // Positions of the tile's slots; padding gets INT32_MAX.
  void positions(const SlotTile& tile, int32_t* out, int64_t n) const {
    for (int64_t r = 0; r < n; ++r)
      out[r] = r < tile.count ? static_cast<int32_t>(p_.position(s_, tile.first + r)) : INT32_MAX;
  }

  auto queries() const {
    return [this](int64_t t) { return p_.query_row(s_, t); };
  }
  auto keys() const {
    return [this](int64_t t) { return p_.key_row(s_, t); };
  }
  auto values() const {
    return [this](int64_t t) { return p_.value_row(s_, t); };
  }
  auto key_factor() const {
    return [this](int64_t t) { return p_.key_factor(s_, t); };
  }
  static auto unscaled() {
    return [](int64_t) { return 1.0f; };
  }

 private:
  const ChunkAttentionParams& p_;
  int64_t s_;
  int64_t dp_;
};

// The key tiles of chunk c's window, in window order: the previous chunk's, then its own.
std::vector<SlotTile> window_tiles(const ChunkLayout& L, int64_t c) {
  std::vector<SlotTile> tiles;
  for (int64_t part = 0; part <= L.lookback; ++part) {
    const int64_t chunk = part < L.lookback ? (c + L.n_chunks() - 1) % L.n_chunks() : c;
    for (int64_t k = 0; k < L.chunk; k += kTile)
      tiles.push_back({chunk * L.chunk + k, std::min(kTile, L.chunk - k), part * L.chunk + k});
  }
  return tiles;
}

// The work items of a pass: tiles of up to kTile slots within each chunk of each segment.
struct Items {
  int64_t tiles_per_chunk, per_segment, total;
  explicit Items(const ChunkAttentionParams& p)
      : tiles_per_chunk((p.layout.chunk + kTile - 1) / kTile),
        per_segment(p.layout.n_chunks() * tiles_per_chunk),
        total(p.segments * per_segment) {}
  // Segment and slot tile of item i.
  SlotTile tile(const ChunkLayout& L, int64_t i, int64_t* segment) const {
    *segment = i / per_segment;
    const int64_t c = i % per_segment / tiles_per_chunk, k = i % tiles_per_chunk * kTile;
    return {c * L.chunk + k, std::min(kTile, L.chunk - k), 0};
  }
};

// Entirely masked by causality (original order only: slot order is position order there).
bool all_later(const ChunkAttentionParams& p, const SlotTile& keys, const SlotTile& queries) {
  return p.perm == nullptr && keys.first > queries.first + queries.count - 1;
}

// Per-query statistics of a tile of slots, gathered for the backward; padding gets zeros.
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

// Scores are kept transposed in the forward and the query gradients, st [keys, queries], so each
// softmax statistic is a vector across the queries of a tile (no horizontal reductions), and the
// queries are transposed once per tile instead of the keys once per (query tile, key tile) pair.

void forward_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& q_tile,
                  Scratch& scratch) {
  const ChunkLayout& L = p.layout;
  TileGather gather(p, s);
  const int64_t dp = gather.dp(), nq = q_tile.count, nqp = padded(nq);
  float* qt = scratch.take(dp * kTile);
  float* k = scratch.take(kTile * dp);
  float* v = scratch.take(kTile * dp);
  float* st = scratch.take(kTile * kTile);
  float* acc = scratch.take(kTile * dp);
  float m[kTile], l[kTile], tile_max[kTile], correction[kTile];
  int32_t qpos[kTile], kpos[kTile];
  gather.columns(q_tile, gather.queries(), TileGather::unscaled(), qt, nqp);
  gather.positions(q_tile, qpos, nqp);
  std::fill(acc, acc + nq * dp, 0.0f);
  std::fill(m, m + nqp, kNoMaxYet);
  std::fill(l, l + nqp, 0.0f);
  const DropoutMask drop = p.segment_dropout(s);
  for (const SlotTile& k_tile : window_tiles(L, q_tile.first / L.chunk)) {
    if (all_later(p, k_tile, q_tile)) continue;
    const int64_t nk = k_tile.count;
    gather.rows(k_tile, gather.keys(), gather.key_factor(), k, nk);
    gather.rows(k_tile, gather.values(), TileGather::unscaled(), v, nk);
    gather.positions(k_tile, kpos, nk);
    tile_gemm(nk, nqp, dp, k, dp, qt, nqp, st, nqp, false);
    std::fill(tile_max, tile_max + nqp, kNoMaxYet);
    for (int64_t kk = 0; kk < nk; ++kk) {
      float* row = st + kk * nqp;
      for (int64_t i = 0; i < nqp; ++i) {
        row[i] -= mask_penalty(qpos[i], kpos[kk], p.self_mask);
        tile_max[i] = fmax_hd(tile_max[i], row[i]);
      }
    }
    for (int64_t i = 0; i < nqp; ++i) {
      const float m_new = fmax_hd(m[i], tile_max[i]);
      correction[i] = exp_approx(m[i] - m_new);
      m[i] = m_new;
      l[i] *= correction[i];
    }
    for (int64_t kk = 0; kk < nk; ++kk) {
      float* row = st + kk * nqp;
      for (int64_t i = 0; i < nqp; ++i) {
        row[i] = exp_approx(row[i] - m[i]);
        l[i] += row[i];
      }
      if (drop.active())
        for (int64_t i = 0; i < nq; ++i)
          row[i] *= drop.scale(q_tile.first + i, k_tile.window_offset + kk);
    }
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t x = 0; x < dp; ++x) acc[i * dp + x] *= correction[i];
    tile_gemm_at(nq, dp, nk, st, nqp, v, dp, acc, dp, true);
  }
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t slot = s * L.n_slots + q_tile.first + i;
    const float inv = 1.0f / l[i];
    float* o = p.o + slot * p.d;
    for (int64_t x = 0; x < p.d; ++x) o[x] = acc[i * dp + x] * inv;
    p.row_max[slot] = m[i];
    p.row_log_sum[slot] = logf(l[i]);
  }
}

void query_grads_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& q_tile,
                      Scratch& scratch) {
  const ChunkLayout& L = p.layout;
  TileGather gather(p, s);
  const int64_t dp = gather.dp(), nq = q_tile.count, nqp = padded(nq);
  float* qt = scratch.take(dp * kTile);
  float* doutt = scratch.take(dp * kTile);
  float* k = scratch.take(kTile * dp);
  float* v = scratch.take(kTile * dp);
  float* st = scratch.take(kTile * kTile);
  float* dpt = scratch.take(kTile * kTile);
  float* dq = scratch.take(kTile * dp);
  int32_t qpos[kTile], kpos[kTile];
  QueryStats stats;
  gather.columns(q_tile, gather.queries(), TileGather::unscaled(), qt, nqp);
  gather.slot_columns(q_tile, p.o, doutt, nqp);
  gather.positions(q_tile, qpos, nqp);
  stats.gather(p, s, q_tile, nqp);
  std::fill(dq, dq + nq * dp, 0.0f);
  const DropoutMask drop = p.segment_dropout(s);
  for (const SlotTile& k_tile : window_tiles(L, q_tile.first / L.chunk)) {
    if (all_later(p, k_tile, q_tile)) continue;
    const int64_t nk = k_tile.count;
    gather.rows(k_tile, gather.keys(), gather.key_factor(), k, nk);
    gather.rows(k_tile, gather.values(), TileGather::unscaled(), v, nk);
    gather.positions(k_tile, kpos, nk);
    tile_gemm(nk, nqp, dp, k, dp, qt, nqp, st, nqp, false);
    tile_gemm(nk, nqp, dp, v, dp, doutt, nqp, dpt, nqp, false);
    for (int64_t kk = 0; kk < nk; ++kk) {
      float* row = st + kk * nqp;
      float* dp_row = dpt + kk * nqp;
      if (drop.active())
        for (int64_t i = 0; i < nq; ++i)
          dp_row[i] *= drop.scale(q_tile.first + i, k_tile.window_offset + kk);
      for (int64_t i = 0; i < nqp; ++i) {
        const float x = row[i] - mask_penalty(qpos[i], kpos[kk], p.self_mask);
        const float prob = exp_approx((x - stats.m[i]) - stats.log_sum[i]);
        row[i] = prob * (dp_row[i] - stats.delta[i] + stats.dlse[i]);
      }
    }
    tile_gemm_at(nq, dp, nk, st, nqp, k, dp, dq, dp, true);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* out = p.dq + (s * L.n_slots + q_tile.first + i) * p.d;
    std::copy(dq + i * dp, dq + i * dp + p.d, out);
  }
}

// The query tiles whose windows hold key tile k_tile (chunk c's slots): its own chunk's queries
// (keys at window index lookback * chunk + ...) and, with look-back, the next chunk's (at 0 + ...).
std::vector<std::pair<SlotTile, int64_t>> viewing_tiles(const ChunkLayout& L,
                                                        const SlotTile& k_tile) {
  const int64_t c = k_tile.first / L.chunk, within = k_tile.first - c * L.chunk;
  std::vector<std::pair<SlotTile, int64_t>> views;
  for (int64_t view = L.lookback; view >= 0; --view) {
    const int64_t qc = view == L.lookback ? c : (c + 1) % L.n_chunks();
    const int64_t offset = (view == L.lookback ? L.lookback * L.chunk : 0) + within;
    for (int64_t q = 0; q < L.chunk; q += kTile)
      views.push_back({{qc * L.chunk + q, std::min(kTile, L.chunk - q), 0}, offset});
  }
  return views;
}

// The key gradients keep their scores as s [queries, keys]: the keys (and values) of the item are
// transposed once, and the statistics of each query row are scalars over a vector of keys.
void key_grads_item(const ChunkAttentionParams& p, int64_t s, const SlotTile& k_tile,
                    Scratch& scratch) {
  const ChunkLayout& L = p.layout;
  TileGather gather(p, s);
  const int64_t dp = gather.dp(), nk = k_tile.count, nkp = padded(nk);
  float* kt = scratch.take(dp * kTile);
  float* vt = scratch.take(dp * kTile);
  float* q = scratch.take(kTile * dp);
  float* dout = scratch.take(kTile * dp);
  float* scores = scratch.take(kTile * kTile);
  float* dprobs = scratch.take(kTile * kTile);
  float* dk = scratch.take(kTile * dp);
  float* dv = scratch.take(kTile * dp);
  int32_t qpos[kTile], kpos[kTile];
  QueryStats stats;
  gather.columns(k_tile, gather.keys(), gather.key_factor(), kt, nkp);
  gather.columns(k_tile, gather.values(), TileGather::unscaled(), vt, nkp);
  gather.positions(k_tile, kpos, nkp);
  std::fill(dk, dk + nk * dp, 0.0f);
  std::fill(dv, dv + nk * dp, 0.0f);
  const DropoutMask drop = p.segment_dropout(s);
  for (const auto& [q_tile, key_offset] : viewing_tiles(L, k_tile)) {
    if (all_later(p, k_tile, q_tile)) continue;
    const int64_t nq = q_tile.count;
    gather.rows(q_tile, gather.queries(), TileGather::unscaled(), q, nq);
    gather.slot_rows(q_tile, p.o, dout, nq);
    gather.positions(q_tile, qpos, nq);
    stats.gather(p, s, q_tile, nq);
    tile_gemm(nq, nkp, dp, q, dp, kt, nkp, scores, nkp, false);
    tile_gemm(nq, nkp, dp, dout, dp, vt, nkp, dprobs, nkp, false);
    for (int64_t i = 0; i < nq; ++i) {
      float* row = scores + i * nkp;
      float* dp_row = dprobs + i * nkp;
      const float m = stats.m[i], log_sum = stats.log_sum[i];
      const float shift = stats.dlse[i] - stats.delta[i];
      const int32_t qp = qpos[i];
      float keep[kTile];
      if (drop.active())
        for (int64_t kk = 0; kk < nk; ++kk)
          keep[kk] = drop.scale(q_tile.first + i, key_offset + kk);
      // (Padding keys, kk >= nk, give finite values in columns no output reads.)
      for (int64_t kk = 0; kk < nkp; ++kk) {
        const float x = row[kk] - mask_penalty(qp, kpos[kk], p.self_mask);
        const float prob = exp_approx((x - m) - log_sum);
        row[kk] = prob * (dp_row[kk] * (drop.active() ? keep[kk] : 1.0f) + shift);
        dp_row[kk] = prob;
      }
      if (drop.active())  // the dropped probabilities weigh dV
        for (int64_t kk = 0; kk < nk; ++kk) dp_row[kk] *= keep[kk];
    }
    tile_gemm_at(nk, dp, nq, scores, nkp, q, dp, dk, dp, true);
    tile_gemm_at(nk, dp, nq, dprobs, nkp, dout, dp, dv, dp, true);
  }
  for (int64_t kk = 0; kk < nk; ++kk) {
    const int64_t slot = s * L.n_slots + k_tile.first + kk;
    std::copy(dk + kk * dp, dk + kk * dp + p.d, p.dk + slot * p.d);
    std::copy(dv + kk * dp, dv + kk * dp + p.d, p.dv + slot * p.d);
  }
}

}  // namespace

void chunk_attention_tiled(ChunkAttentionPass pass, const ChunkAttentionParams& p) {
  const Items items(p);
  const int64_t dp = padded(p.d);
  const int64_t scratch_floats = 8 * kTile * dp + 2 * kTile * kTile;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < items.total; ++i) {
    Scratch& scratch = thread_scratch();
    scratch.reserve(scratch_floats);
    int64_t s = 0;
    const SlotTile tile = items.tile(p.layout, i, &s);
    switch (pass) {
      case ChunkAttentionPass::kForward:
        forward_item(p, s, tile, scratch);
        break;
      case ChunkAttentionPass::kQueryGrads:
        query_grads_item(p, s, tile, scratch);
        break;
      case ChunkAttentionPass::kKeyGrads:
        key_grads_item(p, s, tile, scratch);
        break;
    }
  }
}

}  // namespace rf::cpu
