// Matrix products, twin of native/cpu/gemm.cpp (row-major C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C
// [+ bias (N) per column]), and the fused Linear + GEGLU of cuda::linear_geglu_forward.
// beta == 0: C is only written (never read), as BLAS does. Batched: blockIdx.z indexes the batch.
//
// Precision F32 (and bf16 on sm_75, which has no bf16 mma): SIMT kernel, block tile 64x64x16, 256 threads of 4x4.
//
// Precision F16 / BF16: tensor cores in CUTLASS's manner, fp32 accumulation. Tiles (block / warp / instruction):
//  - large 128x128x32, 8 warps of 64x32 (2 x 4), for grids that fill the GPU;
//  - small  64x64x32,  4 warps of 32x32 (2 x 2), for small M·N (more blocks, so more SMs busy);
//  - instruction mma.sync m16n8k16 (two m16n8k8 on sm_75 for fp16); a warp holds (WM/16) x (WN/8) fragments.
// Data flow, per k-tile of 32: global fp32 → registers (float4 along the contiguous dimension when pointer, leading
// dimension, batch stride and extent allow, decided at launch; 4 bounds-checked scalar loads otherwise, so any shape
// is correct) → converted to fp16/bf16 and stored as 8 bytes into a swizzled shared tile (cuda/gemm_tile.h) →
// ldmatrix.x4 (.trans for MN-major tiles) → mma. The fp32 master weights are read directly: no half copy exists.
//
// Pipeline: register-staged double buffering (two shared stages, one barrier per k-tile): the loads of k-tile t+1
// are issued before the mma of tile t and stored after it, so global latency hides behind a whole tile of math.
// Why not cp.async into fp32 shared tiles (converted at fragment reads) for the fp32 inputs: cp.async cannot
// convert, so shared memory would hold fp32, twice the bytes per stage (3 stages of 128x128x32 = 96 KiB), every
// fragment read would move twice the bytes (the large tile's warps already re-read each A element 4 times and each
// B element twice), ldmatrix could not be used (it moves 16-bit elements), and each element would be converted
// once per reading warp instead of once per block. Shared-memory bandwidth, not global latency, is what bounds
// mma.sync at these tile sizes, so converting once on the way in is the cheaper side; it also runs on sm_75.
//
// Epilogues: alpha, beta (beta == 1 is the residual add C += A·B), bias per output column; the GEGLU entry point
// computes in each block 64 (large) or 32 (small) hidden columns and the matching gate columns (cuda/gemm_tile.h's
// geglu_column), writes pre = [hidden | gate] + bias and out = hidden · gelu(gate).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"
#include "cuda_backend.h"
#include "gemm_tile.h"
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
  const float* bias = nullptr;       // per output column, or null
  bool vec_a = false, vec_b = false;  // float4 operand loads (tensor-core kernel)
  bool vec_c = false;                 // float2 stores (and beta reads) of C pairs
  float* geglu_out = nullptr;         // GEGLU: out (M, F), C is pre (M, 2F); null for plain products
  int F = 0;
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

