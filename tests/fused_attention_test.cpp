// The fused chunked attention against the unfused path it replaced, over a sweep of shapes, for
// every kernel variant of the CPU executor: outputs and gradients within fp32 rounding, bf16 tiles
// within bf16 rounding, gradients written over their inputs, a memory of keys and values only,
// and the dropout stream.
#include <gtest/gtest.h>
#include <omp.h>

#include <numeric>
#include <random>

#include "kernels/cpu/chunk_attention_tiles.h"
#include "tests/attention_problem.h"

namespace rf {
namespace {

using namespace attention_problem;  // NOLINT(build/namespaces): the tests' shared problem
using test::cpu;                    // (not the namespace rf::cpu of the tiles)

// The sweep every implementation is compared over: LSH with one and several rounds, one chunk
// with look-back, dropout, local and dense attention, several examples and heads, and sizes that
// are not multiples of any tile (head widths 5, 20 and 70; chunks of 3, 24, 65, 96 and 150, over
// several 64-slot tiles).
std::vector<Case> sweep() {
  std::vector<Case> cases;
  auto add = [&](Case c) { cases.push_back(c); };
  Case c;
  add(c);  // LSH, one round
  c.rounds = 2;
  c.batch = 2;
  c.heads = 3;
  add(c);
  c.keep = 0.75f;
  add(c);
  c = Case();
  c.T = 24;
  c.chunk = 24;  // one chunk that sees itself twice
  c.rounds = 2;
  add(c);
  c = Case();
  c.d = 5;
  c.chunk = 3;
  c.T = 21;
  c.rounds = 3;
  c.buckets = 6;
  add(c);
  c = Case();
  c.T = 96;
  c.chunk = 24;
  c.d = 16;
  c.rounds = 2;
  c.buckets = 8;
  add(c);
  c = Case();
  c.lsh = false;  // local
  c.batch = 2;
  c.heads = 2;
  add(c);
  c.keep = 0.6f;
  add(c);
  c = Case();
  c.lsh = false;  // dense
  c.T = 40;
  c.chunk = 40;
  c.lookback = 0;
  c.d = 12;
  add(c);
  c.T = 150;  // chunks over several 64-slot tiles, partial last tiles, a head of 70
  c.chunk = 150;
  c.d = 70;
  add(c);
  c.batch = 2;  // dense over several segments: the gradients in one pass per chunk (2 threads)
  c.heads = 2;
  add(c);
  c = Case();
  c.lsh = false;
  c.T = 192;
  c.chunk = 96;
  c.d = 20;
  add(c);
  c.lookback = 0;  // local without look-back: chunks of their own
  c.chunk = 80;    // (each over a whole and a partial 64-slot tile)
  c.T = 240;
  add(c);
  c = Case();
  c.T = 130;
  c.chunk = 65;
  c.rounds = 2;
  c.buckets = 2;
  add(c);
  return cases;
}

// Largest difference relative to the largest magnitude of the reference.
double relative_max_error(const std::vector<float>& got, const std::vector<float>& want) {
  double scale = 1e-30, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(double{want[i]}));
    diff = std::max(diff, std::fabs(double{got[i]} - want[i]));
  }
  return diff / scale;
}

void expect_close(const std::vector<std::vector<float>>& got,
                  const std::vector<std::vector<float>>& want, double tolerance,
                  const std::string& what) {
  const char* names[] = {"output", "dq", "dv", "dk"};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LT(relative_max_error(got[i], want[i]), tolerance) << what << ": " << names[i];
}

