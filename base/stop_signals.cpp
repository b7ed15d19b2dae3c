#include "base/stop_signals.h"

#include <csignal>

namespace rf {

StopSignals g_stop_signals;

std::string signal_name(int signal_number) {
  switch (signal_number) {
    case 0:
      return "";
    case SIGTERM:
      return "SIGTERM";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGINT:
      return "SIGINT";
    default:
      return "signal " + std::to_string(signal_number);
  }
}

}  // namespace rf
