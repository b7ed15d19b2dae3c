// The parameters of this program's model under Hugging Face's ReformerModelWithLMHead names: each
// tensor's HF name, its shape there, and whether it is stored transposed (torch's Linear keeps
// [out, in], this program [in, out]).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "data/safetensors.h"
#include "trainer/params.h"

namespace rf {

struct HfTensor {
  std::string name;            // e.g. "reformer.encoder.layers.0.attention.output.dense.weight"
  std::vector<int64_t> shape;  // its shape in the HF model
  bool transposed = false;     // a Linear weight: HF holds the transpose
  std::vector<std::string> aliases;  // other HF names of the same tensor (tied parameters)
};

// The HF tensor of this program's parameter `t` (names as ParamStore declares them).
HfTensor hf_tensor_of(const ParamTensor& t);

// Every parameter as HF tensors (aliases included), from the host copy of the parameters.
std::vector<NamedTensor> hf_tensors(const ParamStore& store, const std::vector<float>& params);

// The inverse: fills `params` (host, store's layout) from HF tensors. A missing tensor, a wrong
// shape, tied copies that differ, or a tensor the model has no place for is an error naming it and
// `where`.
void params_from_hf_tensors(const ParamStore& store, const std::map<std::string, NamedTensor>& hf,
                            const std::string& where, std::vector<float>* params);

}  // namespace rf
