#include "trainer/hf_config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"

namespace rf {
namespace {

using Json = nlohmann::json;

// This program's layer norms (HF's layer_norm_eps must equal it).
constexpr double kLayerNormEps = 1e-6;
// The largest train.seq_len and model.axial_shape entry the config accepts
// (trainer/config_schema.cpp); the mapping multiplies and doubles such values.
constexpr int64_t kMaxSeqLen = int64_t{1} << 30;
constexpr int64_t kMaxAxialExtent = int64_t{1} << 24;

// ReformerConfig's defaults (transformers 4.36) for the keys the mapping reads: a config.json
// written by save_pretrained holds only the keys that differ from these.
Json reformer_config_defaults() {
  return Json{{"attention_head_size", 64},
              {"attn_layers", {"local", "lsh", "local", "lsh", "local", "lsh"}},
              {"axial_pos_embds", true},
              {"axial_pos_shape", {64, 64}},
              {"axial_pos_embds_dim", {64, 192}},
              {"feed_forward_size", 512},
              {"hidden_act", "relu"},
              {"hidden_dropout_prob", 0.05},
              {"hidden_size", 256},
              {"is_decoder", false},
              {"layer_norm_eps", 1e-12},
              {"local_attention_probs_dropout_prob", 0.05},
              {"local_attn_chunk_length", 64},
              {"local_num_chunks_after", 0},
              {"local_num_chunks_before", 1},
              {"lsh_attention_probs_dropout_prob", 0.0},
              {"lsh_attn_chunk_length", 64},
              {"lsh_num_chunks_after", 0},
              {"lsh_num_chunks_before", 1},
              {"max_position_embeddings", 4096},
              {"num_attention_heads", 12},
              {"num_buckets", nullptr},
              {"num_hashes", 1},
              {"vocab_size", 320}};
}

std::string yaml_list(const std::vector<int64_t>& v) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < v.size(); ++i) out << (i ? "," : "") << v[i];
  out << "]";
  return out.str();
}

// Reads config.json's keys with ReformerConfig's defaults behind them; every wrong type or value is
// an error naming the key and the file.
class HfConfigReader {
 public:
  HfConfigReader(const std::string& text, const std::string& where) : where_(where) {
    try {
      json_ = Json::parse(text);
    } catch (const Json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      fail("'", where, "' is not JSON (", e.what(), ")");
    }
    if (!json_.is_object()) fail("'", where, "' is not a JSON object");
    defaults_ = reformer_config_defaults();
  }
  // config.json's value of `key`, else ReformerConfig's default, else null (model_type has no
  // default: indexing a const Json by a missing key is undefined behaviour, found by fuzzing).
  const Json& value(const std::string& key) const {
    static const Json kMissing;
    if (const auto it = json_.find(key); it != json_.end()) return *it;
    if (const auto it = defaults_.find(key); it != defaults_.end()) return *it;
    return kMissing;
  }
  // `max` bounds what the mapping multiplies (sequence lengths), so that no product of values of
  // the file can overflow before the config's own range checks see it.
  int64_t positive_int(const std::string& key, int64_t max = kNoLimit) const {
    const Json& v = value(key);
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > max)
      fail(where_, ": ", key, " is ", v.dump(), ", expected a positive integer", limit_text(max));
    return v.get<int64_t>();
  }
  std::vector<int64_t> int_list(const std::string& key, size_t size, int64_t max = kNoLimit) const {
    const Json& v = value(key);
    std::vector<int64_t> out;
    if (v.is_array() && v.size() == size)
      for (const Json& e : v)
        if (e.is_number_integer() && e.get<int64_t>() > 0 && e.get<int64_t>() <= max)
          out.push_back(e.get<int64_t>());
    if (out.size() != size)
      fail(where_, ": ", key, " is ", v.dump(), ", expected ", size, " positive integers",
           limit_text(max));
    return out;
  }
  double number(const std::string& key) const {
    const Json& v = value(key);
    if (!v.is_number()) fail(where_, ": ", key, " is ", v.dump(), ", expected a number");
    return v.get<double>();
  }
  bool boolean(const std::string& key) const {
    const Json& v = value(key);
    if (!v.is_boolean()) fail(where_, ": ", key, " is ", v.dump(), ", expected true or false");
    return v.get<bool>();
  }
  std::string string(const std::string& key) const {
    const Json& v = value(key);
    if (!v.is_string()) fail(where_, ": ", key, " is ", v.dump(), ", expected a string");
    return v.get<std::string>();
  }
  // A key whose value must be `expected` for the model to be this program's.
  void require(const std::string& key, const Json& expected, const std::string& why) const {
    if (value(key) != expected)
      fail(where_, ": ", key, " is ", value(key).dump(), "; this program supports only ",
           expected.dump(), " (", why, ")");
  }
  const std::string& where() const { return where_; }

 private:
  static constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
  static std::string limit_text(int64_t max) {
    return max == kNoLimit ? "" : " up to " + std::to_string(max);
  }

  std::string where_;
  Json json_, defaults_;
};

