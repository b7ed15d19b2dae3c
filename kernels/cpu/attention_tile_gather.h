// The gathering half of the CPU's tiled chunk attention (kernels/cpu/chunk_attention_tiles.cpp):
// the rows of a tile's slots, picked from the inputs by the LSH permutation, copied into
// cache-resident tiles (rows or transposed, zero-padded to whole vectors), and a per-thread cache
// of gathered key and value tiles with their bf16 layouts for AMX products. Only that file
// includes it (it is compiled with -fno-tree-loop-distribute-patterns, which the row moves here
// rely on).
#pragma once

#include <climits>
#include <cstdint>
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/prefetch.h"
#include "kernels/cpu/tile_gemm.h"
#include "kernels/cpu/transpose_block.h"
#include "kernels/ops/chunk_attention.h"

namespace rf::cpu::tile_gather {

constexpr int64_t kTile = 64;  // query or key slots per tile

inline int64_t padded(int64_t n) {
  return (n + kTileVector - 1) / kTileVector * kTileVector;
}

// Copies n floats with inline vector moves: a call to memmove costs more than moving a row of a
// head (64 floats). (Its includer is compiled with -fno-tree-loop-distribute-patterns, so GCC keeps
// such loops as loops.)
inline void copy_row(const float* in, int64_t n, float* out) {
  int64_t x = 0;
  for (; x + kTileVector <= n; x += kTileVector) store_vector(out + x, load_vector(in + x));
  for (; x < n; ++x) out[x] = in[x];
}

// Rows of a tile are asked for (prefetch_floats) this many rows ahead of their use: they come from
// the positions the LSH permutation scattered over the sequence, a pattern the hardware
// prefetchers do not follow.
constexpr int64_t kPrefetchAhead = 8;  // rows (4 and 16 measured the same, while GCC still deleted
                                       // some of these prefetches: kernels/cpu/prefetch.h)

// A run of consecutive slots of one chunk, and where they sit in the window that sees them.
struct SlotTile {
  int64_t first = 0, count = 0;  // slots first .. first + count - 1 of the segment
  int64_t window_offset = 0;     // window index of slot `first` (key tiles)
};

// Gathers the rows of a tile's slots from the inputs into cache-resident tiles (zero-padded to
// whole vectors), as rows or transposed.
class TileGather {
 public:
  TileGather(const ChunkAttentionParams& p, int64_t s) : p_(p), s_(s), dp_(padded(p.d)) {}
  int64_t dp() const { return dp_; }

