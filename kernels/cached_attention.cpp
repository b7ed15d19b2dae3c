#include "kernels/cached_attention.h"

#include "base/error.h"
#include "kernels/executor.h"
#include "kernels/profile.h"

namespace rf {

void cached_attention_forward(Executor& ex, const CachedAttentionParams& p) {
  const ScopedLauncherTimer timer(ex, "cached attention");
  RF_CHECK(p.d >= 1 && p.d <= kMaxHeadDim, "head width ", p.d, " outside [1, ", kMaxHeadDim, "]");
  RF_CHECK(p.q && p.k && p.v && p.out && p.ld >= p.heads * p.d && p.ldo >= p.heads * p.d);
  RF_CHECK(p.first >= 0 && p.queries >= 1 && p.chunk >= 0);
  RF_CHECK(p.rel_scores == nullptr || p.rel_len >= 1, "relative scores need a distance count");
  RF_CHECK(p.window == nullptr || (p.window_len >= 1 && p.chunk == 0 && p.max_distance < 0),
           "listed keys take no chunk or distance limit");
  ex.run(p.heads * p.queries, CachedAttentionRow{p});
}

}  // namespace rf
