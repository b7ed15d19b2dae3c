#include "data/synthetic_duplication.h"

#include <sstream>

#include "base/error.h"
#include "base/philox.h"

namespace rf {

SyntheticDuplication::SyntheticDuplication(int64_t seq_len, int64_t vocab_size, uint64_t seed,
                                           bool validation)
    : seq_len_(seq_len), vocab_(vocab_size), seed_(seed), validation_(validation) {
  if (seq_len < 4 || seq_len % 2 != 0)
    fail("the duplication task needs an even train.seq_len >= 4, got ", seq_len);
  if (vocab_size < 3) fail("the duplication task needs model.vocab_size >= 3, got ", vocab_size);
}

void SyntheticDuplication::read(int64_t index, int32_t* out) const {
  const RngStream s = make_rng_stream(seed_, RngPurpose::kSyntheticData, validation_ ? 1 : 0, 0,
                                      static_cast<uint32_t>(index),
                                      static_cast<uint32_t>(static_cast<uint64_t>(index) >> 32));
  const int64_t m = seq_len_ / 2 - 1;
  out[0] = 0;
  out[1] = 0;
  out[m + 2] = 0;
  for (int64_t i = 0; i < m; ++i) {
    const int32_t symbol = 1 + static_cast<int32_t>(s.bits(i) % static_cast<uint32_t>(vocab_ - 1));
    out[2 + i] = symbol;
    out[m + 3 + i] = symbol;
  }
}

std::string SyntheticDuplication::describe() const {
  std::ostringstream s;
  s << "synthetic duplication task (0 w 0 w, |w| = " << seq_len_ / 2 - 1 << ", symbols 1.."
    << vocab_ - 1 << ", " << (validation_ ? "validation" : "training") << " stream)";
  return s.str();
}

}  // namespace rf
