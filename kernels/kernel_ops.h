// The registry of per-index kernels. Each entry is an RF_HD functor from kernels/ops/; every
// executor runs each of them (CPU: an OpenMP loop, CUDA: a grid-stride kernel). Adding a kernel
// is writing its functor and adding it to this list.
#pragma once

#include "kernels/ops/activation.h"
#include "kernels/ops/adamw.h"
#include "kernels/ops/bf16_round.h"
#include "kernels/ops/cached_attention.h"
#include "kernels/ops/chunk_attention.h"
#include "kernels/ops/cross_entropy.h"
#include "kernels/ops/elementwise.h"
#include "kernels/ops/embedding.h"
#include "kernels/ops/layer_norm.h"
#include "kernels/ops/lsh_hash.h"
#include "kernels/ops/random_fill.h"
#include "kernels/ops/reduce.h"
#include "kernels/ops/relative_positions.h"

namespace rf {

template <class... Ops>
struct TypeList {};

using KernelOps = TypeList<
    // element-wise
    AddScaled, Fill, BiasDropoutResidualAdd, ApplyDropout, ConcatColumns, SplitColumnsAdd,
    BiasActivationForward, ActivationBackward, AddBias, AdamWUpdate, RandomNormalFill,
    RandomUniformFill, RoundToBf16,
    // row-wise and reductions
    LayerNormRowStats, LayerNormForward, LayerNormBackward, LayerNormParamGradPartial,
    ColumnPartialSum, ColumnSumPartials, SumSquaresPartial, GradientNormFinalize, CrossEntropyRow,
    // embeddings
    EmbedForward, EmbedTokenBackward, AxialPositionBackward, LearnedPositionBackward,
    // LSH and fused chunked attention
    LshHash, LshRotationFill, BucketCountingSort, InvertPermutation, SegmentSlotsAndOffsets,
    KeyNormScales, ChunkAttentionForwardRow, CombineRounds, CombineRoundsBackward,
    ChunkAttentionQueryGradRow, ChunkAttentionKeyGradRow, UngatherAttentionGrads,
    CachedAttentionRow,
    // Transformer-XL's relative positions
    RelativeSinusoids>;

}  // namespace rf