// HF's own choice when num_buckets is null (ReformerAttention._set_num_buckets): a power of two
// near 2 * seq_len / chunk, factorised when above its limit.
std::vector<int64_t> hf_auto_buckets(int64_t seq_len, int64_t chunk, int64_t max_positions) {
  int bits = 0;
  for (int64_t v = 2 * (seq_len / chunk); v > 0; v >>= 1) ++bits;
  const int power = std::max(bits - 1, 0);
  const int64_t n = int64_t{1} << power;
  const int64_t chunks = max_positions / chunk;  // (whole chunks, as Hugging Face's `//`)
  const int64_t limit =
      2 * std::max<int64_t>(static_cast<int64_t>(std::sqrt(static_cast<double>(chunks))), chunk);
  if (n > limit) return {int64_t{1} << (power / 2), int64_t{1} << (power - power / 2)};
  return {n};
}

}  // namespace

std::string hf_config_json(const Config& cfg) {
  const ModelConfig& m = cfg.model;
  const int64_t T = cfg.train.seq_len;
  Json attn_layers = Json::array();
  bool has_lsh = false, has_local = false, has_dense = false;
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const AttentionKind kind = cfg.attention_of_layer(i);
    has_lsh |= kind == AttentionKind::kLsh;
    has_local |= kind == AttentionKind::kLocal;
    has_dense |= kind == AttentionKind::kDense;
    attn_layers.push_back(kind == AttentionKind::kLsh ? "lsh" : "local");
  }
  int64_t local_chunk = cfg.lsh.local_chunk;
  if (has_dense) {
    if (has_local && cfg.lsh.local_chunk != T)
      fail("model.attention mixes dense and local layers with lsh.local_chunk = ",
           cfg.lsh.local_chunk, ": Hugging Face's Reformer has one local chunk length and no ",
           "dense type (dense = local with chunk train.seq_len = ", T, ")");
    local_chunk = T;
  }
  if (m.position == PositionMode::kNone || m.position == PositionMode::kRelative)
    fail("model.position: ", m.position == PositionMode::kNone ? "none" : "relative",
         " has no Hugging Face equivalent (ReformerModel adds axial or learned positions to its "
         "input)");
  if (m.residual == ResidualMode::kSingle)
    fail("model.residual: single has no Hugging Face equivalent (ReformerModel's layers are ",
         "reversible over two streams)");
  Json c;
  c["architectures"] = {"ReformerModelWithLMHead"};
  c["model_type"] = "reformer";
  c["transformers_version"] = kHfTransformersVersion;
  c["attn_layers"] = attn_layers;
  c["vocab_size"] = m.vocab_size;
  c["hidden_size"] = m.d_model;
  c["num_attention_heads"] = m.n_heads;
  c["attention_head_size"] = m.d_head;
  c["feed_forward_size"] = m.d_ff;
  c["hidden_act"] = m.activation == Activation::kGelu ? "gelu_new" : "relu";  // (tanh GELU)
  c["layer_norm_eps"] = kLayerNormEps;
  c["is_decoder"] = true;
  c["tie_word_embeddings"] = false;
  c["chunk_size_lm_head"] = 0;
  c["chunk_size_feed_forward"] = 0;
  c["hidden_dropout_prob"] = m.dropout;
  c["lsh_attention_probs_dropout_prob"] = m.attention_dropout;
  c["local_attention_probs_dropout_prob"] = m.attention_dropout;
  c["lsh_attn_chunk_length"] = cfg.lsh.bucket_size;
  c["lsh_num_chunks_before"] = 1;
  c["lsh_num_chunks_after"] = 0;
  c["local_attn_chunk_length"] = local_chunk;
  c["local_num_chunks_before"] = 1;
  c["local_num_chunks_after"] = 0;
  c["num_hashes"] = cfg.lsh.n_hashes;
  const std::vector<int64_t> factors = cfg.bucket_factors();
  if (has_lsh)
    c["num_buckets"] = factors.size() == 1 ? Json(factors[0]) : Json(factors);
  else
    c["num_buckets"] = nullptr;
  c["max_position_embeddings"] = T;
  c["axial_pos_embds"] = m.position == PositionMode::kAxial;
  if (m.position == PositionMode::kAxial) {
    c["axial_pos_shape"] = m.axial_shape;
    c["axial_pos_embds_dim"] = cfg.axial_dims();
  }
  c["axial_norm_std"] = 1.0;
  c["pad_token_id"] = 0;
  c["eos_token_id"] = 2;
  c["use_cache"] = true;
  return c.dump(2) + "\n";
}