// C[m][n] = alpha·acc (+ bias[n]) (+ beta·C[m][n]) for one element.
__device__ __forceinline__ void store_c(const GemmArgs& g, float* C, int m, int n, float acc) {
  if (m >= g.M || n >= g.N) return;
  float* c = C + static_cast<int64_t>(m) * g.ldc + n;
  float v = g.alpha * acc;
  if (g.bias) v += g.bias[n];
  *c = g.beta == 0.f ? v : v + g.beta * *c;
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

// ---- tensor cores: instruction-level helpers -------------------------------------------------------------------
// Four 8x8 matrices of 16-bit elements from shared memory (sm_75+); lanes 8i..8i+7 give the row addresses of
// matrix i, register i receives it. Trans: each matrix arrives transposed.
template <bool Trans>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  if constexpr (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// ---- tensor cores: tiles ----------------------------------------------------------------------------------------
template <int BM, int BN, int WM, int WN>
struct TileShape {
  static constexpr int kM = BM, kN = BN, kK = 32, kWarpM = WM, kWarpN = WN;
  static constexpr int kWarpsN = BN / WN, kThreads = 32 * (BM / WM) * (BN / WN);
  static constexpr int kFragsM = WM / 16, kFragsN = WN / 8;  // m16 and n8 fragments per warp
};
using LargeTile = TileShape<128, 128, 64, 32>;
using SmallTile = TileShape<64, 64, 32, 32>;
static_assert(LargeTile::kWarpN == 32 && SmallTile::kWarpN == 32, "geglu_column assumes warps 32 columns wide");

// Global rows of an operand's tile: row r of the tile is global row mn0 + r (m of A, n of B), or for GEGLU's B the
// weight row of hidden feature / gate (cuda/gemm_tile.h's geglu_column).
struct IdentityRows {
  int mn0, extent;
  __device__ __forceinline__ int global(int r, bool& ok) const {
    ok = mn0 + r < extent;
    return mn0 + r;
  }
};
struct GegluRows {
  int block_n, tile_n, F;
  __device__ __forceinline__ int global(int r, bool& ok) const {
    const tile::GegluColumn c = tile::geglu_column(block_n, tile_n, r);
    ok = c.feature < F;
    return c.gate ? F + c.feature : c.feature;
  }
};

// One operand's k-tile: Rows (m or n) x 32 (k) elements, K-major (k contiguous in global memory and in the shared
// tile's rows) or MN-major (rows of the shared tile are k). Each thread moves kPerThread / 4 groups of 4.
template <typename T, int Rows, bool KMajor, int Threads>
struct OperandTile {
  static constexpr int kK = 32;
  static constexpr int kWidth = KMajor ? kK : Rows;  // elements per shared row
  static constexpr int kElems = Rows * kK, kPerThread = kElems / Threads, kGroupsPerRow = kWidth / 4;
  static_assert(kElems % (4 * Threads) == 0, "tile must split into float4 groups evenly");

  // Loads k-tile k0 into v: group e covers shared row e / kGroupsPerRow, columns 4·(e % kGroupsPerRow) + 0..3.
  template <class RowMap>
  __device__ __forceinline__ static void load(float (&v)[kPerThread], const float* src, int64_t ld, int K, int k0,
                                              bool vec, const RowMap& map) {
#pragma unroll
    for (int i = 0; i < kPerThread / 4; ++i) {
      const int e = threadIdx.x + i * Threads, row = e / kGroupsPerRow, col = 4 * (e % kGroupsPerRow);
      float* x = v + 4 * i;
      if constexpr (KMajor) {  // 4 consecutive k of one m/n
        bool ok;
        const int mn = map.global(row, ok), k = k0 + col;
        const float* p = src + static_cast<int64_t>(mn) * ld + k;
        if (vec) {  // K % 4 == 0: the group is wholly inside or outside
          const float4 q = ok && k < K ? __ldg(reinterpret_cast<const float4*>(p)) : make_float4(0.f, 0.f, 0.f, 0.f);
          x[0] = q.x, x[1] = q.y, x[2] = q.z, x[3] = q.w;
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j) x[j] = ok && k + j < K ? __ldg(p + j) : 0.f;
        }
      } else {  // 4 consecutive m/n of one k
        const int k = k0 + row;
        bool ok0;
        const int mn = map.global(col, ok0);
        const float* p = src + static_cast<int64_t>(k) * ld + mn;
        if (vec) {  // extent % 4 == 0
          const float4 q = ok0 && k < K ? __ldg(reinterpret_cast<const float4*>(p)) : make_float4(0.f, 0.f, 0.f, 0.f);
          x[0] = q.x, x[1] = q.y, x[2] = q.z, x[3] = q.w;
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            bool ok;
            map.global(col + j, ok);
            x[j] = ok && k < K ? __ldg(p + j) : 0.f;
          }
        }
      }
    }
  }

  // Converts v and stores it into the swizzled shared tile (8 bytes per group: a chunk holds 2 groups).
  __device__ __forceinline__ static void store(T* tile, const float (&v)[kPerThread]) {
#pragma unroll
    for (int i = 0; i < kPerThread / 4; ++i) {
      const int e = threadIdx.x + i * Threads, row = e / kGroupsPerRow, col = 4 * (e % kGroupsPerRow);
      const float* x = v + 4 * i;
      *reinterpret_cast<uint2*>(tile + tile::swizzled_offset(row, col, kWidth)) =
          make_uint2(pack_low<T>(x[0], x[1]), pack_low<T>(x[2], x[3]));
    }
  }

  // ldmatrix.x4 of the 16 (m/n) x 16 (k) block at (mn, kk): A's a0..a3, or B's b[j][0], b[j][1], b[j+1][0..1].
  __device__ __forceinline__ static void fragment(uint32_t (&r)[4], const T* tile, bool operand_a, int mn, int kk) {
    const tile::TileCoord c = tile::ldmatrix_row(threadIdx.x % 32, operand_a, KMajor, mn, kk);
    ldmatrix_x4<!KMajor>(r, tile + tile::swizzled_offset(c.row, c.col, kWidth));
  }
};

