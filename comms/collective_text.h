// How the communicators name their operations in error messages, so that the MPI and the NCCL
// communicator report a missing rank in the same words:
//   error: rank 3 (host node7): all-reduce of gradient bucket 'layer3' (123456 floats) at step 812
//   did not complete within 600 s; a rank has probably died or hung, or a host's network is down
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "comms/communicator.h"

namespace rf {

inline const char* dtype_name(DType type) {
  switch (type) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kUint8:
      return "uint8";
  }
  return "unknown";
}

// "3 float64 values"
inline std::string values_text(size_t count, DType type) {
  return std::to_string(count) + " " + dtype_name(type) + (count == 1 ? " value" : " values");
}

// "all-reduce of gradient bucket 'layer3' (123456 floats)"
inline std::string bucket_text(const std::string& label, size_t count) {
  return "all-reduce of gradient bucket '" + label + "' (" + std::to_string(count) +
         (count == 1 ? " float)" : " floats)");
}

// "5", "2.5": seconds as a person would write them.
inline std::string seconds_text(double seconds) {
  std::ostringstream text;
  text << seconds;
  return text.str();
}

// "rank 3 (host node7)": who reports, so that a job across machines says which one it was.
inline std::string rank_text(int rank, const std::string& host) {
  return "rank " + std::to_string(rank) + " (host " + host + ")";
}

// The deadline message without its "error: rank R (host H): " prefix; step < 0 means no step was
// set. Between hosts a cut link looks like a hung rank: TCP keeps retrying and no call fails.
inline std::string timeout_text(const std::string& what, int64_t step, double timeout_seconds) {
  std::string message = what;
  if (step >= 0) message += " at step " + std::to_string(step);
  return message + " did not complete within " + seconds_text(timeout_seconds) +
         " s; a rank has probably died or hung, or a host's network is down";
}

// The note of a rank that a stop signal finds waiting in a collective, without its "rank R (host
// H): " prefix: when mpirun ends a job because a host is gone it signals the other ranks, which
// are then waiting for that host, and this names what they were waiting in.
inline std::string stop_signal_while_waiting_text(const std::string& signal,
                                                  const std::string& what, int64_t step,
                                                  double waited_seconds) {
  std::string message = signal + " arrived while " + what;
  if (step >= 0) message += " at step " + std::to_string(step);
  return message + " had waited " + seconds_text(std::round(waited_seconds * 10) / 10) +
         " s for the other ranks; a rank has probably died or hung, or a host's network is down";
}

// Collective deadlines are positive and finite (every collective has one).
constexpr double kMaxCollectiveTimeoutSeconds = 1e7;
inline bool valid_collective_timeout(double seconds) {
  return seconds > 0.0 && seconds <= kMaxCollectiveTimeoutSeconds;
}

inline std::chrono::steady_clock::duration as_steady_duration(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds));
}

}  // namespace rf