std::string hf_tokenizer_config_json(const Config& cfg) {
  Json c;
  c["tokenizer_class"] = "ReformerTokenizer";
  c["model_max_length"] = cfg.train.seq_len;
  c["eos_token"] = "</s>";
  c["unk_token"] = "<unk>";
  c["additional_special_tokens"] = Json::array();
  return c.dump(2) + "\n";
}

std::vector<std::string> overrides_from_hf_config(const std::string& json_text,
                                                  const std::string& where, std::ostream& notes) {
  const HfConfigReader hf(json_text, where);
  if (hf.value("model_type") != nullptr && hf.string("model_type") != "reformer")
    fail(where, ": model_type is '", hf.string("model_type"), "', expected 'reformer'");
  hf.require("is_decoder", true, "a causal language model");
  const std::string act = hf.string("hidden_act");
  if (act != "gelu_new" && act != "relu")
    fail(where, ": hidden_act is '", act, "'; this program has gelu_new (tanh GELU) and relu");
  if (std::abs(hf.number("layer_norm_eps") - kLayerNormEps) > 1e-12)
    fail(where, ": layer_norm_eps is ", hf.number("layer_norm_eps"),
         "; this program's layer norms use 1e-06");
  const Json& layers = hf.value("attn_layers");
  if (!layers.is_array() || layers.empty())
    fail(where, ": attn_layers is ", layers.dump(), ", expected a list of \"lsh\" and \"local\"");
  std::string attention = "[";
  bool has_lsh = false, has_local = false;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] != "lsh" && layers[i] != "local")
      fail(where, ": attn_layers[", i, "] is ", layers[i].dump(),
           "; expected \"lsh\" or \"local\"");
    has_lsh |= layers[i] == "lsh";
    has_local |= layers[i] == "local";
    attention += (i ? "," : "") + layers[i].get<std::string>();
  }
  attention += "]";
  if (has_lsh) {
    hf.require("lsh_num_chunks_before", 1, "LSH chunks attend to themselves and the one before");
    hf.require("lsh_num_chunks_after", 0, "LSH chunks attend to themselves and the one before");
  }
  if (has_local) {
    hf.require("local_num_chunks_before", 1,
               "local chunks attend to themselves and the one before");
    hf.require("local_num_chunks_after", 0, "local chunks attend to themselves and the one before");
  }
  const int64_t d_model = hf.positive_int("hidden_size");
  const int64_t max_positions = hf.positive_int("max_position_embeddings", kMaxSeqLen);
  const bool axial = hf.boolean("axial_pos_embds");
  std::vector<std::string> o = {
      "model.vocab_size=" + std::to_string(hf.positive_int("vocab_size")),
      "model.d_model=" + std::to_string(d_model),
      "model.d_ff=" + std::to_string(hf.positive_int("feed_forward_size")),
      "model.n_layers=" + std::to_string(layers.size()),
      "model.n_heads=" + std::to_string(hf.positive_int("num_attention_heads")),
      "model.d_head=" + std::to_string(hf.positive_int("attention_head_size")),
      "model.attention=" + attention,
      "model.activation=" + std::string(act == "relu" ? "relu" : "gelu"),
      "model.dropout=" + std::to_string(hf.number("hidden_dropout_prob")),
      "lsh.bucket_size=" + std::to_string(hf.positive_int("lsh_attn_chunk_length")),
      "lsh.local_chunk=" + std::to_string(hf.positive_int("local_attn_chunk_length")),
      "lsh.n_hashes=" + std::to_string(hf.positive_int("num_hashes"))};
  const double lsh_dropout = hf.number("lsh_attention_probs_dropout_prob");
  const double local_dropout = hf.number("local_attention_probs_dropout_prob");
  const double attention_dropout = has_lsh ? lsh_dropout : local_dropout;
  if (has_lsh && has_local && lsh_dropout != local_dropout)
    notes << "note: " << where << " has attention dropout " << lsh_dropout << " (lsh) and "
          << local_dropout
          << " (local); this program has one model.attention_dropout: " << attention_dropout
          << " (the weights are unaffected)\n";
  o.push_back("model.attention_dropout=" + std::to_string(attention_dropout));
  int64_t seq_len = max_positions;
  if (axial) {
    const std::vector<int64_t> shape = hf.int_list("axial_pos_shape", 2, kMaxAxialExtent);
    const std::vector<int64_t> dims = hf.int_list("axial_pos_embds_dim", 2);
    seq_len = shape[0] * shape[1];
    o.push_back("model.position=axial");
    o.push_back("model.axial_shape=" + yaml_list(shape));
    o.push_back("model.axial_dims=" + yaml_list(dims));
  } else {
    o.push_back("model.position=learned");
  }
  o.push_back("train.seq_len=" + std::to_string(seq_len));
  if (has_lsh && hf.value("hash_seed").is_number_integer())
    notes << "note: " << where << " sets hash_seed " << hf.value("hash_seed").dump()
          << ": transformers draws its LSH rotations from torch's generator seeded with it, this "
          << "program from train.seed, so where an LSH chunk is shorter than the sequence the "
          << "imported model hashes otherwise (the same weights; with hash_seed null transformers "
          << "draws new rotations at every call)\n";
  if (has_lsh) {
    const Json& buckets = hf.value("num_buckets");
    std::vector<int64_t> n;
    if (buckets.is_null())
      n = hf_auto_buckets(seq_len, hf.positive_int("lsh_attn_chunk_length"), max_positions);
    else if (buckets.is_number_integer())
      n = {hf.positive_int("num_buckets")};
    else if (buckets.is_array() && !buckets.empty())
      n = hf.int_list("num_buckets", buckets.size());
    else
      fail(where, ": num_buckets is ", buckets.dump(), ", expected null, an integer or factors");
    // (Config::bucket_factors splits a count above 128 as trax does, where it can.)
    int64_t f1 = 1;
    while (f1 * f1 < n.front()) f1 *= 2;
    if (buckets.is_number_integer() && n.front() > 128 && n.front() % f1 == 0 &&
        (n.front() / f1) % 2 == 0)
      notes << "note: " << where << " has num_buckets " << n.front()
            << ", which this program hashes as trax does, as " << f1 << " x " << n.front() / f1
            << " buckets of two rotations; transformers uses one rotation: another hash family "
            << "(the same weights)\n";
    o.push_back("lsh.n_buckets=" + yaml_list(n));
  }
  return o;
}

}  // namespace rf