// Two adjacent outputs (n, n+1) of a row: one float2 when allowed (n even, row start 8-byte aligned), else scalars.
__device__ __forceinline__ void store_pair(float* p, float v0, float v1, bool has_second, bool vec) {
  if (vec && has_second) {
    *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
  } else {
    p[0] = v0;
    if (has_second) p[1] = v1;
  }
}

// Plain epilogue: C = alpha·acc (+ bias) (+ beta·C), accumulator layout c0, c1 at (row group, cols 2·quad, +1),
// c2, c3 at (row group + 8, same cols).
template <class Tile>
__device__ __forceinline__ void epilogue_plain(const GemmArgs& g, float* C, float (&acc)[Tile::kFragsM][Tile::kFragsN][4],
                                               int m_base, int n_base) {
  const int lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
#pragma unroll
  for (int i = 0; i < Tile::kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < Tile::kFragsN; ++j) {
      const int n = n_base + 8 * j + 2 * quad;
      if (n >= g.N) continue;
      const bool second = n + 1 < g.N;
      const float b0 = g.bias ? g.bias[n] : 0.f, b1 = g.bias && second ? g.bias[n + 1] : 0.f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = m_base + 16 * i + group + 8 * h;
        if (m >= g.M) continue;
        float* c = C + static_cast<int64_t>(m) * g.ldc + n;
        float v0 = g.alpha * acc[i][j][2 * h] + b0, v1 = g.alpha * acc[i][j][2 * h + 1] + b1;
        if (g.beta != 0.f) {
          if (g.vec_c && second) {
            const float2 old = *reinterpret_cast<const float2*>(c);
            v0 += g.beta * old.x, v1 += g.beta * old.y;
          } else {
            v0 += g.beta * c[0];
            if (second) v1 += g.beta * c[1];
          }
        }
        store_pair(c, v0, v1, second, g.vec_c);
      }
    }
}