// The fused passes equal the unfused path they replaced within fp32 rounding (they add the same
// terms in another order), for every kernel variant of the CPU executor.
TEST(FusedAttention, EqualsTheUnfusedPathWithinFp32Rounding) {
  for (KernelVariant variant :
       {KernelVariant::kTuned, KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
    const std::unique_ptr<Executor> ex = make_cpu_executor(0);
    ex->set_kernel_variant(variant);
    for (const Case& c : sweep()) {
      const Problem p(c);
      const auto dout = test::random_vector(c.rows() * c.ld(), 99);
      expect_close(fused_backward(p, dout, *ex), unfused_backward(p, dout), 2e-5,
                   c.name() + " variant " + std::to_string(static_cast<int>(variant)));
      EXPECT_EQ(fused_forward(p, *ex), fused_backward(p, dout, *ex)[0])
          << c.name() << ": the backward's recomputed output differs from the forward's";
    }
  }
}

// Dense attention's gradients (and local attention's without look-back) run as one work item per
// chunk when there are enough chunks for the threads, else as separate query and key items: the
// same bits either way, so a run's result does not depend on its thread count.
TEST(FusedAttention, DenseGradientsGiveTheSameBitsInOnePassPerChunkAsInQueryAndKeyPasses) {
  const int threads_before = omp_get_max_threads();
  Case dense;
  dense.lsh = false;
  dense.lookback = 0;
  dense.T = dense.chunk = 150;
  dense.d = 70;
  dense.batch = 2;
  dense.heads = 3;
  Case dropout = dense;
  dropout.T = dropout.chunk = 64;
  dropout.d = 16;
  dropout.keep = 0.7f;
  Case local = dense;
  local.T = 240;
  local.chunk = 80;
  local.heads = 1;
  local.d = 20;
  for (const Case& c : {dense, dropout, local}) {
    const int64_t chunks = c.batch * c.heads * ((c.T + c.chunk - 1) / c.chunk);
    ASSERT_TRUE(cpu::dense_gradients_by_chunk(chunks, 1)) << c.name();
    ASSERT_FALSE(cpu::dense_gradients_by_chunk(chunks, 16)) << c.name();
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 97);
    const std::unique_ptr<Executor> one_thread = make_cpu_executor(1);
    const auto by_chunk = fused_backward(p, dout, *one_thread);
    const std::unique_ptr<Executor> sixteen = make_cpu_executor(16);
    EXPECT_EQ(fused_backward(p, dout, *sixteen), by_chunk) << c.name();
    expect_close(by_chunk, unfused_backward(p, dout), 2e-5, c.name());
  }
  omp_set_num_threads(threads_before);
}

// The look-back gradient pass runs its items in blocks sized by the thread count, and an item
// whose look-back neighbour sits in another block in a later round: the same bits on any number
// of threads (two contributions per key, added in either order), for odd and even chunk counts,
// two chunks (each the other's look-back), chunks over several tiles, dropout and a memory-free
// local case; and within fp32 rounding of the unfused path.
TEST(FusedAttention, LookBackGradientsGiveTheSameBitsOnAnyThreadCount) {
  const int threads_before = omp_get_max_threads();
  std::vector<Case> cases;
  Case c;
  c.T = 99;  // 11 chunks of 9 (odd), 3 rounds, over 2 x 2 segments
  c.chunk = 9;
  c.rounds = 3;
  c.buckets = 11;
  c.batch = 2;
  c.heads = 2;
  c.d = 16;
  cases.push_back(c);
  c.T = 16;  // two chunks
  c.chunk = 8;
  c.buckets = 2;
  c.keep = 0.8f;
  cases.push_back(c);
  c = Case();
  c.T = 520;  // 4 chunks of 130: three tiles a chunk
  c.chunk = 130;
  c.rounds = 2;
  c.buckets = 4;
  c.d = 24;
  cases.push_back(c);
  c = Case();
  c.lsh = false;  // local with look-back: 6 chunks, 3 heads
  c.T = 96;
  c.chunk = 16;
  c.heads = 3;
  c.keep = 0.7f;
  cases.push_back(c);
  for (const Case& k : cases) {
    const Problem p(k);
    const auto dout = test::random_vector(k.rows() * k.ld(), 61);
    const std::unique_ptr<Executor> one = make_cpu_executor(1);
    const auto want = fused_backward(p, dout, *one);
    for (int threads : {2, 3, 7, 16}) {
      const std::unique_ptr<Executor> ex = make_cpu_executor(threads);
      EXPECT_EQ(fused_backward(p, dout, *ex), want) << k.name() << ", " << threads << " threads";
    }
    expect_close(want, unfused_backward(p, dout), 2e-5, k.name());
  }
  omp_set_num_threads(threads_before);
}

// Relative RMS difference.
double relative_rms(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, ref = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    ref += double{want[i]} * want[i];
  }
  return std::sqrt(diff / ref);
}

