// The benchmarks' command lines (bench/command_line.h): values of each type, the defaults kept,
// and each rule's refusal as a message and a non-zero exit code.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bench/command_line.h"

namespace rf::bench {
namespace {

// parse() of `args` (after the program's name), with CLI11's messages in *err.
int parse(CommandLine& line, std::vector<std::string> args, std::string* err = nullptr) {
  args.insert(args.begin(), "bench");
  std::vector<char*> argv;
  argv.reserve(args.size());
  for (std::string& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  const int code = line.parse(static_cast<int>(argv.size()), argv.data());
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string error = testing::internal::GetCapturedStderr();
  if (err) *err = error + out;
  return code;
}

struct Options {
  int rounds = 5;
  int64_t seq_len = 4096;
  double timeout = 300;
  std::string device = "cpu";
  std::vector<std::string> sets;
  bool json = false;
};

void declare(CommandLine& line, Options& o) {
  line.option("--rounds", o.rounds, "rounds", in_range(1, 1000));
  line.option("--seq-len", o.seq_len, "positions", at_least(1));
  line.option("--timeout", o.timeout, "seconds");
  line.option("--device", o.device, "executor", one_of({"cpu", "cuda"}));
  line.option("--set", o.sets, "overrides");
  line.flag("--json", o.json, "JSON");
}

TEST(BenchCommandLine, ReadsEachTypeAndKeepsTheDefaultsOfWhatIsNotGiven) {
  Options o;
  CommandLine line("test");
  declare(line, o);
  EXPECT_EQ(parse(line, {"--rounds", "7", "--seq-len", "65536", "--set", "a=1", "--set", "b=2",
                         "--json"}),
            -1);
  EXPECT_EQ(o.rounds, 7);
  EXPECT_EQ(o.seq_len, 65536);
  EXPECT_EQ(o.timeout, 300);
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.sets, (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_TRUE(o.json);
}

TEST(BenchCommandLine, EachRuleRefusesWithAMessageAndANonZeroExit) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--rounds", "0"}, "--rounds: must be in [1, 1000], not 0"},
      {{"--rounds", "1001"}, "--rounds: must be in [1, 1000], not 1001"},
      {{"--seq-len", "0"}, "--seq-len: must be at least 1, not 0"},
      {{"--rounds", "x"}, "--rounds"},
      {{"--device", "tpu"}, "--device: tpu not in {cpu,cuda}"},
      {{"--no-such-option"}, "no-such-option"},
  };
  for (const auto& [args, message] : bad) {
    Options o;
    CommandLine line("test");
    declare(line, o);
    std::string err;
    EXPECT_GT(parse(line, args, &err), 0) << args[0];
    EXPECT_NE(err.find(message), std::string::npos) << err;
  }
  int needed = 0;
  CommandLine line("test");
  line.option("--config", needed, "config", required());
  std::string err;
  EXPECT_GT(parse(line, {}, &err), 0);
  EXPECT_NE(err.find("--config is required"), std::string::npos) << err;
}

TEST(BenchCommandLine, HelpPrintsTheOptionsAndExitsZero) {
  Options o;
  CommandLine line("times something");
  declare(line, o);
  std::string out;
  EXPECT_EQ(parse(line, {"--help"}, &out), 0);
  EXPECT_NE(out.find("times something"), std::string::npos) << out;
  EXPECT_NE(out.find("--rounds INT:in [1, 1000]"), std::string::npos) << out;
}

}  // namespace
}  // namespace rf::bench