// GEGLU epilogue: fragments j < kFragsN/2 are hidden columns, j + kFragsN/2 the gates of the same features.
// pre (C, ldc = 2F) = [hidden | gate] + bias, out (M, F) = hidden · gelu(gate).
template <class Tile>
__device__ __forceinline__ void epilogue_geglu(const GemmArgs& g, float* pre, float* out,
                                               float (&acc)[Tile::kFragsM][Tile::kFragsN][4], int m_base,
                                               int warp_col) {
  constexpr int kHalf = Tile::kFragsN / 2;
  const int lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
#pragma unroll
  for (int i = 0; i < Tile::kFragsM; ++i)
#pragma unroll
    for (int j = 0; j < kHalf; ++j) {
      const int f = tile::geglu_column(blockIdx.x, Tile::kN, warp_col + 8 * j + 2 * quad).feature;
      if (f >= g.F) continue;
      const bool second = f + 1 < g.F;
      const float* bias_h = g.bias ? g.bias + f : nullptr;
      const float* bias_g = g.bias ? g.bias + g.F + f : nullptr;
      const float bh0 = bias_h ? bias_h[0] : 0.f, bh1 = bias_h && second ? bias_h[1] : 0.f;
      const float bg0 = bias_g ? bias_g[0] : 0.f, bg1 = bias_g && second ? bias_g[1] : 0.f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = m_base + 16 * i + group + 8 * h;
        if (m >= g.M) continue;
        const float h0 = acc[i][j][2 * h] + bh0, h1 = acc[i][j][2 * h + 1] + bh1;
        const float g0 = acc[i][j + kHalf][2 * h] + bg0, g1 = acc[i][j + kHalf][2 * h + 1] + bg1;
        float* p = pre + static_cast<int64_t>(m) * g.ldc + f;
        store_pair(p, h0, h1, second, g.vec_c);
        store_pair(p + g.F, g0, g1, second, g.vec_c);
        store_pair(out + static_cast<int64_t>(m) * g.F + f, h0 * gelu(g0), h1 * gelu(g1), second, g.vec_c);
      }
    }
}

// Block (blockIdx.x, blockIdx.y) computes C rows [m0, m0 + kM) x columns [n0, n0 + kN) (GEGLU: the columns of
// geglu_column); warp w the (kWarpM x kWarpN) sub-tile at (w / kWarpsN, w % kWarpsN).
// AKMajor: A is untransposed (k contiguous); BKMajor: B is transposed (Linear's weight (N, K)).
template <typename T, class Tile, bool AKMajor, bool BKMajor, bool Geglu>
__global__ void __launch_bounds__(Tile::kThreads) gemm_tc_kernel(GemmArgs g) {
  using TileA = OperandTile<T, Tile::kM, AKMajor, Tile::kThreads>;
  using TileB = OperandTile<T, Tile::kN, BKMajor, Tile::kThreads>;
  __shared__ __align__(128) T As[2][TileA::kElems];
  __shared__ __align__(128) T Bs[2][TileB::kElems];
  const float* A = g.A + blockIdx.z * g.stride_a;
  const float* B = g.B + blockIdx.z * g.stride_b;
  float* C = g.C + blockIdx.z * g.stride_c;
  const int m0 = blockIdx.y * Tile::kM, n0 = blockIdx.x * Tile::kN;
  const int warp = threadIdx.x / 32;
  const int wm = (warp / Tile::kWarpsN) * Tile::kWarpM, wn = (warp % Tile::kWarpsN) * Tile::kWarpN;
  const IdentityRows rows_a{m0, g.M};
  const auto rows_b = [&] {
    if constexpr (Geglu) return GegluRows{static_cast<int>(blockIdx.x), Tile::kN, g.F};
    else return IdentityRows{n0, g.N};
  }();

  float acc[Tile::kFragsM][Tile::kFragsN][4] = {};
  float va[TileA::kPerThread], vb[TileB::kPerThread];
  const int k_tiles = (g.K + Tile::kK - 1) / Tile::kK;
  if (k_tiles > 0) {
    TileA::load(va, A, g.lda, g.K, 0, g.vec_a, rows_a);
    TileB::load(vb, B, g.ldb, g.K, 0, g.vec_b, rows_b);
    TileA::store(As[0], va);
    TileB::store(Bs[0], vb);
  }
  __syncthreads();
  for (int t = 0; t < k_tiles; ++t) {
    const bool next = t + 1 < k_tiles;
    if (next) {  // issued now, consumed after this tile's math
      TileA::load(va, A, g.lda, g.K, (t + 1) * Tile::kK, g.vec_a, rows_a);
      TileB::load(vb, B, g.ldb, g.K, (t + 1) * Tile::kK, g.vec_b, rows_b);
    }
    const T* as = As[t & 1];
    const T* bs = Bs[t & 1];
#pragma unroll
    for (int kk = 0; kk < Tile::kK; kk += 16) {
      uint32_t a[Tile::kFragsM][4], b[Tile::kFragsN][2];
#pragma unroll
      for (int i = 0; i < Tile::kFragsM; ++i) TileA::fragment(a[i], as, true, wm + 16 * i, kk);
#pragma unroll
      for (int j = 0; j < Tile::kFragsN; j += 2) {
        uint32_t r[4];
        TileB::fragment(r, bs, false, wn + 8 * j, kk);
        b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < Tile::kFragsM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::kFragsN; ++j) mma_16816<T>(acc[i][j], a[i], b[j]);
    }
    if (next) {  // the other stage was last read before the previous barrier
      TileA::store(As[(t + 1) & 1], va);
      TileB::store(Bs[(t + 1) & 1], vb);
    }
    __syncthreads();
  }
  if constexpr (Geglu)
    epilogue_geglu<Tile>(g, C, g.geglu_out, acc, m0 + wm, wn);
  else
    epilogue_plain<Tile>(g, C, acc, m0 + wm, n0 + wn);
}

