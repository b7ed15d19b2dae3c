#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace rf {

double learning_rate(const TrainConfig& t, int64_t step) {
  const double s = static_cast<double>(step + 1);  // step 0 already moves the weights
  const double warmup = static_cast<double>(t.warmup);
  const double ramp = warmup > 0 ? std::min(1.0, s / warmup) : 1.0;
  switch (t.schedule) {
    case ScheduleKind::kConstant:
      return t.lr * ramp;
    case ScheduleKind::kRsqrt:
      return t.lr * ramp * std::sqrt(std::max(warmup, 1.0) / std::max(s, std::max(warmup, 1.0)));
    case ScheduleKind::kCosine: {
      if (s <= warmup) return t.lr * ramp;
      const double span = std::max(1.0, static_cast<double>(t.steps) - warmup);
      const double progress = std::min(1.0, (s - warmup) / span);
      const double floor = t.lr * t.min_lr_ratio;
      return floor + (t.lr - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
    }
  }
  return t.lr;
}

}  // namespace rf
