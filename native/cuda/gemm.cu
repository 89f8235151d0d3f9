// Matrix products, twin of native/cpu/gemm.cpp (row-major C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C).
// Two kernels, both with every load and store bounds-checked (any M, N, K, leading dimensions and transposes):
//  - tensor cores (Precision F16 / BF16): fp32 operands rounded to fp16/bf16 as they are staged into shared memory
//    (so fp32 master weights feed the matrix units directly), mma.sync m16n8k16 with fp32 accumulators (two
//    m16n8k8 on sm_75 for fp16; bf16 needs sm_80). Block tile 64x64x32, 4 warps of 32x32.
//  - SIMT fp32 (Precision F32, and bf16 on sm_75): block tile 64x64x16, 256 threads of 4x4 outputs.
// beta == 0: C is only written (never read), as BLAS does. Batched: blockIdx.z indexes the batch.
#include "common.cuh"
#include "cuda_backend.h"
#include "mma.cuh"

namespace dbcore::cuda {

namespace {

struct GemmArgs {
  bool trans_a, trans_b;
  int M, N, K;
  float alpha, beta;
  const float* A;
  int lda;
  long stride_a;
  const float* B;
  int ldb;
  long stride_b;
  float* C;
  int ldc;
  long stride_c;
};

// op(A)[m][k] and op(B)[k][n] of the batch's matrices, zero outside the matrix.
__device__ __forceinline__ float load_a(const GemmArgs& g, const float* A, int m, int k) {
  if (m >= g.M || k >= g.K) return 0.f;
  return g.trans_a ? A[static_cast<int64_t>(k) * g.lda + m] : A[static_cast<int64_t>(m) * g.lda + k];
}
__device__ __forceinline__ float load_b(const GemmArgs& g, const float* B, int k, int n) {
  if (k >= g.K || n >= g.N) return 0.f;
  return g.trans_b ? B[static_cast<int64_t>(n) * g.ldb + k] : B[static_cast<int64_t>(k) * g.ldb + n];
}

__device__ __forceinline__ void store_c(const GemmArgs& g, float* C, int m, int n, float acc) {
  if (m >= g.M || n >= g.N) return;
  float* c = C + static_cast<int64_t>(m) * g.ldc + n;
  *c = g.beta == 0.f ? g.alpha * acc : g.alpha * acc + g.beta * *c;
}

// ---- SIMT fp32 ----------------------------------------------------------------------------------------------
constexpr int kSimtTile = 64, kSimtK = 16, kSimtThreads = 256;

__global__ void __launch_bounds__(kSimtThreads) sgemm_simt_kernel(GemmArgs g) {
  __shared__ float As[kSimtK][kSimtTile + 1];  // As[k][m]
  __shared__ float Bs[kSimtK][kSimtTile + 1];  // Bs[k][n]
  const float* A = g.A + blockIdx.z * g.stride_a;
  const float* B = g.B + blockIdx.z * g.stride_b;
  float* C = g.C + blockIdx.z * g.stride_c;
  const int m0 = blockIdx.y * kSimtTile, n0 = blockIdx.x * kSimtTile;
  const int tm = threadIdx.x / 16, tn = threadIdx.x % 16;  // this thread's outputs: rows tm + 16i, cols tn + 16j
  float acc[4][4] = {};
  for (int k0 = 0; k0 < g.K; k0 += kSimtK) {
    for (int e = threadIdx.x; e < kSimtTile * kSimtK; e += kSimtThreads) {
      // Consecutive threads walk the contiguous dimension of the source matrix.
      const int am = g.trans_a ? e % kSimtTile : e / kSimtK, ak = g.trans_a ? e / kSimtTile : e % kSimtK;
      As[ak][am] = load_a(g, A, m0 + am, k0 + ak);
      const int bn = g.trans_b ? e / kSimtK : e % kSimtTile, bk = g.trans_b ? e % kSimtK : e / kSimtTile;
      Bs[bk][bn] = load_b(g, B, k0 + bk, n0 + bn);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][tm + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tn + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) store_c(g, C, m0 + tm + 16 * i, n0 + tn + 16 * j, acc[i][j]);
}

// ---- tensor cores ---------------------------------------------------------------------------------------------
constexpr int kTcM = 64, kTcN = 64, kTcK = 32, kTcThreads = 128;
constexpr int kTcPad = 8;  // halves of padding per shared row: rows 80 bytes apart, fragment reads conflict-free

// Warp w computes rows [wm, wm+32) x cols [wn, wn+32) of the block tile: 2 (m16) x 4 (n8) fragments.
template <typename T>
__global__ void __launch_bounds__(kTcThreads) gemm_tc_kernel(GemmArgs g) {
  __shared__ __align__(16) T As[kTcM][kTcK + kTcPad];  // As[m][k]
  __shared__ __align__(16) T Bs[kTcN][kTcK + kTcPad];  // Bs[n][k] (the "col" operand: k contiguous)
  const float* A = g.A + blockIdx.z * g.stride_a;
  const float* B = g.B + blockIdx.z * g.stride_b;
  float* C = g.C + blockIdx.z * g.stride_c;
  const int m0 = blockIdx.y * kTcM, n0 = blockIdx.x * kTcN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int group = lane / 4, quad = lane % 4;  // PTX fragment names: groupID, threadID_in_group
  float acc[2][4][4] = {};
  for (int k0 = 0; k0 < g.K; k0 += kTcK) {
    for (int e = threadIdx.x; e < kTcM * kTcK; e += kTcThreads) {
      const int am = g.trans_a ? e % kTcM : e / kTcK, ak = g.trans_a ? e / kTcM : e % kTcK;
      As[am][ak] = to_low<T>(load_a(g, A, m0 + am, k0 + ak));
      const int bn = g.trans_b ? e / kTcK : e % kTcN, bk = g.trans_b ? e % kTcK : e / kTcN;
      Bs[bn][bk] = to_low<T>(load_b(g, B, k0 + bk, n0 + bn));
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTcK; kk += 16) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const T* r0 = As[wm + 16 * i + group];
        const T* r8 = As[wm + 16 * i + group + 8];
        a[i][0] = pair_at(r0, kk + 2 * quad);
        a[i][1] = pair_at(r8, kk + 2 * quad);
        a[i][2] = pair_at(r0, kk + 2 * quad + 8);
        a[i][3] = pair_at(r8, kk + 2 * quad + 8);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const T* col = Bs[wn + 8 * j + group];
        b[j][0] = pair_at(col, kk + 2 * quad);
        b[j][1] = pair_at(col, kk + 2 * quad + 8);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_16816<T>(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }
  // Accumulator layout: c0, c1 at (row group, cols 2·quad, +1); c2, c3 at (row group + 8, same cols).
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int m = m0 + wm + 16 * i + group, n = n0 + wn + 8 * j + 2 * quad;
      store_c(g, C, m, n, acc[i][j][0]);
      store_c(g, C, m, n + 1, acc[i][j][1]);
      store_c(g, C, m + 8, n, acc[i][j][2]);
      store_c(g, C, m + 8, n + 1, acc[i][j][3]);
    }
}

void launch_gemm(const GemmArgs& g, int batch, Precision precision) {
  DBCORE_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0 && batch >= 0, "EINVAL", "sgemm: negative size %dx%dx%d (batch %d)",
               g.M, g.N, g.K, batch);
  if (g.M == 0 || g.N == 0 || batch == 0) return;
  DBCORE_CHECK(batch <= 65535, "EINVAL", "sgemm: batch %d is over 65535", batch);
  if (precision == Precision::BF16 && device_major() < 8) precision = Precision::F32;
  if (precision == Precision::F32) {
    dim3 grid((g.N + kSimtTile - 1) / kSimtTile, (g.M + kSimtTile - 1) / kSimtTile, batch);
    DBCORE_CHECK(grid.y <= 65535, "EINVAL", "sgemm: M = %d is too large", g.M);
    sgemm_simt_kernel<<<grid, kSimtThreads>>>(g);
  } else {
    dim3 grid((g.N + kTcN - 1) / kTcN, (g.M + kTcM - 1) / kTcM, batch);
    DBCORE_CHECK(grid.y <= 65535, "EINVAL", "sgemm: M = %d is too large", g.M);
    if (precision == Precision::F16)
      gemm_tc_kernel<__half><<<grid, kTcThreads>>>(g);
    else
      gemm_tc_kernel<__nv_bfloat16><<<grid, kTcThreads>>>(g);
  }
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch, Precision precision) {
  GemmArgs g{trans_a, trans_b, M, N, K, alpha, beta, A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c};
  launch_gemm(g, batch, precision);
}

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision) {
  sgemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, precision);
}

}  // namespace dbcore::cuda
