// Learning-rate schedules: linear warm-up to train.lr, then constant, cosine decay to
// lr * min_lr_ratio at the last step, or inverse-square-root decay (trax's rsqrt_decay,
// normalised so the peak is train.lr).
#pragma once

#include "trainer/config.h"

namespace rf {

// Learning rate used by optimizer step `step` (0-based).
double learning_rate(const TrainConfig& train, int64_t step);

}  // namespace rf
