// Hugging Face's ReformerConfig (config.json of a ReformerModelWithLMHead directory) and this
// program's model config, both ways. Only what maps exactly is accepted: anything the other side
// cannot represent is a one-line rf::Error naming the setting.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace rf {

// The transformers release whose ReformerModelWithLMHead the export targets and was tested with.
constexpr const char* kHfTransformersVersion = "4.36.2";

// config.json for `cfg`'s model. Dense layers become local ones whose chunk is the whole sequence
// (HF has no dense type), which needs every local layer to have that chunk.
std::string hf_config_json(const Config& cfg);

// tokenizer_config.json beside an exported spiece.model: AutoTokenizer then picks
// ReformerTokenizer.
std::string hf_tokenizer_config_json(const Config& cfg);

// `--set` overrides (section.key=value) that give a config of this program the model of
// config.json's text (keys it omits take ReformerConfig's defaults, as transformers writes only
// the keys that differ from them). Settings that do not change the weights but differ between the
// two programs (dropout per attention type) are reported on `notes`. `where` names the file.
std::vector<std::string> overrides_from_hf_config(const std::string& json_text,
                                                  const std::string& where, std::ostream& notes);

}  // namespace rf