  // out [count, dp]: the query rows of the tile (or, per_slot set, rows of a per-slot array).
  void query_rows(const SlotTile& tile, float* out, const float* per_slot = nullptr) const {
    for (int64_t r = 0; r < tile.count; ++r) {
      const float* in = row(tile, r, per_slot);
      copy_row(in, p_.d, out + r * dp_);
      std::fill(out + r * dp_ + p_.d, out + (r + 1) * dp_, 0.0f);
    }
  }
  // out [dp, cols]: the transpose of query_rows, zero past count. In blocks of 16 x 16, which
  // stay in registers and L1 (measured 2.4 times faster than one strided store per element);
  // whole blocks transposed in registers (transpose_block.h).
  void query_columns(const SlotTile& tile, float* out, int64_t cols,
                     const float* per_slot = nullptr) const {
    std::fill(out, out + dp_ * cols, 0.0f);
    const float* rows[kTile];
    for (int64_t r = 0; r < tile.count; ++r) rows[r] = row(tile, r, per_slot);
    // The rows of the block of 16 from `first` (per-slot arrays are read in order: the hardware
    // prefetches them).
    auto prefetch_block = [&](int64_t first) {
      if (per_slot) return;
      for (int64_t r = first; r < std::min(first + 16, tile.count); ++r)
        prefetch_floats(rows[r], p_.d);
    };
    prefetch_block(0);
    for (int64_t r0 = 0; r0 < tile.count; r0 += 16) {
      const int64_t r1 = std::min(r0 + 16, tile.count);
      prefetch_block(r1);
      for (int64_t x0 = 0; x0 < p_.d; x0 += 16) {
        const int64_t x1 = std::min(x0 + 16, p_.d);
        if (r1 - r0 == 16 && x1 - x0 == 16) {
          transpose_16x16(rows + r0, x0, out + x0 * cols + r0, cols);
          continue;
        }
        for (int64_t x = x0; x < x1; ++x)
          for (int64_t r = r0; r < r1; ++r) out[x * cols + r] = rows[r][x];
      }
    }
  }
  // The rows layout (kernels/cpu/amx_tiles.h) of the tile's query rows (or, per_slot set, its
  // rows of a per-slot array), padded to whole vectors of rows, packed where the rows are.
  void query_rows_bf16(const SlotTile& tile, uint16_t* out, const float* per_slot = nullptr) const {
    const float* sources[kTile];
    for (int64_t r = 0; r < tile.count; ++r) sources[r] = row(tile, r, per_slot);
    amx::pack_rows_of(sources, nullptr, tile.count, padded(tile.count), p_.d, out);
  }
  // Where a key tile's key and value rows are, the keys' scale factors and their positions.
  void key_value_sources(const SlotTile& tile, const float** k, const float** v, float* k_scale,
                         int32_t* kpos) const {
    for (int64_t r = 0; r < tile.count; ++r) {
      const int64_t t = p_.position(s_, tile.first + r);
      k[r] = p_.key_row(s_, t);
      v[r] = p_.value_row(s_, t);
      k_scale[r] = p_.key_factor(s_, t);
      kpos[r] = static_cast<int32_t>(t);
    }
  }
  // Positions of the tile's slots; padding up to n gets INT32_MAX.
  void positions(const SlotTile& tile, int32_t* out, int64_t n) const {
    for (int64_t r = 0; r < n; ++r)
      out[r] = r < tile.count ? static_cast<int32_t>(p_.position(s_, tile.first + r)) : INT32_MAX;
  }