// ---- launch -----------------------------------------------------------------------------------------------------
int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  DBCORE_CUDA_CHECK(cudaGetDevice(&dev));
  DBCORE_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, dev));
  return value;
}

// SM count of the current device (cached per process: one GPU is used).
int sm_count() {
  static const int count = device_attribute(cudaDevAttrMultiProcessorCount);
  return count;
}

uint64_t address_of(const void* p) { return reinterpret_cast<uint64_t>(p); }

template <typename T, class Tile, bool Geglu>
void launch_tc(const GemmArgs& g, int grid_n, int batch) {
  dim3 grid(grid_n, (g.M + Tile::kM - 1) / Tile::kM, batch);
  DBCORE_CHECK(grid.y <= 65535, "EINVAL", "sgemm: M = %d is too large", g.M);
  if constexpr (Geglu) {
    gemm_tc_kernel<T, Tile, true, true, true><<<grid, Tile::kThreads>>>(g);
  } else {
    const bool ak = !g.trans_a, bk = g.trans_b;
    if (ak && bk) gemm_tc_kernel<T, Tile, true, true, false><<<grid, Tile::kThreads>>>(g);
    else if (ak) gemm_tc_kernel<T, Tile, true, false, false><<<grid, Tile::kThreads>>>(g);
    else if (bk) gemm_tc_kernel<T, Tile, false, true, false><<<grid, Tile::kThreads>>>(g);
    else gemm_tc_kernel<T, Tile, false, false, false><<<grid, Tile::kThreads>>>(g);
  }
  DBCORE_CUDA_CHECK_LAUNCH();
}

// Tensor-core launch: operand load widths and tile from the arguments (or forced by `path`), then the kernel.
template <bool Geglu>
void launch_tensor_cores(GemmArgs g, int batch, Precision precision, const GemmPath& path) {
  const bool scalar = path.force_scalar;
  g.vec_a = !scalar && tile::float4_loads_ok(address_of(g.A), g.lda, g.stride_a, g.trans_a ? g.M : g.K);
  g.vec_b = !scalar && tile::float4_loads_ok(address_of(g.B), g.ldb, g.stride_b, g.trans_b ? g.K : g.N);
  g.vec_c = !scalar && address_of(g.C) % 8 == 0 && g.ldc % 2 == 0 && g.stride_c % 2 == 0 &&
            (!Geglu || (address_of(g.geglu_out) % 8 == 0 && g.F % 2 == 0));
  const int n_extent = Geglu ? 2 * g.F : g.N;  // GEGLU: each block's 128 (64) columns are 64 (32) features
  const bool large = path.tile == GemmTile::Auto
                         ? tile::use_large_tile(g.M, n_extent, batch, LargeTile::kM, LargeTile::kN, sm_count())
                         : path.tile == GemmTile::Large;
  const auto grid_n = [&](int tile_n) { return Geglu ? (g.F + tile_n / 2 - 1) / (tile_n / 2) : (g.N + tile_n - 1) / tile_n; };
  if (precision == Precision::F16) {
    if (large) launch_tc<__half, LargeTile, Geglu>(g, grid_n(LargeTile::kN), batch);
    else launch_tc<__half, SmallTile, Geglu>(g, grid_n(SmallTile::kN), batch);
  } else {
    if (large) launch_tc<__nv_bfloat16, LargeTile, Geglu>(g, grid_n(LargeTile::kN), batch);
    else launch_tc<__nv_bfloat16, SmallTile, Geglu>(g, grid_n(SmallTile::kN), batch);
  }
}

