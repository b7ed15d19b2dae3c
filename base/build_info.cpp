#include "base/build_info.h"

#include "rf_build_info.h"  // generated: RF_SOURCE_COMMIT, RF_SOURCE_COMMIT_DATE

namespace rf {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.commit = RF_SOURCE_COMMIT;
    b.commit_date = RF_SOURCE_COMMIT_DATE;
    b.build_type = RF_BUILD_TYPE;
    b.compiler = RF_BUILD_COMPILER;
    b.cuda = RF_BUILD_WITH_CUDA != 0;
    b.cuda_architectures = RF_BUILD_CUDA_ARCHITECTURES;
    return b;
  }();
  return info;
}

std::string describe_build() {
  const BuildInfo& b = build_info();
  std::string text = "reformer " + b.commit + " (" + b.commit_date + "), " +
                     (b.build_type.empty() ? std::string("default") : b.build_type) + " build, " +
                     b.compiler + ", CUDA ";
  text += b.cuda ? "on (architectures " + b.cuda_architectures + ")" : std::string("off");
  return text;
}

}  // namespace rf
