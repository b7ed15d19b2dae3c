// Fuzzes the Hugging Face config.json mapping (trainer/hf_config.h) as `reformer import` uses it:
// an input is a config.json; the overrides it maps to are loaded as an experiment.
#include <sstream>

#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"
#include "trainer/config.h"
#include "trainer/hf_config.h"

namespace rf::fuzz {

void read_hf_config_input(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  rf::fuzz::expect_success_or_error([&] {
    std::ostringstream notes;
    rf::load_config_text("", "config.json",
                         rf::overrides_from_hf_config(text, "config.json", notes));
  });
}

}  // namespace rf::fuzz
