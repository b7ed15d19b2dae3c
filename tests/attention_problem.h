// What the attention tests share (tests/chunked_attention_test.cpp,
// tests/fused_attention_test.cpp): a problem of random inputs and, for LSH, a random sort; the
// fused passes over it, and the unfused path they replaced, one (example, head) at a time, in the
// same layout.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/chunked_attention.h"
#include "kernels/lsh_buckets.h"
#include "tests/test_util.h"
#include "tests/unfused_attention.h"

namespace rf {
namespace attention_problem {

using test::cpu;

// One attention problem: inputs [batch * T, heads * d], sorted by random buckets when `lsh`.
struct Case {
  int64_t batch = 1, heads = 1, T = 32, d = 8, rounds = 1, chunk = 8, lookback = 1;
  bool lsh = true;    // shared QK, sorted by buckets; else separate keys in the original order
  float keep = 1.0f;  // attention dropout keep probability
  int buckets = 4;    // LSH buckets per round
  bool same_rounds = false;  // every round hashes like round 0
  uint32_t seed = 11;

  int64_t ld() const { return heads * d; }
  int64_t rows() const { return batch * T; }
  int64_t n_slots() const { return rounds * T; }
  std::string name() const {
    return std::string(lsh                           ? "lsh"
                       : chunk == T && lookback == 0 ? "dense"
                                                     : "local") +
           " B" + std::to_string(batch) + " H" + std::to_string(heads) + " T" + std::to_string(T) +
           " d" + std::to_string(d) + " r" + std::to_string(rounds) + " c" + std::to_string(chunk) +
           " lb" + std::to_string(lookback) + (keep < 1 ? " dropout" : "");
  }
};

inline DropoutMask attention_dropout(const Case& c) {
  DropoutMask m;
  m.keep = c.keep;
  m.stream = make_rng_stream(c.seed, RngPurpose::kAttentionDropout, 2, 3, 0, 0);
  m.example_base = 5;
  return m;
}

// Random inputs and (for LSH) a random sort, in executor memory.
struct Problem {
  explicit Problem(const Case& c)
      : c(c),
        q(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed))),
        k(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed + 1))),
        v(test::to_device(test::random_vector(c.rows() * c.ld(), c.seed + 2))) {
    if (!c.lsh) return;
    const int64_t segments = c.batch * c.heads;
    std::mt19937 gen(c.seed + 3);
    std::vector<int32_t> b(segments * c.n_slots());
    for (int64_t s = 0; s < segments; ++s)
      for (int64_t r = 0; r < c.rounds; ++r)
        for (int64_t t = 0; t < c.T; ++t) {
          const int64_t i = (s * c.rounds + r) * c.T + t;
          const int32_t bucket =
              c.same_rounds && r > 0 ? b[i - r * c.T] : static_cast<int32_t>(gen() % c.buckets);
          b[i] = bucket + static_cast<int32_t>(r * c.buckets);
        }
    buckets = test::to_device(b);
    perm = DeviceBuffer<int32_t>(cpu(), b.size());
    undo = DeviceBuffer<int32_t>(cpu(), b.size());
    Workspace ws(cpu());
    lsh_sort(cpu(), ws,
             test::sort_args(buckets.data(), perm.data(), undo.data(), segments, c.T, c.rounds,
                             c.buckets));
  }

  ChunkedAttentionArgs args() const {
    ChunkedAttentionArgs a;
    a.q = q.data();
    a.k = c.lsh ? nullptr : k.data();
    a.v = v.data();
    a.ld = c.ld();
    a.perm = c.lsh ? perm.data() : nullptr;
    a.undo = c.lsh ? undo.data() : nullptr;
    a.batch = c.batch;
    a.heads = c.heads;
    a.seq_len = c.T;
    a.d = c.d;
    a.n_rounds = c.rounds;
    a.chunk = c.chunk;
    a.lookback = c.lookback;
    a.key_scale = c.lsh ? 1.0f : 1.0f / std::sqrt(static_cast<float>(c.d));
    a.dropout = attention_dropout(c);
    return a;
  }

  Case c;
  DeviceBuffer<float> q, k, v;
  DeviceBuffer<int32_t> buckets, perm, undo;
};

