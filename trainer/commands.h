// The `reformer` command line: train, eval, generate and config subcommands (CLI11).
#pragma once

namespace rf {

// Parses the arguments and runs the subcommand; returns the process exit code. Errors are
// printed as one line on stderr with a non-zero exit code.
int run_command_line(int argc, char** argv);

}  // namespace rf
