#include "bench/command_line.h"

#include <CLI/CLI.hpp>
#include <cstdio>

namespace rf::bench {

struct CommandLine::Parser {
  explicit Parser(const std::string& description) : app(description) {}
  CLI::App app;
};

CommandLine::CommandLine(const std::string& description)
    : parser_(std::make_unique<Parser>(description)) {}

CommandLine::~CommandLine() = default;

namespace {

std::string number_text(double x) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.15g", x);
  return text;
}

// The option's rules as CLI11 checks ("--rounds: must be in [1, 1000], not 0").
void apply(CLI::Option* option, const OptionRules& rules) {
  if (rules.required) option->required();
  if (!rules.choices.empty()) option->check(CLI::IsMember(rules.choices));
  const double min = rules.min, max = rules.max;
  const bool has_min = min > -std::numeric_limits<double>::infinity();
  const bool has_max = max < std::numeric_limits<double>::infinity();
  if (!has_min && !has_max) return;
  const std::string range = has_min && has_max
                                ? "in [" + number_text(min) + ", " + number_text(max) + "]"
                            : has_min ? "at least " + number_text(min)
                                      : "at most " + number_text(max);
  option->check(CLI::Validator(
      [min, max, range](std::string& value) -> std::string {
        double x = 0;
        if (!CLI::detail::lexical_cast(value, x)) return "'" + value + "' is not a number";
        return x >= min && x <= max ? "" : "must be " + range + ", not " + value;
      },
      range));
}

}  // namespace

void CommandLine::option(const std::string& name, int& value, const std::string& help,
                         const OptionRules& rules) {
  apply(parser_->app.add_option(name, value, help), rules);
}

void CommandLine::option(const std::string& name, int64_t& value, const std::string& help,
                         const OptionRules& rules) {
  apply(parser_->app.add_option(name, value, help), rules);
}

void CommandLine::option(const std::string& name, double& value, const std::string& help,
                         const OptionRules& rules) {
  apply(parser_->app.add_option(name, value, help), rules);
}

void CommandLine::option(const std::string& name, std::string& value, const std::string& help,
                         const OptionRules& rules) {
  apply(parser_->app.add_option(name, value, help), rules);
}

void CommandLine::option(const std::string& name, std::vector<std::string>& values,
                         const std::string& help, const OptionRules& rules) {
  apply(parser_->app.add_option(name, values, help), rules);
}

void CommandLine::flag(const std::string& name, bool& value, const std::string& help) {
  parser_->app.add_flag(name, value, help);
}

int CommandLine::parse(int argc, char** argv) {
  try {
    parser_->app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return parser_->app.exit(e);
  }
  return -1;
}

}  // namespace rf::bench
