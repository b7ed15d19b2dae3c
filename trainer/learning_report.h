// The end of a run says what the model learned, in the task's own terms: for the duplication task
// the copy accuracy on the second half for 1, 2, 4 and 8 evaluation hashes (the paper's Table 2
// row) and one example copy; for text the validation bits per byte and a sample continuation.
#pragma once

#include <ostream>

#include "trainer/batches.h"
#include "trainer/evaluate.h"

namespace rf {

// Copy accuracy and loss on the second copy of the duplication task, with `n_hashes` hash rounds
// at evaluation time (the model's parameters do not depend on it).
EvalResult duplication_copy_accuracy(ReformerModel& model, const WindowSource& val, int64_t windows,
                                     int64_t n_hashes);

void report_what_was_learned(ReformerModel& model, const DataSources& data, std::ostream& out);

}  // namespace rf