// At runtime.precision = bf16 on a CPU with AMX the tiles multiply bf16 operands
// (kernels/cpu/amx_tiles.h): outputs and gradients within bf16 rounding of fp32's (bf16 keeps 8
// significant bits: about 0.3% per rounding), and not equal to them, so the bf16 products ran.
// Shapes cover tiles that are not whole 16-slot tiles (chunks of 8 and 40, a chunk of 65 split
// 64 + 1), a head width that is not a multiple of 16, dropout and several rounds. (Heads
// narrower than 16 keep fp32 products.)
TEST(FusedAttention, Bf16TilesOnAmxStayWithinBf16RoundingOfFp32) {
  if (!cpu::bf16_tile_products_available()) GTEST_SKIP() << "this CPU has no AMX-BF16";
  const std::unique_ptr<Executor> bf16 = make_cpu_executor(0, GemmPrecision::kBf16);
  std::vector<Case> cases;
  for (int64_t d : {16, 33, 64})
    for (int64_t chunk : {8, 40, 64, 65}) {
      Case c;
      c.T = 3 * chunk;
      c.d = d;
      c.chunk = chunk;
      c.rounds = 2;
      c.buckets = 3;
      c.heads = 2;
      c.keep = chunk == 40 ? 0.8f : 1.0f;
      cases.push_back(c);
    }
  Case local;
  local.lsh = false;
  local.T = 96;
  local.d = 24;
  local.chunk = 32;
  cases.push_back(local);
  for (const Case& c : cases) {
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 98);
    const auto got = fused_backward(p, dout, *bf16), want = fused_backward(p, dout);
    const char* names[] = {"output", "dq", "dv", "dk"};
    for (size_t i = 0; i < got.size(); ++i) {
      const double e = relative_rms(got[i], want[i]);
      EXPECT_LT(e, 1e-2) << c.name() << ": " << names[i];
      EXPECT_GT(e, 1e-5) << c.name() << ": " << names[i] << " equals fp32's";
    }
  }
}

// Gradients written over their inputs (as the attention layer does), with the segments run in
// groups of one: the same as into separate buffers in one launch.
TEST(FusedAttention, GradientsMayReplaceTheInputsAcrossSegmentGroups) {
  for (bool lsh : {true, false}) {
    Case c;
    c.lsh = lsh;
    c.batch = 2;
    c.heads = 2;
    c.rounds = lsh ? 2 : 1;
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 98);
    const auto expected = fused_backward(p, dout);
    Problem in_place(c);
    ChunkedAttentionArgs a = in_place.args();
    a.scratch_budget_bytes = 1;  // one segment per launch
    DeviceBuffer<float> g = test::to_device(dout), out(cpu(), c.rows() * c.ld());
    Workspace ws(cpu());
    chunked_attention_backward(
        cpu(), ws, a, g.data(), c.ld(),
        {in_place.q.data(), lsh ? nullptr : in_place.k.data(), in_place.v.data(), c.ld()},
        out.data(), c.ld());
    std::vector<std::vector<float>> got = {out.download(), in_place.q.download(),
                                           in_place.v.download()};
    if (!lsh) got.push_back(in_place.k.download());
    EXPECT_EQ(got, expected) << c.name();
  }
}

