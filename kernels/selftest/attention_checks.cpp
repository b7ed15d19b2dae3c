// LSH bucketing and fused chunked attention: the hash (rotation fill, projection GEMM, argmax),
// the bucket sort, and the attention forward (output) and backward (the gradients of q, k and v,
// which run the forward, combine, query-gradient, key-gradient and ungather passes) over LSH,
// local and dense attention, with and without dropout, with a Transformer-XL memory (positions
// that are keys only) and relative scores (and their gradient), at sizes that are not multiples
// of the 64-slot tiles or the 16-float vectors; and the attention of new positions over a
// key/value cache (cached generation).
#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels/cached_attention.h"
#include "kernels/chunked_attention.h"
#include "kernels/lsh_buckets.h"
#include "kernels/selftest/op_checks.h"

namespace rf::selftest {
namespace {

// A rare bucket may legitimately flip where two projections tie to within rounding (the GPU's and
// the CPU's products round differently); a wrong kernel changes most of them. Projections at
// tf32 or bf16 move about 1% of the vectors into another bucket (measured: 0.5% at bf16).
constexpr double kBucketFlipTolerance = 2e-3;
constexpr double kReducedPrecisionBucketFlipTolerance = 5e-2;

void check_hash_and_sort(Checker& checker, int64_t batch, int64_t heads, int64_t seq_len, int64_t d,
                         int64_t rounds, BucketFactors factors, uint32_t seed,
                         GemmPrecision precision) {
  const int64_t segments = batch * heads, n = rounds * seq_len;
  HostTensors in;
  in.floats["qk"] = random_floats(batch * seq_len * heads * d, seed);
  in.ints["buckets"] = std::vector<int32_t>(segments * n, 0);
  std::string shape = shape_text({batch, heads, seq_len, d}) + " rounds " + std::to_string(rounds) +
                      " buckets " + std::to_string(factors.size[0]);
  for (int f = 1; f < factors.count; ++f) shape += "x" + std::to_string(factors.size[f]);
  const RngStream rotation = make_rng_stream(seed, RngPurpose::kRotation, 1, 2, 3, 0);
  checker.compare(
      "lsh_hash", shape, in, {"buckets"},
      [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
        LshHashArgs a;
        a.qk = t.f("qk");
        a.ld = heads * d;
        a.batch = batch;
        a.heads = heads;
        a.seq_len = seq_len;
        a.d = d;
        a.n_rounds = rounds;
        a.factors = factors;
        a.rotation = rotation;
        a.buckets = t.i("buckets");
        lsh_hash(ex, ws, a);
      },
      kFp32Tolerance,
      precision == GemmPrecision::kFp32 ? kBucketFlipTolerance
                                        : kReducedPrecisionBucketFlipTolerance);
  // The sort of given buckets is exact.
  HostTensors sort_in;
  const int32_t per_round = factors.n_buckets();
  std::vector<int32_t> buckets = random_ints(segments * n, seed + 1, per_round);
  for (int64_t i = 0; i < segments * n; ++i)
    buckets[i] += static_cast<int32_t>(i % n / seq_len) * per_round;
  sort_in.ints["buckets"] = buckets;
  sort_in.ints["perm"] = std::vector<int32_t>(segments * n, 0);
  sort_in.ints["undo"] = std::vector<int32_t>(segments * n, 0);
  checker.compare("lsh_sort", shape, sort_in, {"perm", "undo"},
                  [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
                    LshSortArgs a;
                    a.buckets = t.i("buckets");
                    a.perm = t.i("perm");
                    a.undo = t.i("undo");
                    a.segments = segments;
                    a.seq_len = seq_len;
                    a.n_rounds = rounds;
                    a.total_buckets = rounds * per_round;
                    lsh_sort(ex, ws, a);
                  });
}

struct AttentionShape {
  const char* kind;  // lsh | local | dense
  int64_t batch, heads, seq_len, d, rounds, chunk;
  float keep;
  int64_t memory = 0;  // leading positions of each sequence that are keys only
  // Transformer-XL's relative scores (local and dense): distances 0 .. rel_len - 1 get a term,
  // and keys more than max_distance back are masked (-1: none).
  int64_t rel_len = 0, max_distance = -1;
};

// A random permutation per segment (LSH: slots sorted by random buckets) and its inverse.
void random_sort(const AttentionShape& s, uint32_t seed, std::vector<int32_t>* perm,
                 std::vector<int32_t>* undo) {
  const int64_t n = s.rounds * s.seq_len, segments = s.batch * s.heads;
  perm->resize(segments * n);
  undo->resize(segments * n);
  const std::vector<int32_t> keys = random_ints(segments * n, seed, 8);
  for (int64_t g = 0; g < segments; ++g) {
    std::vector<std::pair<int64_t, int32_t>> order;
    order.reserve(n);
    for (int64_t i = 0; i < n; ++i)  // bucket (random, offset per round), then position
      order.push_back({(keys[g * n + i] + i / s.seq_len * 8) * s.seq_len + i % s.seq_len,
                       static_cast<int32_t>(i)});
    std::sort(order.begin(), order.end());
    for (int64_t j = 0; j < n; ++j) {
      (*perm)[g * n + j] = order[j].second;
      (*undo)[g * n + order[j].second] = static_cast<int32_t>(j);
    }
  }
}

// At tf32 or bf16 an executor may multiply attention tiles at that precision (the CPU's AMX
// tiles at bf16): each output may then be off by twice (in RMS) the error of a naive
// implementation at that precision against the fp32 reference: the reference functors with the
// inputs rounded and, at bf16, every operand of the window's products rounded as bf16 tiles round
// them (flash-attention's rule), and at least twice what one rounding of every output element
// costs (relative RMS u / sqrt(3), unit roundoff u = 2^-8 for bf16, 2^-11 for tf32): where
// scores are nearly one-hot, score gradients cancel and a different summation order alone moves
// the small results by that much. At fp32: nothing (empty: the fp32 tolerance).
std::map<std::string, double> reduced_precision_tolerances(
    Checker& checker, const HostTensors& in, const std::vector<std::string>& outputs,
    const std::function<Launch(bool)>& launch, GemmPrecision precision) {
  std::map<std::string, double> tolerances;
  if (precision == GemmPrecision::kFp32) return tolerances;
  HostTensors naive_in = in;
  for (const char* name : {"q", "k", "v", "dout"})
    naive_in.floats[name] = rounded_to(in.floats.at(name), precision);
  const HostTensors exact = Checker::run(checker.reference(), in, launch(false));
  const HostTensors naive =
      Checker::run(checker.reference(), naive_in, launch(precision == GemmPrecision::kBf16));
  const double unit_roundoff = std::ldexp(1.0, precision == GemmPrecision::kBf16 ? -8 : -11);
  const double one_rounding = unit_roundoff * unit_roundoff / 3.0;
  for (const std::string& name : outputs) {
    const double naive_error = nmse(naive.floats.at(name), exact.floats.at(name));
    tolerances[name] = std::max(4.0 * std::max(naive_error, one_rounding), kFp32Tolerance);
  }
  return tolerances;
}

void check_attention(Checker& checker, const AttentionShape& s, uint32_t seed,
                     GemmPrecision precision) {
  const bool lsh = std::string(s.kind) == "lsh", dense = std::string(s.kind) == "dense";
  // With a memory, queries (and outputs) at the segment's positions only.
  const int64_t rows = s.batch * s.seq_len, query_rows = s.batch * (s.seq_len - s.memory);
  const int64_t ld = s.heads * s.d;
  HostTensors in;
  in.floats["q"] = random_floats(query_rows * ld, seed);
  in.floats["k"] = random_floats(rows * ld, seed + 1);
  in.floats["v"] = random_floats(rows * ld, seed + 2);
  in.floats["dout"] = random_floats(query_rows * ld, seed + 3);
  in.floats["out"] = std::vector<float>(query_rows * ld, 0.0f);
  in.floats["dq"] = std::vector<float>(query_rows * ld, 0.0f);
  in.floats["dk"] = std::vector<float>(rows * ld, 0.0f);
  in.floats["dv"] = std::vector<float>(rows * ld, 0.0f);
  if (s.rel_len > 0) {  // [heads, query rows, rel_len], and its gradient
    in.floats["rel"] = random_floats(s.heads * query_rows * s.rel_len, seed + 5);
    in.floats["drel"] = std::vector<float>(s.heads * query_rows * s.rel_len, 0.0f);
  }
  if (lsh) {
    std::vector<int32_t> perm, undo;
    random_sort(s, seed + 4, &perm, &undo);
    in.ints["perm"] = perm;
    in.ints["undo"] = undo;
  }
  DropoutMask dropout;
  dropout.keep = s.keep;
  dropout.stream = make_rng_stream(seed, RngPurpose::kAttentionDropout, 1, 2, 0, 0);
  dropout.example_base = 4;
  auto args = [=](DeviceTensors& t, bool bf16_products) {
    ChunkedAttentionArgs a;
    a.bf16_products = bf16_products;
    a.q = t.f("q");
    a.k = lsh ? nullptr : t.f("k");
    a.v = t.f("v");
    a.ld = ld;
    a.perm = lsh ? t.i("perm") : nullptr;
    a.undo = lsh ? t.i("undo") : nullptr;
    a.batch = s.batch;
    a.heads = s.heads;
    a.seq_len = s.seq_len;
    a.d = s.d;
    a.n_rounds = s.rounds;
    a.chunk = s.chunk;
    a.lookback = dense ? 0 : 1;
    a.key_scale = lsh ? 1.0f : 1.0f / std::sqrt(static_cast<float>(s.d));
    a.dropout = dropout;
    a.memory_len = s.memory;
    a.rel_scores = s.rel_len > 0 ? t.f("rel") : nullptr;
    a.rel_len = s.rel_len;
    a.max_distance = s.max_distance;
    return a;
  };
  const std::string shape =
      std::string(s.kind) + " " + shape_text({s.batch, s.heads, s.seq_len, s.d}) + " rounds " +
      std::to_string(s.rounds) + " chunk " + std::to_string(s.chunk) +
      (s.keep < 1 ? " dropout" : "") + (s.memory > 0 ? " memory " + std::to_string(s.memory) : "") +
      (s.rel_len > 0 ? " relative " + std::to_string(s.rel_len) : "") +
      (s.max_distance >= 0 ? " max distance " + std::to_string(s.max_distance) : "");
  // The launches, with or without bf16-rounded products (the naive bf16 reference), writing the
  // output and the projections' gradients in fp32 or (bf16_rows) rounded into the packed tensors
  // "<name>_bf16", as for products that take bf16 operands.
  const auto rows_bf16 = [](DeviceTensors& t, const std::string& name) {
    return reinterpret_cast<uint16_t*>(t.f(name + "_bf16"));
  };
  const auto forward_launch = [=](bool bf16_products, bool bf16_rows) -> Launch {
    return [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
      const ProductOperand out = bf16_rows ? ProductOperand{nullptr, rows_bf16(t, "out")}
                                           : ProductOperand{t.f("out"), nullptr};
      chunked_attention_forward(ex, ws, args(t, bf16_products), out, ld);
    };
  };
  const auto backward_launch = [=](bool bf16_products, bool bf16_rows) -> Launch {
    return [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
      ChunkedAttentionGrads g;
      g.dq = t.f("dq");
      g.dk = lsh ? nullptr : t.f("dk");
      g.dv = t.f("dv");
      g.ld = ld;
      g.rel_grads = s.rel_len > 0 ? t.f("drel") : nullptr;
      ProductOperand out{t.f("out"), nullptr};
      if (bf16_rows) {
        out = ProductOperand{nullptr, rows_bf16(t, "out")};
        g.dq_bf16 = rows_bf16(t, "dq");
        g.dk_bf16 = lsh ? nullptr : rows_bf16(t, "dk");
        g.dv_bf16 = rows_bf16(t, "dv");
      }
      chunked_attention_backward(ex, ws, args(t, bf16_products), t.f("dout"), ld, g, out, ld);
    };
  };
  const std::function<Launch(bool)> forward = [=](bool bf16) {
    return forward_launch(bf16, false);
  };
  const std::function<Launch(bool)> backward = [=](bool bf16) {
    return backward_launch(bf16, false);
  };
  // The outputs written in fp32 or bf16 rows, and the relative scores' gradient (fp32 only).
  std::vector<std::string> written = {"out", "dq", "dv"};
  if (!lsh) written.push_back("dk");
  std::vector<std::string> grads = written;
  if (s.rel_len > 0) grads.push_back("drel");
  checker.compare("attention forward", shape, in, {"out"}, forward(false), kFp32Tolerance, 0.0,
                  reduced_precision_tolerances(checker, in, {"out"}, forward, precision));
  checker.compare("attention backward", shape, in, grads, backward(false), kFp32Tolerance, 0.0,
                  reduced_precision_tolerances(checker, in, grads, backward, precision));
  if (!checker.candidate().gemm_takes_bf16_operands()) return;
  // The bf16 rows: the bits of the same launch's fp32 rows, rounded.
  HostTensors in_bf16 = in;
  for (const std::string& name : written)
    in_bf16.floats[name + "_bf16"] =
        packed_bf16({}, static_cast<int64_t>(in.floats.at(name).size()));
  checker.compare_bf16_rounding("attention forward (bf16 out)", shape, in_bf16, {"out"},
                                forward_launch(false, false), forward_launch(false, true));
  checker.compare_bf16_rounding("attention backward (bf16 out)", shape, in_bf16, written,
                                backward_launch(false, false), backward_launch(false, true));
}

// Attention of `queries` new positions from `first` over a cache of first + queries positions:
// dense (chunk 0) or local, with relative scores and a distance limit where given, or LSH's
// listed keys (window_len > 0: random positions up to each query's, a quarter of them -1).
struct CachedShape {
  int64_t heads, d, first, queries, chunk, rel_len, max_distance, window_len = 0;
};

void check_cached_attention(Checker& checker, const CachedShape& s, uint32_t seed) {
  const int64_t positions = s.first + s.queries, ld = s.heads * s.d;
  HostTensors in;
  in.floats["q"] = random_floats(s.queries * ld, seed);
  in.floats["k"] = random_floats(positions * ld, seed + 1);
  in.floats["v"] = random_floats(positions * ld, seed + 2);
  in.floats["rel"] = random_floats(s.heads * s.queries * std::max<int64_t>(1, s.rel_len), seed + 3);
  in.floats["out"] = std::vector<float>(s.queries * ld, 0.0f);
  if (s.window_len > 0) {
    std::vector<int32_t>& listed = in.ints["window"];
    listed = random_ints(s.queries * s.heads * s.window_len, seed + 4, 1 << 30);
    for (int64_t i = 0; i < static_cast<int64_t>(listed.size()); ++i) {
      const int64_t tq = s.first + i / (s.heads * s.window_len);
      listed[i] = listed[i] % 4 == 0 && i % s.window_len > 0
                      ? -1
                      : static_cast<int32_t>(listed[i] % (tq + 1));
    }
  }
  const std::string kind = s.window_len > 0 ? "lsh" : s.chunk > 0 ? "local" : "dense";
  const std::string shape = kind + " " + shape_text({s.heads, s.first, s.queries, s.d}) +
                            " chunk " + std::to_string(s.chunk) + " rel " +
                            std::to_string(s.rel_len) + " max " + std::to_string(s.max_distance);
  checker.compare("cached attention", shape, in, {"out"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    CachedAttentionParams p;
                    p.q = t.f("q");
                    p.k = t.f("k");
                    p.v = t.f("v");
                    p.ld = ld;
                    p.heads = s.heads;
                    p.d = s.d;
                    p.first = s.first;
                    p.queries = s.queries;
                    p.chunk = s.chunk;
                    p.key_scale = 1.0f / std::sqrt(static_cast<float>(s.d));
                    p.rel_scores = s.rel_len > 0 ? t.f("rel") : nullptr;
                    p.rel_len = s.rel_len;
                    p.max_distance = s.max_distance;
                    if (s.window_len > 0) {
                      p.window = t.i("window");
                      p.window_len = s.window_len;
                      p.shared_qk = true;
                    }
                    p.out = t.f("out");
                    p.ldo = ld;
                    cached_attention_forward(ex, p);
                  });
}

}  // namespace

void check_lsh_ops(Checker& checker, const SweepOptions& options) {
  BucketFactors one;
  one.size[0] = 16;
  BucketFactors two;
  two.count = 2;
  two.size[0] = 4;
  two.size[1] = 6;
  check_hash_and_sort(checker, 2, 3, 100, 16, 2, one, 3000, options.precision);
  if (options.quick) return;
  check_hash_and_sort(checker, 1, 1, 1, 8, 1, one, 3010, options.precision);
  check_hash_and_sort(checker, 1, 2, 300, 64, 3, two, 3020, options.precision);
  // Long enough that lsh_hash hashes two segments per launch (kHashBlockRows / 5462), in groups
  // that end inside an example's heads and start in the next example's.
  check_hash_and_sort(checker, 2, 3, kHashBlockRows / 3 + 1, 8, 1, one, 3030, options.precision);
}

void check_attention_ops(Checker& checker, const SweepOptions& options) {
  // The quick sweep (a GPU run's start-up check) includes a shape for each path of the GPU's
  // tiled kernels (head widths 32, 64, 128; LSH, local with its causal skip, dense without
  // look-back; chunks that are not a multiple of 32; a memory; relative scores and a distance
  // limit) as well as shapes they leave to the functors, and every variant they are compiled in
  // (attention_tile_launch.cuh: each width with and without score terms, and on tensor cores
  // with and without dropout; the emulation's tests check that each ran).
  std::vector<AttentionShape> shapes = {
      {"lsh", 2, 3, 64, 16, 2, 8, 1.0f},
      {"lsh", 1, 2, 128, 64, 2, 64, 0.8f},
      {"local", 2, 2, 96, 24, 1, 32, 1.0f},
      {"dense", 1, 2, 150, 70, 1, 150, 1.0f},
      {"local", 1, 2, 100, 32, 1, 50, 0.9f},
      {"dense", 1, 1, 40, 128, 1, 40, 1.0f},
      {"dense", 2, 2, 200, 32, 1, 200, 0.9f, 70},
      {"local", 2, 2, 192, 64, 1, 64, 1.0f, 100},
      // Transformer-XL's relative scores through the tiled kernels: local with a memory, dense
      // with terms for only the nearer distances and a distance limit.
      {"local", 2, 2, 96, 32, 1, 32, 0.9f, 16, 64},
      {"dense", 1, 2, 80, 64, 1, 80, 1.0f, 24, 40, 50},
      // The variants the shapes above leave out: width 32 without terms or dropout, and with
      // terms only; 64 with terms and dropout; 128 with dropout, with terms, with both.
      {"lsh", 1, 2, 64, 32, 2, 32, 1.0f},
      {"local", 1, 1, 64, 32, 1, 32, 1.0f, 0, 32, 40},
      {"dense", 1, 1, 64, 64, 1, 64, 0.9f, 0, 32},
      {"lsh", 1, 1, 64, 128, 2, 32, 0.9f},
      {"dense", 1, 1, 48, 128, 1, 48, 1.0f, 0, 24, 30},
      {"local", 1, 1, 64, 128, 1, 32, 0.9f, 0, 48}};
  if (!options.quick) {
    const std::vector<AttentionShape> more = {{"lsh", 1, 1, 2, 1, 1, 2, 1.0f},
                                              {"lsh", 1, 1, 21, 5, 3, 3, 0.75f},
                                              {"lsh", 1, 4, 256, 64, 2, 64, 1.0f},
                                              {"lsh", 2, 1, 130, 33, 2, 65, 1.0f},
                                              {"local", 1, 1, 192, 20, 1, 96, 0.6f},
                                              {"local", 1, 3, 256, 64, 1, 128, 1.0f},
                                              {"dense", 2, 1, 40, 12, 1, 40, 0.9f},
                                              {"lsh", 1, 2, 64, 256, 2, 32, 1.0f},
                                              {"lsh", 1, 2, 192, 128, 2, 48, 1.0f},
                                              {"dense", 1, 2, 96, 64, 1, 96, 0.9f},
                                              {"local", 3, 1, 90, 16, 1, 30, 0.8f, 45},
                                              {"dense", 1, 3, 160, 128, 1, 160, 1.0f, 128},
                                              {"dense", 2, 1, 48, 24, 1, 48, 0.8f, 0, 48, 20},
                                              {"local", 1, 2, 120, 128, 1, 40, 1.0f, 0, 80}};
    shapes.insert(shapes.end(), more.begin(), more.end());
  }
  uint32_t seed = 4000;
  for (const AttentionShape& s : shapes) check_attention(checker, s, seed += 10, options.precision);
  // Cached generation: one new token over a long cache, and a prompt's positions at once.
  std::vector<CachedShape> cached = {
      {4, 64, 1000, 1, 0, 1001, -1}, {2, 32, 64, 40, 32, 64, -1}, {2, 64, 700, 3, 0, 0, -1, 256}};
  if (!options.quick) {
    cached.push_back({3, 24, 300, 5, 0, 120, 200});
    cached.push_back({1, 128, 0, 70, 0, 0, -1});
    cached.push_back({3, 8, 0, 9, 0, 0, -1, 6});
  }
  for (const CachedShape& s : cached) check_cached_attention(checker, s, seed += 10);
}

void check_all_ops(Checker& checker, const SweepOptions& options) {
  check_gemm_ops(checker, options);
  check_row_ops(checker, options);
  check_lsh_ops(checker, options);
  check_attention_ops(checker, options);
}

}  // namespace rf::selftest
