#include "trainer/progress.h"

#include <cmath>
#include <cstdio>

namespace rf {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof(buf), "%lds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buf;
}

std::string format_rate(double v) {
  char buf[32];
  if (v >= 1e6)
    std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  else if (v >= 1e4)
    std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  return buf;
}

std::string format_flops(double flops) {
  if (!std::isfinite(flops) || flops <= 0) return "?";
  static const char* const kUnits[] = {"", "k", "M", "G", "T", "P", "E"};
  int unit = 0;
  double v = flops;
  // Three significant figures; 999.7 G reads as 1.00 T, not "1e+03 G".
  while (v >= 999.5 && unit < 6) {
    v /= 1e3;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf),
                v >= 99.95   ? "%.0f %sFLOP"
                : v >= 9.995 ? "%.1f %sFLOP"
                             : "%.2f %sFLOP",
                v, kUnits[unit]);
  return buf;
}

ProgressClock::ProgressClock(int64_t first_step, int64_t last_step)
    : start_(Clock::now()), last_(start_), first_step_(first_step), last_step_(last_step) {}

void ProgressClock::step_done(int64_t step, int64_t tokens) {
  const Clock::time_point now = Clock::now();
  const double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (step == first_step_) return;  // warm-up: allocations and first touches
  // Exponential average with bias correction (as llm.c does for tok/s).
  constexpr double kDecay = 0.9;
  ++timed_steps_;
  const double correction = 1.0 - std::pow(kDecay, static_cast<double>(timed_steps_));
  raw_rate_ = kDecay * raw_rate_ + (1 - kDecay) * (static_cast<double>(tokens) / dt);
  rate_ = raw_rate_ / correction;
  step_tokens_ = static_cast<double>(tokens);
}

double ProgressClock::eta_seconds(int64_t step) const {
  // At the rate the line shows (an average of dt instead let one stalled step, a busy disk
  // say, put the ETA at 10x what the rate on the same line gave).
  if (timed_steps_ == 0 || rate_ <= 0) return NAN;
  return step_tokens_ / rate_ * static_cast<double>(std::max<int64_t>(last_step_ - step - 1, 0));
}

double ProgressClock::elapsed_seconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

double ProgressClock::average_eta_seconds(int64_t done, int64_t total) const {
  if (done <= 0) return NAN;
  return elapsed_seconds() / static_cast<double>(done) * static_cast<double>(total - done);
}

void print_progress_line(const std::string& what, int64_t done, int64_t total, const char* unit,
                         double elapsed_seconds, double eta_seconds) {
  std::fprintf(stderr, "\r%s %lld/%lld %s | %s elapsed | ETA %s   ", what.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), unit,
               format_duration(elapsed_seconds).c_str(), format_duration(eta_seconds).c_str());
}

void clear_progress_line() {
  std::fprintf(stderr, "\r%70s\r", "");
}

}  // namespace rf
