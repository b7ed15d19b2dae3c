// The human progress line of rank 0 and its timing: tokens per second (smoothed, first step
// excluded as warm-up) and the estimated time to the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rf {

std::string format_duration(double seconds);  // "45s", "3m07s", "2h05m"
std::string format_rate(double per_second);   // "987", "12.3k", "1.05M"
// A FLOP count to three figures: "61.2 GFLOP", "1.23 TFLOP" ("?" if not > 0); + "/s" for rates.
std::string format_flops(double flops);

// The progress line of a long command on stderr, rewritten in place (stdout keeps the results):
// "\r<what> <done>/<total> <unit> | <elapsed> elapsed | ETA <eta>". clear_progress_line() blanks
// it before the command prints what follows.
void print_progress_line(const std::string& what, int64_t done, int64_t total, const char* unit,
                         double elapsed_seconds, double eta_seconds);
void clear_progress_line();

class ProgressClock {
 public:
  // Times the steps first_step .. last_step - 1 (the ETA is to last_step).
  ProgressClock(int64_t first_step, int64_t last_step);
  // Call after each completed step with the tokens it processed.
  void step_done(int64_t step, int64_t tokens);
  // Excludes the time since the last step (an evaluation, a checkpoint) from the next step's.
  void restart_lap() { last_ = Clock::now(); }
  double tokens_per_second() const { return rate_; }
  double eta_seconds(int64_t step) const;
  double elapsed_seconds() const;
  // The time the rest of `total` items takes at the average pace of the `done` so far (for
  // commands that count items, not steps).
  double average_eta_seconds(int64_t done, int64_t total) const;

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_, last_;
  int64_t first_step_, last_step_;
  double rate_ = 0.0, step_tokens_ = 0.0;
  double raw_rate_ = 0.0;  // the biased average before correction
  int64_t timed_steps_ = 0;
};

}  // namespace rf
