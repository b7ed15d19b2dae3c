// Fuzzes the experiment-file loader (trainer/config.h) and its --set overrides. An input is an
// experiment file, optionally followed by a line "#--set" and then one override per line; that
// line is a YAML comment, so every input is also an experiment file on its own. A configuration
// that loads must load again from its resolved text (what checkpoints store) to the same text.
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "fuzz/fuzz_support.h"
#include "fuzz/targets.h"
#include "trainer/config.h"

namespace rf::fuzz {

void read_config_input(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string marker = "\n#--set\n";
  const size_t split = input.find(marker);
  std::vector<std::string> overrides;
  if (split != std::string::npos) {
    std::istringstream lines(input.substr(split + marker.size()));
    for (std::string line; std::getline(lines, line);) overrides.push_back(line);
  }
  std::string resolved;
  rf::fuzz::expect_success_or_error([&] {
    resolved = rf::load_config_text(input.substr(0, split), "fuzz.yaml", overrides).source_text;
  });
  if (resolved.empty()) return;
  try {
    if (rf::load_config_text(resolved, "resolved.yaml", {}).source_text != resolved) {
      std::fprintf(stderr, "rf fuzz: the resolved configuration reads back differently\n");
      std::abort();
    }
  } catch (const rf::Error& error) {
    std::fprintf(stderr, "rf fuzz: the resolved configuration does not load: %s\n", error.what());
    std::abort();
  }
}

}  // namespace rf::fuzz
