// A benchmark's command line: CLI11 behind one compiled file (bench/command_line.cpp). Each file
// that includes CLI11's header spends ~14 CPU-s compiling it at -O3 (version 2.1, Debian's: the
// validators it defines as objects in the header are compiled again in every file), which in the
// five benchmarks that parsed their own options was ~65 CPU-s of every build.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rf::bench {

// What an option accepts besides its type's values.
struct OptionRules {
  bool required = false;
  std::vector<std::string> choices;  // when not empty, the only values accepted
  double min = -std::numeric_limits<double>::infinity();  // numbers: the closed range accepted
  double max = std::numeric_limits<double>::infinity();
};

// The rules the benchmarks use, by name.
inline OptionRules required() {
  OptionRules r;
  r.required = true;
  return r;
}
inline OptionRules one_of(std::vector<std::string> choices) {
  OptionRules r;
  r.choices = std::move(choices);
  return r;
}
inline OptionRules in_range(double min, double max) {
  OptionRules r;
  r.min = min;
  r.max = max;
  return r;
}
inline OptionRules at_least(double min) {
  OptionRules r;
  r.min = min;
  return r;
}

class CommandLine {
 public:
  explicit CommandLine(const std::string& description);
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // `--name VALUE` into `value`, which keeps its value when the option is not given.
  void option(const std::string& name, int& value, const std::string& help,
              const OptionRules& rules = {});
  void option(const std::string& name, int64_t& value, const std::string& help,
              const OptionRules& rules = {});
  void option(const std::string& name, double& value, const std::string& help,
              const OptionRules& rules = {});
  void option(const std::string& name, std::string& value, const std::string& help,
              const OptionRules& rules = {});
  // Every value given, in order (`--name A B` or `--name A --name B`).
  void option(const std::string& name, std::vector<std::string>& values, const std::string& help,
              const OptionRules& rules = {});
  // `--name` sets `value`.
  void flag(const std::string& name, bool& value, const std::string& help);

  // Reads argv. Returns -1 when the program should go on; otherwise the exit code to return, with
  // CLI11's message printed (the help, exit 0; or what is wrong with the command line).
  int parse(int argc, char** argv);

 private:
  struct Parser;
  std::unique_ptr<Parser> parser_;
};

}  // namespace rf::bench
