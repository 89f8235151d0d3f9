// Shared CUDA helpers: error checks that throw dbcore::Error, warp reductions.
#pragma once
#include <cuda_runtime.h>

#include "core/error.h"

#define DBCORE_CUDA_CHECK(expr)                                                                   \
  do {                                                                                            \
    cudaError_t dbcore_err_ = (expr);                                                             \
    if (dbcore_err_ != cudaSuccess)                                                               \
      throw ::dbcore::Error("ECUDA", ::dbcore::format("%s failed: %s", #expr,                      \
                                                      cudaGetErrorString(dbcore_err_)));          \
  } while (0)

namespace dbcore::cuda {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace dbcore::cuda
