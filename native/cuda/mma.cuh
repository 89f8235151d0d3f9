// Tensor-core helpers shared by the matrix-product kernels (gemm.cu, conv2d.cu): fp32 → fp16/bf16 rounding as
// operands are staged into shared memory, the mma.sync m16n8k16 wrapper (fp32 accumulators; two m16n8k8 on sm_75
// for fp16, bf16 needs sm_80), 32-bit fragment reads from shared rows, and the device's compute capability (the
// host sends bf16 work to the SIMT kernels below sm_80).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common.cuh"

namespace dbcore::cuda {

template <typename T>
__device__ __forceinline__ T to_low(float x);
template <>
__device__ __forceinline__ __half to_low<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 to_low<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// d (16x8, fp32) += a (16x16) · b (16x8); register layouts of the PTX ISA's mma.m16n8k16 (row.col).
template <typename T>
__device__ __forceinline__ void mma_16816(float* d, const uint32_t* a, const uint32_t* b);

template <>
__device__ __forceinline__ void mma_16816<__half>(float* d, const uint32_t* a, const uint32_t* b) {
#if __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  // sm_75: the k16 step as two m16n8k8 (a0,a1 with b0: k 0-7; a2,a3 with b1: k 8-15).
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(b[0]));
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[2]), "r"(a[3]), "r"(b[1]));
#endif
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float* d, const uint32_t* a, const uint32_t* b) {
#if __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // never launched: the host sends bf16 products on sm_75 to the SIMT kernel
#endif
}

// Two consecutive 16-bit elements of a shared row as one 32-bit register (the element at the lower k first).
template <typename T>
__device__ __forceinline__ uint32_t pair_at(const T* row, int k) {
  return *reinterpret_cast<const uint32_t*>(row + k);
}

// Compute capability major of the current device (cached per process: one GPU is used).
inline int device_major() {
  static int major = [] {
    int dev = 0, value = 0;
    DBCORE_CUDA_CHECK(cudaGetDevice(&dev));
    DBCORE_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, dev));
    return value;
  }();
  return major;
}

}  // namespace dbcore::cuda
