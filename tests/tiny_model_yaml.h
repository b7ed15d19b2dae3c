// The tiny model of the tests (tests/model_fixture.h) as YAML, also the model whose checkpoints
// and Hugging Face weights the fuzz targets read (fuzz/, which links no test framework): 2 layers
// [lsh, local], axial positions, chunked feed-forward and head, dropout on.
#pragma once

namespace rf::test {

inline constexpr const char* kTinyModelYaml = R"(
model:
  vocab_size: 11
  d_model: 16
  d_ff: 24
  n_layers: 2
  n_heads: 2
  d_head: 8
  attention: [lsh, local]
  dropout: 0.1
  attention_dropout: 0.1
  position: axial
  axial_shape: [4, 8]
  ff_chunk: 12
  head_chunk: 20
lsh:
  bucket_size: 4
  n_hashes: 2
  local_chunk: 8
train:
  seq_len: 32
  batch_size: 2
  seed: 3
)";

}  // namespace rf::test