inline std::vector<float> fused_forward(const Problem& p, Executor& ex = cpu()) {
  DeviceBuffer<float> out(ex, p.c.rows() * p.c.ld());
  Workspace ws(ex);
  chunked_attention_forward(ex, ws, p.args(), out.data(), p.c.ld());
  return out.download();
}

// Output, then the gradients of q, k (separate keys only) and v, for output gradient `dout`.
inline std::vector<std::vector<float>> fused_backward(const Problem& p,
                                                      const std::vector<float>& dout,
                                                      Executor& ex = cpu()) {
  const int64_t n = p.c.rows() * p.c.ld();
  DeviceBuffer<float> out(ex, n), dq(ex, n), dk(ex, n), dv(ex, n);
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(ex);
  chunked_attention_backward(ex, ws, p.args(), g.data(), p.c.ld(),
                             {dq.data(), p.c.lsh ? nullptr : dk.data(), dv.data(), p.c.ld()},
                             out.data(), p.c.ld());
  std::vector<std::vector<float>> r = {out.download(), dq.download(), dv.download()};
  if (!p.c.lsh) r.push_back(dk.download());
  return r;
}

// The unfused path, one (example, head) at a time, in the same layout.
inline unfused::HeadAttentionSpec unfused_spec(const Case& c, int64_t b, int64_t h) {
  unfused::HeadAttentionSpec s;
  s.layout = {c.T, c.n_slots(), c.chunk, c.lookback};
  s.n_rounds = c.rounds;
  s.d = c.d;
  s.shared_qk = c.lsh;
  s.key_scale = c.lsh ? 1.0f : 1.0f / std::sqrt(static_cast<float>(c.d));
  s.dropout = attention_dropout(c);
  s.dropout.example_base += static_cast<uint32_t>(b);
  s.dropout.stream.head = static_cast<uint32_t>(h);
  s.dropout.seq_len = c.n_slots();
  s.dropout.cols = s.layout.window();
  return s;
}

inline unfused::HeadInputs unfused_inputs(const Problem& p, int64_t b, int64_t h) {
  const Case& c = p.c;
  const int64_t offset = b * c.T * c.ld() + h * c.d;
  unfused::HeadInputs in;
  in.q = p.q.data() + offset;
  in.k = p.k.data() + offset;
  in.v = p.v.data() + offset;
  in.ldq = in.ldk = in.ldv = c.ld();
  if (c.lsh) {
    in.perm = p.perm.data() + (b * c.heads + h) * c.n_slots();
    in.undo = p.undo.data() + (b * c.heads + h) * c.n_slots();
  }
  return in;
}

inline std::vector<std::vector<float>> unfused_backward(const Problem& p,
                                                        const std::vector<float>& dout) {
  const Case& c = p.c;
  const int64_t n = c.rows() * c.ld();
  DeviceBuffer<float> out(cpu(), n), dq(cpu(), n), dk(cpu(), n), dv(cpu(), n);
  DeviceBuffer<float> g = test::to_device(dout);
  Workspace ws(cpu());
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t offset = b * c.T * c.ld() + h * c.d;
      unfused::chunked_attention_backward(
          cpu(), ws, unfused_spec(c, b, h), unfused_inputs(p, b, h), g.data() + offset, c.ld(),
          {dq.data() + offset, dk.data() + offset, dv.data() + offset, c.ld()}, out.data() + offset,
          c.ld());
    }
  std::vector<std::vector<float>> r = {out.download(), dq.download(), dv.download()};
  if (!c.lsh) r.push_back(dk.download());
  return r;
}

}  // namespace attention_problem
}  // namespace rf
