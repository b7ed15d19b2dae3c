// Transformer-XL's relative attention sublayer against its definition (Dai et al. 2019, eq. 4),
// computed directly per (query, key) pair in double: the score of query i and key j <= i is
//   ((q_i + u) . k_j + (q_i + v) . W_R^T R_{min(i - j, clamp_len)}) / sqrt(d_head),
// R_d the sinusoid [sin(d f_0..), cos(d f_0..)], f_c = 10000^(-2c / d_model). This checks the
// relative shift (the attention reading the per-distance scores at i - j), the sinusoids and
// clamp_len through the layer's own parameters; the gradients are checked in layers_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "tests/model_fixture.h"
#include "trainer/attention_layer.h"

namespace rf {
namespace {

using test::cpu;

struct Tensors {
  std::map<std::string, std::vector<float>> by_name;
  const std::vector<float>& operator[](const std::string& name) const { return by_name.at(name); }
};

// Every parameter of `store`, randomised (u and v included, so that they matter), by name.
Tensors randomise(ParamStore& store) {
  std::vector<float> all = test::random_vector(store.size(), 31, 0.5f);
  cpu().upload(store.params(), all.data(), all.size() * sizeof(float));
  Tensors t;
  for (const ParamTensor& p : store.tensors()) {
    const std::string name = p.name.substr(p.name.rfind('.') + 1);
    t.by_name[name].assign(all.begin() + static_cast<std::ptrdiff_t>(p.offset),
                           all.begin() + static_cast<std::ptrdiff_t>(p.offset + p.count));
  }
  return t;
}

// x [rows, n_in] w [n_in, n_out] in double.
std::vector<double> product(const std::vector<float>& x, const std::vector<float>& w, int64_t rows,
                            int64_t n_in, int64_t n_out) {
  std::vector<double> y(rows * n_out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t o = 0; o < n_out; ++o)
        y[r * n_out + o] += double{x[r * n_in + i]} * w[i * n_out + o];
  return y;
}

struct Shape {
  int64_t batch, T, D, H, dh, chunk, clamp;
  bool local;
};

// The sublayer's output [batch * T, D] from the definition; `relative` false drops the
// position term (to show it matters).
std::vector<double> direct(const Shape& s, const std::vector<float>& x, const Tensors& w,
                           bool relative) {
  const int64_t hd = s.H * s.dh, rows = s.batch * s.T;
  const auto q = product(x, w["w_q"], rows, s.D, hd), k = product(x, w["w_k"], rows, s.D, hd);
  const auto v = product(x, w["w_v"], rows, s.D, hd);
  // r_d = R_d W_R for every distance.
  std::vector<double> r(s.T * hd, 0.0);
  for (int64_t d = 0; d < s.T; ++d) {
    const int64_t dist = s.clamp > 0 ? std::min(d, s.clamp) : d;
    for (int64_t c = 0; c < s.D; ++c) {
      const int64_t f = c < s.D / 2 ? c : c - s.D / 2;
      const double angle =
          static_cast<double>(dist) *
          std::pow(10000.0, -2.0 * static_cast<double>(f) / static_cast<double>(s.D));
      const double emb = c < s.D / 2 ? std::sin(angle) : std::cos(angle);
      for (int64_t o = 0; o < hd; ++o) r[d * hd + o] += emb * w["w_r"][c * hd + o];
    }
  }
  std::vector<float> heads(rows * hd);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < s.T; ++i) {
        std::vector<double> p(s.T, -1e300);
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          if (s.local && j / s.chunk + 1 < i / s.chunk) continue;  // before the look-back chunk
          double score = 0;
          for (int64_t c = 0; c < s.dh; ++c) {
            const int64_t col = h * s.dh + c;
            const double qi = q[(b * s.T + i) * hd + col];
            score += (qi + w["r_w_bias"][col]) * k[(b * s.T + j) * hd + col];
            if (relative) score += (qi + w["r_r_bias"][col]) * r[(i - j) * hd + col];
          }
          p[j] = score / std::sqrt(static_cast<double>(s.dh));
          mx = std::max(mx, p[j]);
        }
        double z = 0;
        for (int64_t j = 0; j <= i; ++j)
          z += p[j] > -1e299 ? (p[j] = std::exp(p[j] - mx)) : (p[j] = 0);
        for (int64_t c = 0; c < s.dh; ++c) {
          double o = 0;
          for (int64_t j = 0; j <= i; ++j) o += p[j] / z * v[(b * s.T + j) * hd + h * s.dh + c];
          heads[(b * s.T + i) * hd + h * s.dh + c] = static_cast<float>(o);
        }
      }
  return product(heads, w["w_o"], rows, hd, s.D);
}

void expect_definition(const std::string& kind, int64_t clamp) {
  const Config cfg = test::tiny_config({"model.attention=[" + kind + "]", "model.position=relative",
                                        "model.clamp_len=" + std::to_string(clamp),
                                        "model.attention_dropout=0.0"});
  const Shape s{cfg.train.batch_size,
                cfg.train.seq_len,
                cfg.model.d_model,
                cfg.model.n_heads,
                cfg.model.d_head,
                cfg.lsh.local_chunk,
                clamp,
                kind == "local"};
  ParamStore store;
  store.begin_group("test");
  AttentionLayer layer(store, cfg, 0, "attention");
  store.allocate(cpu());
  store.initialize(cpu(), 3);
  const Tensors w = randomise(store);
  const std::vector<float> x = test::random_vector(s.batch * s.T * s.D, 5);
  auto x_dev = test::to_device(x);
  DeviceBuffer<float> out(cpu(), x.size());
  Workspace ws(cpu());
  Kit kit{cpu(), ws};
  StepContext step;
  step.batch = s.batch;
  step.seq_len = s.T;
  layer.forward(kit, store, step, matrix(x_dev.data(), s.batch * s.T, s.D), out.data(),
                Write::kOverwrite, nullptr, false);
  const std::vector<float> got = out.download();
  const std::vector<double> want = direct(s, x, w, true), plain = direct(s, x, w, false);
  double worst = 0, scale = 1e-30, position_term = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
    position_term = std::max(position_term, std::fabs(want[i] - plain[i]));
  }
  EXPECT_LT(worst / scale, 1e-5) << kind << " clamp " << clamp;
  EXPECT_GT(position_term / scale, 1e-2) << "the position term should change the output";
}

TEST(RelativePositions, DenseLayerEqualsTheDefinition) {
  expect_definition("dense", 0);
}
TEST(RelativePositions, LocalLayerEqualsTheDefinition) {
  expect_definition("local", 0);
}
TEST(RelativePositions, ClampLenSharesTheEncodingOfFartherDistances) {
  expect_definition("dense", 5);
  expect_definition("local", 3);
}

// LSH layers take no relative term: beside dense or local layers (the hybrid, tiny_config's
// [lsh, local]) they are accepted (model_test checks that model's gradients); a model of LSH
// layers alone would have no position anywhere and is refused, naming what to do.
TEST(RelativePositions, LshLayersAloneAreRefusedWithAClearError) {
  EXPECT_EQ(test::tiny_config({"model.position=relative"}).model.position, PositionMode::kRelative);
  try {
    test::tiny_config({"model.position=relative", "model.attention=[lsh]"});
    FAIL() << "relative positions with LSH layers alone were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.position = relative needs dense or local layers, "
                                         "but every layer of model.attention is lsh"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace rf