// model.recompute: none. A forward that keeps its per-slot outputs and statistics, in groups of
// one segment or all at once, leaves its output unchanged, and a backward that reads them (in
// either grouping) instead of running the forward again gives the same output and gradients bit
// for bit, for every case of the sweep.
TEST(FusedAttention, KeptSlotsGiveTheBackwardOfTheRecomputedForward) {
  for (const Case& c : sweep()) {
    const Problem p(c);
    const auto dout = test::random_vector(c.rows() * c.ld(), 98);
    const auto expected = fused_backward(p, dout);
    for (const int64_t forward_budget : {int64_t{1}, int64_t{256} << 20})
      for (const int64_t backward_budget : {int64_t{1}, int64_t{256} << 20}) {
        const std::string what = c.name() + " budgets " + std::to_string(forward_budget) + ", " +
                                 std::to_string(backward_budget);
        ChunkedAttentionArgs a = p.args();
        DeviceBuffer<float> kept(cpu(), chunked_attention_kept_floats(a));
        a.kept_slots = kept.data();
        a.scratch_budget_bytes = forward_budget;
        DeviceBuffer<float> out(cpu(), c.rows() * c.ld());
        Workspace ws(cpu());
        chunked_attention_forward(cpu(), ws, a, out.data(), c.ld());
        EXPECT_EQ(out.download(), expected[0]) << what << ": forward output";
        out.zero();
        DeviceBuffer<float> g = test::to_device(dout), dq(cpu(), c.rows() * c.ld()),
                            dk(cpu(), c.rows() * c.ld()), dv(cpu(), c.rows() * c.ld());
        a.scratch_budget_bytes = backward_budget;
        Workspace fresh(cpu());  // (nothing left in the scratch of the forward)
        chunked_attention_backward(cpu(), fresh, a, g.data(), c.ld(),
                                   {dq.data(), c.lsh ? nullptr : dk.data(), dv.data(), c.ld()},
                                   out.data(), c.ld());
        std::vector<std::vector<float>> got = {out.download(), dq.download(), dv.download()};
        if (!c.lsh) got.push_back(dk.download());
        EXPECT_EQ(got, expected) << what;
      }
  }
}

// x [blocks * T, cols] with its rows regrouped as the attention takes a memory of M positions:
// every block's positions M .. T - 1 (the segment's), then, with `memory_rows`, every block's
// positions 0 .. M - 1.
std::vector<float> memory_layout(const std::vector<float>& x, int64_t blocks, int64_t T, int64_t M,
                                 int64_t cols, bool memory_rows) {
  std::vector<float> r;
  for (int64_t b = 0; b < blocks; ++b)
    r.insert(r.end(), x.begin() + (b * T + M) * cols, x.begin() + (b + 1) * T * cols);
  if (memory_rows)
    for (int64_t b = 0; b < blocks; ++b)
      r.insert(r.end(), x.begin() + b * T * cols, x.begin() + (b * T + M) * cols);
  return r;
}

// The backward's output, dq, dv, dk and the relative scores' gradient.
std::vector<std::vector<float>> backward_with_relative(const ChunkedAttentionArgs& a,
                                                       const std::vector<float>& dout,
                                                       Executor& ex) {
  const int64_t queries = a.batch * (a.seq_len - a.memory_len), keys = a.batch * a.seq_len;
  DeviceBuffer<float> out(ex, queries * a.ld), dq(ex, queries * a.ld), dk(ex, keys * a.ld),
      dv(ex, keys * a.ld), drel(ex, std::max<int64_t>(1, a.heads * queries * a.rel_len));
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(ex);
  ChunkedAttentionGrads grads{dq.data(), dk.data(), dv.data(), a.ld};
  if (a.rel_scores) grads.rel_grads = drel.data();
  chunked_attention_backward(ex, ws, a, g.data(), a.ld, grads, out.data(), a.ld);
  return {out.download(), dq.download(), dv.download(), dk.download(), drel.download()};
}

