// What every fuzz target shares: a scratch folder of its own for inputs that the readers take as
// files, the rule that an input ends only in success or a user-facing rf::Error, and the small
// model whose checkpoints and Hugging Face weights two of the targets read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/shards.h"

namespace rf::fuzz {

// A folder of this process alone (parallel fuzzing jobs each get one), removed at exit.
const std::string& scratch_dir();

// Writes `size` bytes to scratch_dir()/name and returns its path.
std::string write_scratch_file(const std::string& name, const uint8_t* data, size_t size);

// An rf::Error is how bad input must end, unless it comes from an internal check (RF_CHECK):
// input must never reach one. Aborts (a finding) for those.
void reject_internal_check(const Error& error);

// Runs `body`; an rf::Error ends it quietly (unless reject_internal_check objects). Any other
// exception escapes, and libFuzzer reports it as a crash.
template <class Body>
void expect_success_or_error(Body&& body) {
  try {
    body();
  } catch (const Error& error) {
    reject_internal_check(error);
  }
}

// Aborts when an HDF5 object (file, dataset, attribute, ...) is still open: our readers close
// everything they open, whatever the input (HDF5's own leaks are suppressed in fuzz/lsan.supp,
// so this is what checks ours). Called after each input of the HDF5 targets.
void expect_no_open_hdf5_objects();

// The experiment text of the small model of tests/model_fixture.h (tiny_config): the checkpoint
// and safetensors targets load into a model of this shape.
extern const char* const kTinyModelYaml;

// The two byte-token shards the manifest target's manifests point to, written into `dir` as
// train-00000.h5 (100 tokens) and val-00000.h5 (40 tokens); the same bytes every time, so seed
// manifests can carry their checksums.
Manifest write_fixed_shards(const std::string& dir);

}  // namespace rf::fuzz
