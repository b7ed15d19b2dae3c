// Element-wise and row-wise launchers: layer norm (forward, backward with its parameter
// gradients), the feed-forward activation and its gradient, residual adds and dropouts, column sums
// and the sum of squares, cross-entropy, the embedding and its table gradients, AdamW, and the
// flat ops (add, concatenate, split, fills). Dropout is on wherever an op takes it, so the Philox
// streams are compared too; and the host's masks drawn in SIMD runs against a block at a time.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "base/philox_batch.h"
#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/feed_forward_ops.h"
#include "kernels/layer_norm.h"
#include "kernels/reductions.h"
#include "kernels/residual.h"
#include "kernels/selftest/op_checks.h"

namespace rf::selftest {
namespace {

DropoutMask test_mask(int64_t seq_len, int64_t cols, float keep) {
  DropoutMask m;
  m.keep = keep;
  m.stream = make_rng_stream(5, RngPurpose::kFeedForwardDropout, 1, 2, 0, 0);
  m.example_base = 3;
  m.seq_len = seq_len;
  m.cols = cols;
  return m;
}

// (rows, cols) of the row-wise sweep: one row, odd widths, widths not a multiple of 16 or 32.
std::vector<std::pair<int64_t, int64_t>> row_shapes(bool quick) {
  if (quick) return {{70, 37}, {9, 256}};
  return {{1, 1}, {1, 37}, {7, 5}, {70, 37}, {130, 256}, {65, 1000}};
}

void check_layer_norm(Checker& checker, int64_t rows, int64_t cols, uint32_t seed) {
  HostTensors in;
  in.floats["x"] = random_floats(rows * cols, seed, 2.0f);
  in.floats["gamma"] = random_floats(cols, seed + 1);
  in.floats["beta"] = random_floats(cols, seed + 2);
  in.floats["y"] = std::vector<float>(rows * cols, 0.0f);
  in.floats["dy"] = random_floats(rows * cols, seed + 3);
  in.floats["dx"] = random_floats(rows * cols, seed + 4);
  in.floats["dgamma"] = random_floats(cols, seed + 5);
  in.floats["dbeta"] = random_floats(cols, seed + 6);
  const std::string shape = shape_text({rows, cols});
  // y in fp32, or rounded to bf16 into y_bf16 (for the products of an executor that takes bf16).
  const auto forward = [=](bool bf16) -> Launch {
    return [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
      LayerNormArgs a;
      a.x = t.f("x");
      a.gamma = t.f("gamma");
      a.beta = t.f("beta");
      a.y = t.f("y");
      if (bf16) a.y_bf16 = reinterpret_cast<uint16_t*>(t.f("y_bf16"));
      a.rows = rows;
      a.cols = cols;
      layer_norm_forward(ex, ws, a);
    };
  };
  checker.compare("layer_norm_forward", shape, in, {"y"}, forward(false));
  if (checker.candidate().gemm_takes_bf16_operands()) {
    in.floats["y_bf16"] = packed_bf16({}, rows * cols);
    checker.compare_bf16_output("layer_norm_forward (bf16 out)", shape, in, "y", forward(false),
                                "y_bf16", forward(true));
  }
  // dx in fp32, and with bf16 also rounded into dx_bf16 (for the products that read it next:
  // bit for bit the candidate's own fp32 dx rounded, as the products would round it).
  const auto backward = [=](Write write, bool bf16) -> Launch {
    return [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
      LayerNormBackwardArgs a;
      a.x = t.f("x");
      a.gamma = t.f("gamma");
      a.dy = t.f("dy");
      a.dx = t.f("dx");
      if (bf16) a.dx_bf16 = reinterpret_cast<uint16_t*>(t.f("dx_bf16"));
      a.dgamma = t.f("dgamma");
      a.dbeta = t.f("dbeta");
      a.rows = rows;
      a.cols = cols;
      a.write_dx = write;
      layer_norm_backward(ex, ws, a);
    };
  };
  for (Write write : {Write::kOverwrite, Write::kAccumulate}) {
    const bool add = write == Write::kAccumulate;
    checker.compare(add ? "layer_norm_backward (accumulate)" : "layer_norm_backward", shape, in,
                    {"dx", "dgamma", "dbeta"}, backward(write, false));
    if (!checker.candidate().gemm_takes_bf16_operands()) continue;
    in.floats["dx_bf16"] = packed_bf16({}, rows * cols);
    checker.compare_bf16_rounding(
        add ? "layer_norm_backward (+=, bf16 out)" : "layer_norm_backward (bf16 out)", shape, in,
        {"dx"}, backward(write, false), backward(write, true));
  }
}

void check_activation(Checker& checker, int64_t rows, int64_t cols, uint32_t seed) {
  for (Activation act : {Activation::kGelu, Activation::kRelu})
    for (float keep : {1.0f, 0.8f}) {
      HostTensors in;
      in.floats["h"] = random_floats(rows * cols, seed, 2.0f);
      in.floats["a"] = std::vector<float>(rows * cols, 0.0f);
      in.floats["bias"] = random_floats(cols, seed + 1);
      in.floats["grad"] = random_floats(rows * cols, seed + 2);
      const std::string shape =
          shape_text({rows, cols}) + " " + activation_name(act) + (keep < 1 ? " dropout" : "");
      const DropoutMask mask = test_mask(rows, cols, keep);
      // a in fp32, or rounded to bf16 into a_bf16 (for the products of an executor that takes
      // bf16); the same for the gradient of activation_backward.
      const auto forward = [=](bool keep_derivative, bool bf16) -> Launch {
        return [=](Executor& ex, Workspace&, DeviceTensors& t) {
          BiasActivationArgs a;
          a.h = t.f("h");
          a.keep_derivative = keep_derivative;
          a.a = t.f("a");
          if (bf16) a.a_bf16 = reinterpret_cast<uint16_t*>(t.f("a_bf16"));
          a.bias = t.f("bias");
          a.rows = rows;
          a.cols = cols;
          a.activation = act;
          a.dropout = mask;
          bias_activation_forward(ex, a);
        };
      };
      const auto backward = [=](bool bf16) -> Launch {
        return [=](Executor& ex, Workspace&, DeviceTensors& t) {
          ActivationBackwardArgs a;
          a.grad = t.f("grad");
          if (bf16) a.grad_bf16 = reinterpret_cast<uint16_t*>(t.f("grad_bf16"));
          a.derivative = t.f("h");
          a.rows = rows;
          a.cols = cols;
          a.dropout = mask;
          activation_backward(ex, a);
        };
      };
      for (bool keep_derivative : {true, false})
        checker.compare("bias_activation_forward",
                        shape + (keep_derivative ? " keeping the derivative" : ""), in, {"h", "a"},
                        forward(keep_derivative, false));
      checker.compare("activation_backward", shape, in, {"grad"}, backward(false));
      if (!checker.candidate().gemm_takes_bf16_operands()) continue;
      in.floats["a_bf16"] = packed_bf16({}, rows * cols);
      in.floats["grad_bf16"] = packed_bf16({}, rows * cols);
      checker.compare_bf16_output("bias_activation_forward (bf16 out)", shape, in, "a",
                                  forward(true, false), "a_bf16", forward(true, true));
      checker.compare_bf16_output("activation_backward (bf16 out)", shape, in, "grad",
                                  backward(false), "grad_bf16", backward(true));
    }
}

void check_residual(Checker& checker, int64_t rows, int64_t cols, uint32_t seed) {
  for (bool bias : {false, true})
    for (float keep : {1.0f, 0.7f}) {
      HostTensors in;
      in.floats["residual"] = random_floats(rows * cols, seed);
      in.floats["t"] = random_floats(rows * cols, seed + 1);
      in.floats["bias"] = random_floats(cols, seed + 2);
      const DropoutMask mask = test_mask(rows, cols, keep);
      const std::string shape =
          shape_text({rows, cols}) + (bias ? " bias" : "") + (keep < 1 ? " dropout" : "");
      checker.compare("residual_add", shape, in, {"residual"},
                      [=](Executor& ex, Workspace&, DeviceTensors& t) {
                        ResidualAddArgs a;
                        a.residual = t.f("residual");
                        a.t = t.f("t");
                        a.bias = bias ? t.f("bias") : nullptr;
                        a.rows = rows;
                        a.cols = cols;
                        a.sign = -1.0f;
                        a.dropout = mask;
                        residual_add(ex, a);
                      });
      if (bias) continue;
      checker.compare(
          "dropout_backward", shape, in, {"t"}, [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
            const float* g = dropout_backward(ex, ws, t.f("residual"), rows, cols, mask, "g");
            ex.copy(t.f("t"), g, static_cast<size_t>(rows * cols) * sizeof(float));
          });
    }
}

void check_reductions(Checker& checker, int64_t rows, int64_t cols, uint32_t seed) {
  HostTensors in;
  in.floats["x"] = random_floats(rows * cols, seed);
  in.floats["sums"] = random_floats(cols, seed + 1);
  in.floats["norm"] = {0.0f, 0.0f, 0.0f};
  checker.compare("add_column_sums", shape_text({rows, cols}), in, {"sums"},
                  [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
                    add_column_sums(ex, ws, t.f("x"), rows, cols, t.f("sums"));
                  });
  // The norm, the clip factor (clipping at about half the norm of standard normal entries) and
  // the flag.
  const double clip = 0.5 * std::sqrt(static_cast<double>(rows * cols));
  checker.compare("gradient_norm", shape_text({rows * cols}), in, {"norm"},
                  [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
                    auto* result = ws.get<GradientNormResult>("selftest.norm", 1);
                    gradient_norm(ex, ws, t.f("x"), rows * cols, clip, result);
                    GradientNormResult r{};
                    ex.download(&r, result, sizeof(r));
                    const float values[3] = {static_cast<float>(r.norm), r.clip_scale,
                                             static_cast<float>(r.finite)};
                    ex.upload(t.f("norm"), values, sizeof(values));
                  });
}

// With `ties`, the logits are whole numbers 0-3 and the bias zero, so that most rows have several
// largest logits: the prediction must be the first of them, as the CPU's.
void check_cross_entropy(Checker& checker, int64_t rows, int64_t vocab, uint32_t seed) {
  for (const auto& variant : {std::pair{false, false}, {true, false}, {false, true}}) {
    // (Copies: C++17 lambdas cannot capture structured bindings.)
    const bool want_grad = variant.first, ties = variant.second;
    HostTensors in;
    in.floats["logits"] = random_floats(rows * vocab, seed, 3.0f);
    in.floats["bias"] = random_floats(vocab, seed + 1);
    if (ties) {
      for (float& z : in.floats["logits"]) z = std::min(3.0f, std::floor(std::fabs(z)));
      in.floats["bias"].assign(static_cast<size_t>(vocab), 0.0f);
    }
    in.floats["loss"] = std::vector<float>(rows, 0.0f);
    in.ints["targets"] = random_ints(rows, seed + 2, static_cast<int32_t>(vocab));
    in.ints["prediction"] = std::vector<int32_t>(rows, 0);
    checker.compare("cross_entropy",
                    shape_text({rows, vocab}) + (want_grad ? " grad" : "") + (ties ? " ties" : ""),
                    in, {"logits", "loss", "prediction"},
                    [=](Executor& ex, Workspace&, DeviceTensors& t) {
                      CrossEntropyArgs a;
                      a.logits = t.f("logits");
                      a.bias = t.f("bias");
                      a.targets = t.i("targets");
                      a.loss = t.f("loss");
                      a.prediction = t.i("prediction");
                      a.rows = rows;
                      a.vocab = vocab;
                      a.grad_scale = 0.5f;
                      a.want_grad = want_grad;
                      cross_entropy(ex, a);
                    });
  }
}

void check_embedding(Checker& checker, PositionKind kind, uint32_t seed) {
  const int64_t batch = 2, seq_len = 24, d_model = 10, vocab = 7, n1 = 4, n2 = 6, d1 = 4, d2 = 6;
  const int64_t rows = batch * seq_len;
  HostTensors in;
  in.ints["tokens"] = random_ints(rows, seed, static_cast<int32_t>(vocab));
  in.floats["table"] = random_floats(vocab * d_model, seed + 1);
  in.floats["axial_a"] = random_floats(n1 * d1, seed + 2);
  in.floats["axial_b"] = random_floats(n2 * d2, seed + 3);
  in.floats["learned"] = random_floats(seq_len * d_model, seed + 4);
  in.floats["out"] = std::vector<float>(rows * d_model, 0.0f);
  in.floats["dx"] = random_floats(rows * d_model, seed + 5);
  in.floats["dtable"] = random_floats(vocab * d_model, seed + 6);
  in.floats["daxial_a"] = random_floats(n1 * d1, seed + 7);
  in.floats["daxial_b"] = random_floats(n2 * d2, seed + 8);
  in.floats["dlearned"] = random_floats(seq_len * d_model, seed + 9);
  const char* names[] = {"none", "axial", "learned"};
  const std::string shape = shape_text({batch, seq_len, d_model}) + " positions " +
                            names[static_cast<int>(kind)] + " dropout";
  const DropoutMask mask = test_mask(seq_len, d_model, 0.9f);
  checker.compare("embedding_forward", shape, in, {"out"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    EmbeddingArgs a;
                    a.tokens = t.i("tokens");
                    a.table = t.f("table");
                    a.positions.kind = kind;
                    a.positions.axial_a = t.f("axial_a");
                    a.positions.axial_b = t.f("axial_b");
                    a.positions.learned = t.f("learned");
                    a.positions.n2 = n2;
                    a.positions.d1 = d1;
                    a.positions.d2 = d2;
                    a.out = t.f("out");
                    a.rows = rows;
                    a.seq_len = seq_len;
                    a.d_model = d_model;
                    a.dropout = mask;
                    embedding_forward(ex, a);
                  });
  const std::vector<int32_t> host_tokens = in.ints.at("tokens");
  checker.compare(
      "embedding_backward", shape, in, {"dx", "dtable", "daxial_a", "daxial_b", "dlearned"},
      [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
        EmbeddingBackwardArgs a;
        a.dx = t.f("dx");
        a.groups = group_rows_by_token(ex, ws, host_tokens.data(), batch * seq_len, vocab);
        a.dtable = t.f("dtable");
        a.positions.kind = kind;
        a.positions.axial_a = t.f("daxial_a");
        a.positions.axial_b = t.f("daxial_b");
        a.positions.learned = t.f("dlearned");
        a.positions.n1 = n1;
        a.positions.n2 = n2;
        a.positions.d1 = d1;
        a.positions.d2 = d2;
        a.batch = batch;
        a.seq_len = seq_len;
        a.d_model = d_model;
        a.vocab = vocab;
        a.dropout = mask;
        embedding_backward(ex, a);
      });
}

void check_adamw(Checker& checker, int64_t n, uint32_t seed) {
  HostTensors in;
  in.floats["param"] = random_floats(n, seed);
  in.floats["m"] = random_floats(n, seed + 1, 0.1f);
  std::vector<float> v = random_floats(n, seed + 2, 0.1f);
  for (float& x : v) x *= x;  // second moments are squares
  in.floats["v"] = v;
  in.floats["grad"] = random_floats(n, seed + 3);
  checker.compare("adamw_update", shape_text({n}), in, {"param", "m", "v"},
                  [=](Executor& ex, Workspace& ws, DeviceTensors& t) {
                    // Decay on two of every three parameters; the clip factor from the device.
                    std::vector<uint8_t> decay(static_cast<size_t>(n));
                    for (int64_t i = 0; i < n; ++i) decay[i] = i % 3 != 0;
                    auto* decay_mask = ws.get<uint8_t>("selftest.decay", decay.size());
                    ex.upload(decay_mask, decay.data(), decay.size());
                    const GradientNormResult norm{3.0, 0.7f, 1};
                    auto* device_norm = ws.get<GradientNormResult>("selftest.norm", 1);
                    ex.upload(device_norm, &norm, sizeof(norm));
                    const AdamWStepScalars scalars{1e-3f, 0.271f, 0.0589f};
                    auto* device_scalars = ws.get<AdamWStepScalars>("selftest.scalars", 1);
                    ex.upload(device_scalars, &scalars, sizeof(scalars));
                    AdamWArgs a;
                    a.param = t.f("param");
                    a.m = t.f("m");
                    a.v = t.f("v");
                    a.grad = t.f("grad");
                    a.decay = decay_mask;
                    a.norm = device_norm;
                    a.scalars = device_scalars;
                    a.count = n;
                    a.beta1 = 0.9f;
                    a.beta2 = 0.98f;
                    a.eps = 1e-9f;
                    a.weight_decay = 0.01f;
                    adamw_update(ex, a);
                  });
}

void check_flat_ops(Checker& checker, int64_t rows, int64_t cols, uint32_t seed) {
  HostTensors in;
  in.floats["a"] = random_floats(rows * cols, seed);
  in.floats["b"] = random_floats(rows * (cols + 3), seed + 1);
  in.floats["cat"] = random_floats(rows * (2 * cols + 3), seed + 2);
  in.floats["fill"] = std::vector<float>(rows * cols, 0.0f);
  const std::string shape = shape_text({rows, cols});
  checker.compare("add_scaled", shape, in, {"a"}, [=](Executor& ex, Workspace&, DeviceTensors& t) {
    add_scaled(ex, t.f("a"), t.f("b"), -0.5f, rows * cols);
  });
  checker.compare("concat_columns", shape, in, {"cat"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    concat_columns(ex, t.f("cat"), t.f("a"), t.f("b"), rows, cols, cols + 3);
                  });
  checker.compare("split_columns_add", shape, in, {"a", "b"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    split_columns_add(ex, t.f("a"), t.f("b"), t.f("cat"), rows, cols, cols + 3);
                  });
  checker.compare("add_row_bias", shape, in, {"a"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    add_row_bias(ex, t.f("a"), t.f("b"), rows, cols);
                  });
  const RngStream stream = make_rng_stream(seed, RngPurpose::kParamInit, 4, 0, 0, 0);
  checker.compare("fill_normal", shape, in, {"fill"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    fill_normal(ex, t.f("fill"), rows * cols, stream, 0.5f);
                  });
  checker.compare("fill_uniform", shape, in, {"fill"},
                  [=](Executor& ex, Workspace&, DeviceTensors& t) {
                    fill_uniform(ex, t.f("fill"), rows * cols, stream, -0.3f, 0.2f);
                  });
}

// The host's dropout masks, drawn a run at a time in SIMD registers (DropoutMask::for_each_scale
// on the host, base/philox_batch.h), against the same rows drawn a Philox block at a time as a
// GPU thread draws them (for_each_scale_by_block): exact, on whichever instruction set this build
// runs (philox_batch_isa). Made on the host whatever the candidate executor: every CPU op with
// dropout draws its masks this way, so the other checks compare it with itself.
void check_host_dropout_runs(Checker& checker, int64_t rows, int64_t cols) {
  const DropoutMask mask = test_mask(rows, cols, 0.9f);
  int64_t differing = 0, total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> runs(static_cast<size_t>(cols)), blocks(static_cast<size_t>(cols));
    mask.for_each_scale(r, 0, cols, [&](int64_t c, float scale) { runs[c] = scale; });
    mask.for_each_scale_by_block(mask.row_of(r), 0, cols,
                                 [&](int64_t c, float scale) { blocks[c] = scale; });
    for (int64_t c = 0; c < cols; ++c, ++total) differing += runs[c] != blocks[c];
  }
  Comparison c;
  c.op = std::string("dropout_mask_runs (host, ") + philox_batch_isa() + ")";
  c.shape = shape_text({rows, cols});
  c.output = "scales";
  c.error = total > 0 ? static_cast<double>(differing) / static_cast<double>(total) : 0.0;
  c.tolerance = 0.0;
  checker.record(c);
}

}  // namespace

void check_row_ops(Checker& checker, const SweepOptions& options) {
  uint32_t seed = 2000;
  for (const auto& [rows, cols] : row_shapes(options.quick)) {
    check_layer_norm(checker, rows, cols, seed += 10);
    check_activation(checker, rows, cols, seed += 10);
    check_residual(checker, rows, cols, seed += 10);
    check_reductions(checker, rows, cols, seed += 10);
    check_cross_entropy(checker, rows, cols, seed += 10);
    check_flat_ops(checker, rows, cols, seed += 10);
    check_host_dropout_runs(checker, rows, cols);
  }
  check_reductions(checker, 70000, 3, seed += 10);  // several blocks of the sum of squares
  for (PositionKind kind : {PositionKind::kNone, PositionKind::kAxial, PositionKind::kLearned})
    check_embedding(checker, kind, seed += 10);
  for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{10000}}) check_adamw(checker, n, seed += 10);
}

}  // namespace rf::selftest