// Transformer-XL's memory: with memory_len M the first M positions of each sequence are keys
// and values only, the queries' rows hold the segment's positions and the keys' rows the
// segment's then the memory's. Outputs and gradients equal the whole sequence's attention at the
// segment's positions when the memory's queries get no output gradient: local attention (a
// memory that ends inside a chunk and one of a whole chunk) and dense attention (inside a
// 64-slot tile, and two whole tiles), with dropout, relative scores and a distance limit, in one
// launch and a segment per launch, for every kernel variant of the CPU executor.
TEST(FusedAttention, AMemoryGivesKeysAndValuesOnlyAsTheWholeSequenceWithoutItsQueries) {
  struct MemoryCase {
    Case c;
    int64_t memory;
    bool relative;
  };
  std::vector<MemoryCase> cases;
  Case local;
  local.lsh = false;
  local.batch = 2;
  local.heads = 2;
  local.T = 192;
  local.chunk = 64;
  local.d = 20;
  cases.push_back({local, 100, false});
  local.keep = 0.8f;
  cases.push_back({local, 64, true});
  Case dense;
  dense.lsh = false;
  dense.lookback = 0;
  dense.heads = 2;
  dense.T = dense.chunk = 150;
  dense.d = 12;
  cases.push_back({dense, 70, true});
  dense.batch = 2;
  dense.keep = 0.9f;
  cases.push_back({dense, 128, false});
  for (KernelVariant variant :
       {KernelVariant::kTuned, KernelVariant::kPlain, KernelVariant::kGpuIndexing}) {
    const std::unique_ptr<Executor> ex = make_cpu_executor(0);
    ex->set_kernel_variant(variant);
    for (const MemoryCase& m : cases) {
      const Case& c = m.c;
      const int64_t M = m.memory, ld = c.ld(), blocks = c.batch * c.heads;
      const int64_t rel_len = c.lookback == 1 ? 2 * c.chunk : c.T;
      const std::string what = c.name() + " memory " + std::to_string(M) + " variant " +
                               std::to_string(static_cast<int>(variant));
      const Problem whole(c);
      std::vector<float> dout = test::random_vector(c.rows() * ld, 97);
      for (int64_t b = 0; b < c.batch; ++b)  // the memory's queries: no output gradient
        std::fill(dout.begin() + b * c.T * ld, dout.begin() + (b * c.T + M) * ld, 0.0f);
      const std::vector<float> rel = test::random_vector(blocks * c.T * rel_len, 96);
      DeviceBuffer<float> rel_whole = test::to_device(rel);
      DeviceBuffer<float> rel_segment =
          test::to_device(memory_layout(rel, blocks, c.T, M, rel_len, false));
      ChunkedAttentionArgs a = whole.args();
      if (m.relative) {
        a.rel_scores = rel_whole.data();
        a.rel_len = rel_len;
        a.max_distance = c.T / 2;
      }
      const auto want = backward_with_relative(a, dout, *ex);
      DeviceBuffer<float> q =
          test::to_device(memory_layout(whole.q.download(), c.batch, c.T, M, ld, false));
      DeviceBuffer<float> k =
          test::to_device(memory_layout(whole.k.download(), c.batch, c.T, M, ld, true));
      DeviceBuffer<float> v =
          test::to_device(memory_layout(whole.v.download(), c.batch, c.T, M, ld, true));
      a.q = q.data();
      a.k = k.data();
      a.v = v.data();
      a.memory_len = M;
      if (m.relative) a.rel_scores = rel_segment.data();
      for (const int64_t budget : {a.scratch_budget_bytes, int64_t{1}}) {  // 1: a segment a launch
        a.scratch_budget_bytes = budget;
        const auto got =
            backward_with_relative(a, memory_layout(dout, c.batch, c.T, M, ld, false), *ex);
        const char* names[] = {"output", "dq", "dv", "dk", "relative scores' gradient"};
        for (size_t i = 0; i < got.size(); ++i) {
          if (i == 4 && !m.relative) continue;
          const std::vector<float> expected =
              i == 4   ? memory_layout(want[i], blocks, c.T, M, rel_len, false)
              : i <= 1 ? memory_layout(want[i], c.batch, c.T, M, ld, false)
                       : memory_layout(want[i], c.batch, c.T, M, ld, true);
          ASSERT_EQ(got[i].size(), expected.size()) << what << ": " << names[i];
          EXPECT_LT(relative_max_error(got[i], expected), 1e-6)
              << what << " budget " << budget << ": " << names[i];
        }
      }
    }
  }
}

// A dropout mask that is not replayed exactly would show as a gradient mismatch above; this
// checks the test can see it: another dropout stream changes the outputs.
TEST(FusedAttention, DropoutStreamChangesTheOutput) {
  Case c;
  c.keep = 0.7f;
  const Problem p(c);
  Problem other(c);
  other.c.seed = c.seed;  // same inputs
  ChunkedAttentionArgs a = other.args();
  a.dropout.stream.step += 1;
  DeviceBuffer<float> out(cpu(), c.rows() * c.ld());
  Workspace ws(cpu());
  chunked_attention_forward(cpu(), ws, a, out.data(), c.ld());
  EXPECT_GT(test::max_abs_diff(out.download(), fused_forward(p)), 1e-3f);
}

}  // namespace
}  // namespace rf
