// The chunked attention of the trainer before fused attention: per (example, head), gather into
// sorted order, the window dot products as strided batched GEMMs, a masked softmax that writes the
// [n_slots, W] probability matrix, the value GEMM, and the unsort that combines hash rounds; and
// its backward pass. Kept, frozen, as a test reference: the fused kernels must equal it within fp32
// rounding (tests/chunked_attention_test.cpp). It runs on the CPU executor only (its per-index
// functors run in plain host loops).
#pragma once

#include "kernels/chunked_attention.h"
#include "kernels/device_buffer.h"

namespace rf::unfused {

struct HeadAttentionSpec {
  ChunkLayout layout;  // seq_len, n_slots = n_rounds * seq_len, chunk, lookback
  int64_t n_rounds = 1;
  int64_t d = 0;           // head width
  bool shared_qk = false;  // keys are the unit-normalised queries; self mask on
  float key_scale = 1.0f;  // separate keys are multiplied by this (1 / sqrt(d))
  DropoutMask dropout;     // on probabilities; element j * W + w, seq_len field = n_slots
};

struct HeadInputs {
  const float* q = nullptr;  // [seq_len, ldq]
  const float* k = nullptr;  // [seq_len, ldk]; ignored when shared_qk
  const float* v = nullptr;  // [seq_len, ldv]
  int64_t ldq = 0, ldk = 0, ldv = 0;
  const int32_t* perm = nullptr;  // [n_slots] sorted slot -> r * seq_len + t; null = identity
  const int32_t* undo = nullptr;  // inverse of perm; null = identity
};

// out[t, :d] (row stride ldo) = attention output of position t.
void chunked_attention_forward(Executor& cpu, Workspace& ws, const HeadAttentionSpec& spec,
                               const HeadInputs& in, float* out, int64_t ldo);

struct HeadGradients {
  float* dq = nullptr;  // [seq_len, ld]; for shared QK it receives the query and key gradients
  float* dk = nullptr;  // [seq_len, ld]; unused when shared_qk
  float* dv = nullptr;  // [seq_len, ld]
  int64_t ld = 0;
};

// Recomputes the forward pass (writing its output to `out` when not null) and writes the
// gradients of q, k and v for the output gradient dout [seq_len, lddo].
void chunked_attention_backward(Executor& cpu, Workspace& ws, const HeadAttentionSpec& spec,
                                const HeadInputs& in, const float* dout, int64_t lddo,
                                const HeadGradients& grads, float* out, int64_t ldo);

}  // namespace rf::unfused
