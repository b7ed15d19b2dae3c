#include "trainer/rank_agreement.h"

#include <algorithm>
#include <array>
#include <map>
#include <sstream>
#include <vector>

#include "base/error.h"
#include "base/fnv1a.h"
#include "trainer/job.h"

namespace rf {
namespace {

// Keys that may differ between ranks: paths that may be node-local, and per-host resources.
bool may_differ_between_ranks(const std::string& key) {
  static const std::array<const char*, 5> kRankLocal = {"train.out_dir", "data.train", "data.val",
                                                        "runtime.threads", "data.prefetch"};
  for (const char* k : kRankLocal)
    if (key == k) return true;
  return false;
}

// "section.key" -> value of each key line of a resolved config, in order of appearance.
std::vector<std::pair<std::string, std::string>> config_entries(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> entries;
  std::istringstream lines(text);
  std::string line, section;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (line[0] != ' ') {  // "model:"
      section = line.substr(0, colon);
      continue;
    }
    const size_t start = line.find_first_not_of(' ');
    const std::string key = section + "." + line.substr(start, colon - start);
    const size_t value = line.find_first_not_of(' ', colon + 1);
    entries.emplace_back(key, value == std::string::npos ? "" : line.substr(value));
  }
  return entries;
}

// Windows read per source to compare: enough to see a file that differs in more than a few
// places, few enough to cost nothing next to the start-up (hashing a whole corpus would not).
constexpr int64_t kSampledWindows = 64;

// A hash of what a window source yields: its size and kSampledWindows of its windows.
uint64_t windows_fingerprint(const WindowSource& source) {
  const std::array<int64_t, 2> size = {source.num_windows(), source.window_length()};
  uint64_t hash = fnv1a_bytes(kFnv1aOffsetBasis, reinterpret_cast<const uint8_t*>(size.data()),
                              static_cast<int64_t>(sizeof(size)));
  const int64_t n = source.num_windows();
  if (n <= 0) return hash;  // a synthetic stream: made from the config, which agrees already
  std::vector<int32_t> window(static_cast<size_t>(source.window_length()));
  const int64_t samples = std::min<int64_t>(n, kSampledWindows);
  for (int64_t i = 0; i < samples; ++i) {
    // evenly spread, the first and the last included
    source.read(samples > 1 ? i * (n - 1) / (samples - 1) : 0, window.data());
    hash = fnv1a_bytes(hash, reinterpret_cast<const uint8_t*>(window.data()),
                       static_cast<int64_t>(window.size() * sizeof(int32_t)));
  }
  return hash;
}

}  // namespace

std::string first_config_difference(const std::string& here, const std::string& on_root) {
  const auto mine = config_entries(here);
  std::map<std::string, std::string> root;
  for (const auto& [key, value] : config_entries(on_root)) root[key] = value;
  for (const auto& [key, value] : mine) {
    if (may_differ_between_ranks(key)) continue;
    const auto it = root.find(key);
    if (it == root.end()) return concat(key, ": ", value, " here, absent on rank 0");
    if (it->second != value) return concat(key, ": ", value, " here, ", it->second, " on rank 0");
  }
  // (Keys only rank 0 has: the same schema renders the same keys, but a build of other code
  // would not.)
  if (mine.size() != root.size()) return "another set of keys than on rank 0 (another build?)";
  return "";
}

void check_ranks_share_config(Communicator& comm, const Config& cfg) {
  const std::string on_root = broadcast_string(comm, cfg.source_text, 0);
  if (comm.is_root()) return;
  const std::string difference = first_config_difference(cfg.source_text, on_root);
  if (!difference.empty())
    fail("this rank's config differs from rank 0's at ", difference,
         "; every rank must be started with the same config file and --set options");
}

void check_ranks_share_options(Communicator& comm,
                               const std::vector<std::pair<std::string, int64_t>>& options) {
  std::vector<int64_t> on_root;
  on_root.reserve(options.size());
  for (const auto& option : options) on_root.push_back(option.second);
  comm.broadcast(on_root.data(), on_root.size(), DType::kInt64, 0);
  const auto said = [](int64_t value) {  // (-1: an option not given)
    return value < 0 ? std::string("not given") : concat(value);
  };
  for (size_t i = 0; i < options.size(); ++i)
    if (options[i].second != on_root[i])
      fail("this rank's ", options[i].first, " is ", said(options[i].second), ", rank 0's ",
           said(on_root[i]), "; every rank must be started with the same command line");
}

DataFingerprint data_fingerprint(const DataSources& data) {
  const auto& model = data.tokenizer_model;
  DataFingerprint f;
  f.train = static_cast<int64_t>(windows_fingerprint(*data.train));
  f.val = static_cast<int64_t>(windows_fingerprint(*data.val));
  f.tokenizer_model = static_cast<int64_t>(
      fnv1a_bytes(kFnv1aOffsetBasis, reinterpret_cast<const uint8_t*>(model.data()),
                  static_cast<int64_t>(model.size())));
  f.train_windows = data.train->num_windows();
  return f;
}

void check_ranks_share_data(Communicator& comm, const DataFingerprint& mine,
                            const DataSources& data) {
  std::array<int64_t, 4> root = {mine.train, mine.val, mine.tokenizer_model, mine.train_windows};
  comm.broadcast(root.data(), root.size(), DType::kInt64, 0);
  if (mine.train != root[0])
    fail("this rank's training data (", data.train->describe(), ") differs from rank 0's: ",
         mine.train_windows == root[3]
             ? "as many windows, other tokens"
             : concat(mine.train_windows, " windows here, ", root[3], " on rank 0"),
         "; every rank must read the same data.train");
  if (mine.val != root[1])
    fail("this rank's validation data differs from rank 0's (", data.val->describe(),
         "); every rank must read the same data.val");
  if (mine.tokenizer_model != root[2])
    fail("this rank's shards were tokenised with another SentencePiece model than rank 0's");
}

}  // namespace rf