// The precision a product actually runs at: bf16 needs sm_80's mma, sm_75 computes it in fp32.
Precision effective_precision(Precision precision) {
  return precision == Precision::BF16 && device_major() < 8 ? Precision::F32 : precision;
}

void launch_gemm(GemmArgs g, int batch, Precision precision, const GemmPath& path) {
  DBCORE_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0 && batch >= 0, "EINVAL", "sgemm: negative size %dx%dx%d (batch %d)",
               g.M, g.N, g.K, batch);
  if (g.M == 0 || g.N == 0 || batch == 0) return;
  DBCORE_CHECK(batch <= 65535, "EINVAL", "sgemm: batch %d is over 65535", batch);
  precision = effective_precision(precision);
  if (precision != Precision::F32) return launch_tensor_cores<false>(g, batch, precision, path);
  dim3 grid((g.N + kSimtTile - 1) / kSimtTile, (g.M + kSimtTile - 1) / kSimtTile, batch);
  DBCORE_CHECK(grid.y <= 65535, "EINVAL", "sgemm: M = %d is too large", g.M);
  sgemm_simt_kernel<<<grid, kSimtThreads>>>(g);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch, Precision precision, const GemmEpilogue& epilogue,
                   const GemmPath& path) {
  GemmArgs g{trans_a, trans_b, M, N, K, alpha, beta, A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c,
             epilogue.bias};
  launch_gemm(g, batch, precision, path);
}

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision, const GemmEpilogue& epilogue,
           const GemmPath& path) {
  sgemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, precision, epilogue,
                path);
}

// Linear (inp · weightᵀ + bias) into pre (M, 2F) fused with GEGLU into out (M, F) on the tensor cores; fp32
// products run the SIMT GEMM (bias in its epilogue) and then the GEGLU kernel.
void linear_geglu_forward(float* out, float* pre, const float* inp, const float* weight, const float* bias, int M,
                          int IC, int F, Precision precision, const GemmPath& path) {
  DBCORE_CHECK(M >= 0 && IC >= 0 && F >= 0, "EINVAL", "linear_geglu_forward: negative size M=%d IC=%d F=%d", M, IC,
               F);
  DBCORE_CHECK(F <= 0x3fffffff, "EINVAL", "linear_geglu_forward: F = %d is too large", F);
  if (M == 0 || F == 0) return;
  if (effective_precision(precision) == Precision::F32) {
    sgemm(false, true, M, 2 * F, IC, 1.f, inp, IC, weight, IC, 0.f, pre, 2 * F, Precision::F32, GemmEpilogue{bias});
    geglu_forward(out, pre, M, F);
    return;
  }
  GemmArgs g{false, true, M, 2 * F, IC, 1.f, 0.f, inp, IC, 0, weight, IC, 0, pre, 2 * F, 0, bias};
  g.geglu_out = out;
  g.F = F;
  launch_tensor_cores<true>(g, 1, effective_precision(precision), path);
}

}  // namespace dbcore::cuda
