// Tensor-core building blocks shared by the GEMM (gemm.cu), the convolution (conv2d.cu) and the attention kernels
// (attention_tc.cu): fp32 → fp16/bf16 rounding as operands are staged into shared memory, the mma.sync m16n8k16
// wrapper (fp32 accumulators; two m16n8k8 on sm_75 for fp16, bf16 needs sm_80: the hosts send bf16 work on sm_75
// to the fp32 kernels) and fragment loads from shared memory. Register layouts are those of the PTX ISA ("Matrix
// Fragments for mma.m16n8k16"): with group = lane / 4 and quad = lane % 4,
//   A (16x16, row): a0 (row group, k 2·quad, +1), a1 (row group+8, same k), a2 (row group, k 2·quad+8, +9), a3 (row
//                   group+8, k 2·quad+8, +9);
//   B (16x8, col):  b0 (k 2·quad, +1, col group), b1 (k 2·quad+8, +9, col group);
//   C (16x8, fp32): c0, c1 (row group, cols 2·quad, +1), c2, c3 (row group+8, same cols).
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

// Two fp32 values rounded to T and packed into one register, `lo` in the low half (the element at the lower k).
template <typename T>
__device__ __forceinline__ uint32_t pack_low(float lo, float hi) {
  const T l = to_low<T>(lo), h = to_low<T>(hi);
  return static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(&l)) |
         (static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(&h)) << 16);
}

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
  __trap();  // never launched: the hosts send bf16 work on sm_75 to the fp32 kernels
#endif
}

// Two consecutive 16-bit elements of a shared row as one 32-bit register (the element at the lower k first).
template <typename T>
__device__ __forceinline__ uint32_t pair_at(const T* row, int k) {
  return *reinterpret_cast<const uint32_t*>(row + k);
}

// B fragments of two adjacent n8 blocks from a k-major shared tile (element (k, n) at tile[k·ld + n], i.e. the
// "row" layout of B), transposed on the fly by ldmatrix (sm_75+): b[0..1] for cols n0..n0+7, b[2..3] for cols
// n0+8..n0+15, k rows k0..k0+15. Lanes 0-7 / 8-15 / 16-23 / 24-31 address rows k0+0..7 / k0+8..15 at col n0 and
// the same rows at col n0+8; each address must be 16-byte aligned (n0 a multiple of 8, ld a multiple of 8).
template <typename T>
__device__ __forceinline__ void ldmatrix_b_trans_x4(uint32_t* b, const T* tile, int ld, int k0, int n0, int lane) {
  const T* p = tile + (k0 + (lane & 15)) * ld + n0 + ((lane >> 4) << 3);
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr));
}

}  // namespace dbcore::cuda
