#include "trainer/hf_weights.h"

#include <set>

#include "base/error.h"

namespace rf {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// HF name of a layer norm's gamma ("weight") or beta ("bias") under `module`.
std::string norm_name(const std::string& module, const std::string& param) {
  return module + (param == "gamma" ? ".weight" : ".bias");
}

// Copies a row-major [rows, cols] matrix, transposing it when `transpose`.
void copy_matrix(const float* in, int64_t rows, int64_t cols, bool transpose, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      (transpose ? out[c * rows + r] : out[r * cols + c]) = in[r * cols + c];
}

}  // namespace

HfTensor hf_tensor_of(const ParamTensor& t) {
  HfTensor h;
  h.shape = t.shape;
  const std::string& n = t.name;
  auto linear = [&](const std::string& name) {
    h.name = name;
    h.transposed = true;
    h.shape = {t.shape[1], t.shape[0]};
  };
  if (n == "embedding.tokens") {
    h.name = "reformer.embeddings.word_embeddings.weight";
  } else if (n == "embedding.axial_a") {  // [n1, d1] broadcast over the second axis
    h.name = "reformer.embeddings.position_embeddings.weights.0";
    h.shape = {t.shape[0], 1, t.shape[1]};
  } else if (n == "embedding.axial_b") {
    h.name = "reformer.embeddings.position_embeddings.weights.1";
    h.shape = {1, t.shape[0], t.shape[1]};
  } else if (n == "embedding.positions") {
    h.name = "reformer.embeddings.position_embeddings.embedding.weight";
  } else if (n == "head.norm.gamma" || n == "head.norm.beta") {
    h.name = norm_name("reformer.encoder.layer_norm", n.substr(n.rfind('.') + 1));
  } else if (n == "head.w_out") {
    linear("lm_head.decoder.weight");
  } else if (n == "head.b_out") {
    h.name = "lm_head.decoder.bias";
    h.aliases = {"lm_head.bias"};  // tied in HF's ReformerOnlyLMHead
  } else if (n.rfind("layer", 0) == 0 && n.find('.') != std::string::npos) {
    const std::string layer = n.substr(5, n.find('.') - 5), rest = n.substr(n.find('.') + 1);
    const std::string base = "reformer.encoder.layers." + layer;
    const std::string param = rest.substr(rest.rfind('.') + 1);
    if (rest == "attention.norm.gamma" || rest == "attention.norm.beta")
      h.name = norm_name(base + ".attention.layer_norm", param);
    else if (rest == "attention.w_qk")
      linear(base + ".attention.self_attention.query_key.weight");
    else if (rest == "attention.w_q")
      linear(base + ".attention.self_attention.query.weight");
    else if (rest == "attention.w_k")
      linear(base + ".attention.self_attention.key.weight");
    else if (rest == "attention.w_v")
      linear(base + ".attention.self_attention.value.weight");
    else if (rest == "attention.w_o")
      linear(base + ".attention.output.dense.weight");
    else if (rest == "feed_forward.norm.gamma" || rest == "feed_forward.norm.beta")
      h.name = norm_name(base + ".feed_forward.layer_norm", param);
    else if (rest == "feed_forward.w1")
      linear(base + ".feed_forward.dense.dense.weight");
    else if (rest == "feed_forward.b1")
      h.name = base + ".feed_forward.dense.dense.bias";
    else if (rest == "feed_forward.w2")
      linear(base + ".feed_forward.output.dense.weight");
    else if (rest == "feed_forward.b2")
      h.name = base + ".feed_forward.output.dense.bias";
  }
  RF_CHECK(!h.name.empty(), "parameter '", n, "' has no Hugging Face name");
  return h;
}

std::vector<NamedTensor> hf_tensors(const ParamStore& store, const std::vector<float>& params) {
  std::vector<NamedTensor> out;
  for (const ParamTensor& t : store.tensors()) {
    const HfTensor h = hf_tensor_of(t);
    NamedTensor n;
    n.name = h.name;
    n.shape = h.shape;
    n.values.resize(t.count);
    const float* src = params.data() + t.offset;
    if (h.transposed)
      copy_matrix(src, t.shape[0], t.shape[1], true, n.values.data());
    else
      std::copy(src, src + t.count, n.values.begin());
    for (const std::string& alias : h.aliases) {
      NamedTensor a = n;
      a.name = alias;
      out.push_back(std::move(a));
    }
    out.push_back(std::move(n));
  }
  return out;
}

void params_from_hf_tensors(const ParamStore& store, const std::map<std::string, NamedTensor>& hf,
                            const std::string& where, std::vector<float>* params) {
  params->assign(store.size(), 0.0f);
  std::set<std::string> used;
  for (const ParamTensor& t : store.tensors()) {
    const HfTensor h = hf_tensor_of(t);
    // The tensor under its name or a tied alias (save_pretrained keeps one of tied copies).
    const NamedTensor* found = nullptr;
    std::vector<std::string> names = {h.name};
    names.insert(names.end(), h.aliases.begin(), h.aliases.end());
    for (const std::string& name : names) {
      const auto it = hf.find(name);
      if (it == hf.end()) continue;
      used.insert(name);
      if (it->second.shape != h.shape)
        fail(where, ": tensor '", name, "' has shape ", shape_text(it->second.shape),
             ", the model of config.json needs ", shape_text(h.shape));
      if (found && found->values != it->second.values)
        fail(where, ": tied tensors '", found->name, "' and '", name, "' differ");
      found = &it->second;
    }
    if (!found)
      fail(where, ": tensor '", h.name, "' is missing (the model of config.json needs it, ",
           shape_text(h.shape), ")");
    float* dst = params->data() + t.offset;
    if (h.transposed)  // HF [out, in] -> [in, out]
      copy_matrix(found->values.data(), t.shape[1], t.shape[0], true, dst);
    else
      std::copy(found->values.begin(), found->values.end(), dst);
  }
  for (const auto& [name, tensor] : hf)
    if (!used.count(name))
      fail(where, ": tensor '", name, "' has no place in the model of config.json (",
           "a different architecture?)");
}

}  // namespace rf
