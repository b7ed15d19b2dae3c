// The `reformer` command.
#include "trainer/commands.h"

int main(int argc, char** argv) {
  return rf::run_command_line(argc, argv);
}
