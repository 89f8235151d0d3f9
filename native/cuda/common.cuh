// Shared CUDA helpers: error checks that throw dbcore::Error, launch-size arithmetic, warp and block reductions.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"

#define DBCORE_CUDA_CHECK(expr)                                                                   \
  do {                                                                                            \
    cudaError_t dbcore_err_ = (expr);                                                             \
    if (dbcore_err_ != cudaSuccess)                                                               \
      throw ::dbcore::Error("ECUDA", ::dbcore::format("%s failed: %s", #expr,                      \
                                                      cudaGetErrorString(dbcore_err_)));          \
  } while (0)

// After every kernel launch: a bad launch configuration surfaces here, not at the next unrelated call.
#define DBCORE_CUDA_CHECK_LAUNCH() DBCORE_CUDA_CHECK(cudaGetLastError())

namespace dbcore::cuda {

constexpr int kThreads = 256;  // default block size of the elementwise kernels

// Blocks of `threads` covering n items, capped so that grid-stride loops take over for huge n.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b > 65535 * 16 ? 65535 * 16 : b);
}

// for (i = global thread index; i < n; i += total threads): every element visited once, any grid size.
#define DBCORE_GRID_STRIDE(i, n)                                                                  \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);          \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Compute capability major of the current device (cached per process: one GPU is used).
inline int device_major() {
  static const int major = [] {
    int dev = 0, value = 0;
    DBCORE_CUDA_CHECK(cudaGetDevice(&dev));
    DBCORE_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, dev));
    return value;
  }();
  return major;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Exact GELU x·Φ(x) = x/2·(1 + erf(x/√2)) (activation.cu, and gemm.cu's fused GEGLU epilogue).
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

// σ(x) = 1 / (1 + e^-x) (activation.cu's SiLU and QuickGELU, norm.cu's GroupNorm + SiLU).
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// Sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); every thread gets the total. Uses 32 slots of
// shared memory and two barriers, so every thread of the block must call it.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T total = lane < warps ? partial[lane] : T(0);
  return warp_sum(total);
}

}  // namespace dbcore::cuda