 private:
  const float* row(const SlotTile& tile, int64_t r, const float* per_slot) const {
    if (per_slot) return per_slot + (s_ * p_.layout.n_slots + tile.first + r) * p_.d;
    return p_.query_row(s_, p_.position(s_, tile.first + r));
  }
  const ChunkAttentionParams& p_;
  int64_t s_, dp_;
};

// The bf16 layouts of a key tile that a pass's products read (none: fp32 products). Packing only
// these (the forward: K rows and V^T; the gradients: K rows, V rows and K^T) made both bf16
// passes 3-4% faster than packing all four at 4K tokens. (V^T is made from V's rows, which the
// forward then holds too.)
struct Bf16Layouts {
  bool k_rows = false, v_rows = false, k_transposed = false, v_transposed = false;
};
constexpr Bf16Layouts kForwardLayouts{true, false, false, true};
constexpr Bf16Layouts kGradientLayouts{true, true, true, false};

// The gathered keys and values of recent key tiles of one thread: a chunk's keys serve its own
// window and the next chunk's, so consecutive items find half their tiles here.
class KeyTileCache {
 public:
  struct Entry {
    int64_t segment = -1, first = -1;
    int64_t count = 0, dp = 0;
    // Where the rows are in the pass's inputs (which do not change within a pass), the keys'
    // scale factors, and the keys' positions.
    const float* k_source[kTile];
    const float* v_source[kTile];
    float k_scale[kTile];
    int32_t kpos[kTile];
    // With fp32 products: the scaled keys and the values [kTile, dp], zero past d.
    bool has_fp32 = false;
    std::vector<float> k, v;
    // With bf16 products (amx_tiles.h): K and V as A operands [count_pad, d_pad] and their
    // transposes [dp, count_pad32], each made when first asked for, straight from the inputs'
    // rows. (Through fp32 copies of the tile, getting key tiles took 11% of the bf16 gradient
    // items' time at 4K tokens on one thread; this way 8%. 2026-12-05)
    bool has_k16 = false, has_v16 = false, has_kt16 = false, has_vt16 = false;
    std::vector<uint16_t> k16, v16, kt16, vt16;
    void make_fp32(int64_t d) {
      if (has_fp32) return;
      k.resize(static_cast<size_t>(kTile * dp));
      v.resize(static_cast<size_t>(kTile * dp));
      for (int64_t r = 0; r < count; ++r) {
        if (r + kPrefetchAhead < count) {
          prefetch_floats(k_source[r + kPrefetchAhead], d);
          prefetch_floats(v_source[r + kPrefetchAhead], d);
        }
        // (Through locals: a store through k.data() could alias k_scale for all GCC knows, and
        // the loop would reload it per element.)
        const float* __restrict key = k_source[r];
        const float scale = k_scale[r];
        float* __restrict k_row = k.data() + r * dp;
        float* __restrict v_row = v.data() + r * dp;
        for (int64_t x = 0; x < d; ++x) k_row[x] = key[x] * scale;
        copy_row(v_source[r], d, v_row);
        std::fill(k_row + d, k_row + dp, 0.0f);
        std::fill(v_row + d, v_row + dp, 0.0f);
      }
      has_fp32 = true;
    }
    void make_bf16(int64_t d, Bf16Layouts want) {
      const int64_t rows = padded(count), depth = amx::padded_depth(d);
      const int64_t keys = amx::padded_depth(count);
      // One layout of `values` values, packed by pack(out) unless it exists or is not wanted.
      auto make = [](bool wanted, bool* has, std::vector<uint16_t>* layout, int64_t values,
                     const auto& pack) {
        if (!wanted || *has) return;
        layout->resize(static_cast<size_t>(values));
        pack(layout->data());
        *has = true;
      };
      // (The transposes are made from the rows: the inputs' rows are read once.)
      make(want.k_rows || want.k_transposed, &has_k16, &k16, rows * depth,
           [&](uint16_t* out) { amx::pack_rows_of(k_source, k_scale, count, rows, d, out); });
      make(want.v_rows || want.v_transposed, &has_v16, &v16, rows * depth,
           [&](uint16_t* out) { amx::pack_rows_of(v_source, nullptr, count, rows, d, out); });
      make(want.k_transposed, &has_kt16, &kt16, dp * keys,
           [&](uint16_t* out) { amx::rows_transposed_of_rows(k16.data(), depth, count, dp, out); });
      make(want.v_transposed, &has_vt16, &vt16, dp * keys,
           [&](uint16_t* out) { amx::rows_transposed_of_rows(v16.data(), depth, count, dp, out); });
    }
  };
  // The key tile with the bf16 layouts `bf16` asks for, or (none asked for) its fp32 rows.
  const Entry& get(const ChunkAttentionParams& p, int64_t s, const SlotTile& tile,
                   Bf16Layouts bf16 = {}) {
    Entry* found = nullptr;
    for (Entry& e : entries_)
      if (e.segment == s && e.first == tile.first && e.count == tile.count && e.dp == padded(p.d)) {
        found = &e;
        break;
      }
    if (!found) {
      found = &entries_[next_];
      next_ = (next_ + 1) % kEntries;
      Entry& e = *found;
      TileGather(p, s).key_value_sources(tile, e.k_source, e.v_source, e.k_scale, e.kpos);
      e.segment = s;
      e.first = tile.first;
      e.count = tile.count;
      e.dp = padded(p.d);
      e.has_fp32 = e.has_k16 = e.has_v16 = e.has_kt16 = e.has_vt16 = false;
    }
    if (bf16.k_rows || bf16.v_rows || bf16.k_transposed || bf16.v_transposed)
      found->make_bf16(p.d, bf16);
    else
      found->make_fp32(p.d);
    return *found;
  }
  // Forget everything (the inputs change between passes).
  void clear() {
    for (Entry& e : entries_) e.segment = -1;
  }

 private:
  static constexpr int kEntries = 8;  // a window of up to 4 tiles, and the next chunk's
  std::vector<Entry> entries_ = std::vector<Entry>(kEntries);
  int next_ = 0;
};

}  // namespace rf::cpu::tile_gather
