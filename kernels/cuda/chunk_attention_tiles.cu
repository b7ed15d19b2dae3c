// The CUDA executor's tiled attention: the kernels of attention_tile_launch.cuh launched on the
// device (device_launch.cuh).
#include "kernels/cuda/attention_tile_launch.cuh"
#include "kernels/cuda/chunk_attention_tiles.h"
#include "kernels/cuda/device_launch.cuh"

namespace rf::cuda {

bool chunk_attention_tiled(const Executor& ex, ChunkAttentionPass pass,
                           const ChunkAttentionParams& p) {
  return launch_chunk_attention<DeviceLaunch>(ex, pass, p);
}

}  // namespace rf::cuda
