// The `reformer` command.
#include "kernels/cpu/openblas_core.h"
#include "trainer/commands.h"

int main(int argc, char** argv) {
  rf::restart_without_openblas_fallback();
  return rf::run_command_line(argc, argv);
}
