// 2-D convolution as implicit GEMM, twin of native/cpu/conv2d.cpp (NCHW, groups 1, dilation 1, zero padding;
// ref: torch.nn.Conv2d). No column matrix is ever written: each K tile of the operands is gathered from the
// tensors straight into shared memory through the index functions of conv_index.h (which also lists the three
// products: forward, input gradient as a transposed convolution, weight gradient over the batch).
// Dimension letters as cpu/conv2d.h. Accumulation: dweight, dbias +=; dinp = (each skipped when its pointer is null).
//
// Tiling (both kernels): block tile 128 (M) x 128 (columns), 256 threads; grid x = column tiles, y = M tiles,
// z = image · K slices. Per K tile the 32 (tensor cores) or 16 (SIMT) K indices are decoded once into a shared
// table of KEntry (double-buffered) and the block's 128 columns once per block into ColEntry, so a gathered
// element costs a few adds, compares and one load; out-of-range rows, columns, K indices and padding read 0.
// Data flow per K tile: global → registers (issued before the current tile's math, so the loads overlap it) →
// shared (rounded to fp16/bf16 for the tensor cores) → fragments.
//  - tensor cores (F16 / BF16): K tile 32, 8 warps as 2 (M) x 4 (columns) of 64x32, each 4 (m16) x 4 (n8)
//    mma.sync m16n8k16 fragments with fp32 accumulators (mma.cuh; bf16 on sm_75 runs the SIMT kernel).
//  - SIMT (F32): K tile 16, each thread 8x8 outputs (rows ty + 16i, columns tx + 16j), fp32 throughout.
// A threads walk K when loading A (the weight and dout rows are contiguous in K); B is walked along the columns
// (pixels) for forward and dgrad and along K (pixels of the batch) for wgrad, so global loads coalesce.
// Split K (conv_index.h's plan_split, when the output tiles alone would not fill the GPU): slice s writes its
// partial product to workspace[s] and one reduce kernel adds the slices in slice order, then applies the
// epilogue: no float atomics, the result never depends on scheduling.
#include <algorithm>

#include "common.cuh"
#include "conv_index.h"
#include "cuda_backend.h"
#include "mma.cuh"

namespace dbcore::cuda {

namespace {

constexpr int kBM = kConvTileM, kBN = kConvTileN, kConvThreads = 256;
constexpr int kTcK = 32, kSimtK = 16;
constexpr int kTcPad = 8;     // halves of padding per shared row: rows 80 bytes apart, fragment reads conflict-free
constexpr int kSimtPad = 4;   // floats of padding per shared row
static_assert(kConvMinSlice % kTcK == 0 && kConvMinSlice % kSimtK == 0, "slices must hold whole K tiles");

// ---- the three products (conv_index.h): operand gathers and the final store of one output ----
// a(): element (m, k) of A, b(): element (k, n) of B, both called only inside the matrices; store(): the epilogue.
struct ForwardProblem {
  static constexpr bool kBAlongK = false;
  ConvDims d;
  float* out;
  const float *inp, *weight, *bias;
  __device__ KEntry k_entry(int k) const { return forward_k_entry(d, k); }
  __device__ ColEntry col_entry(int n) const { return forward_col_entry(d, n); }
  __device__ float a(const KEntry& e, int m, int) const { return weight[forward_a_offset(d, e, m)]; }
  __device__ float b(const KEntry& e, const ColEntry& c, int img) const {
    const int o = forward_b_offset(d, e, c);
    return o < 0 ? 0.f : inp[img * d.C * d.HW + o];
  }
  __device__ void store(int img, int m, int n, float v) const {
    out[(img * d.OC + m) * d.OHW + n] = bias ? v + bias[m] : v;
  }
};

struct DgradProblem {
  static constexpr bool kBAlongK = false;
  ConvDims d;
  float* dinp;
  const float *dout, *weight;
  __device__ KEntry k_entry(int k) const { return dgrad_k_entry(d, k); }
  __device__ ColEntry col_entry(int n) const { return dgrad_col_entry(d, n); }
  __device__ float a(const KEntry& e, int m, int) const { return weight[dgrad_a_offset(d, e, m)]; }
  __device__ float b(const KEntry& e, const ColEntry& c, int img) const {
    const int o = dgrad_b_offset(d, e, c);
    return o < 0 ? 0.f : dout[img * d.OC * d.OHW + o];
  }
  __device__ void store(int img, int m, int n, float v) const { dinp[(img * d.C + m) * d.HW + n] = v; }
};

struct WgradProblem {
  static constexpr bool kBAlongK = true;
  ConvDims d;
  float* dweight;
  const float *dout, *inp;
  __device__ KEntry k_entry(int p) const { return wgrad_k_entry(d, p); }
  __device__ ColEntry col_entry(int n) const { return wgrad_col_entry(d, n); }
  __device__ float a(const KEntry& e, int m, int) const { return dout[wgrad_a_offset(d, e, m)]; }
  __device__ float b(const KEntry& e, const ColEntry& c, int) const {
    const int o = wgrad_b_offset(d, e, c);
    return o < 0 ? 0.f : inp[o];
  }
  __device__ void store(int, int m, int n, float v) const { dweight[m * d.C * d.KK + n] += v; }
};

// One product's sizes and split as the kernels see them; ws holds slices · batch · M · Ncols partial sums.
struct GemmDesc {
  int M, Ncols, K, batch, slices, chunk;
  float* ws;
};

// Output (m, n) of image `img` from K slice `slice`: straight through the epilogue, or into the slice's partials.
template <class P>
__device__ __forceinline__ void emit(const P& p, const GemmDesc& g, int slice, int img, int m, int n, float v) {
  if (m >= g.M || n >= g.Ncols) return;
  if (g.slices == 1) {
    p.store(img, m, n, v);
  } else {
    const int64_t per_slice = static_cast<int64_t>(g.batch) * g.M * g.Ncols;
    g.ws[slice * per_slice + (static_cast<int64_t>(img) * g.M + m) * g.Ncols + n] = v;
  }
}

// Registers holding one K tile of A (kBM x BK) and B (BK x kBN) between the global loads and the shared stores.
template <class P, int BK>
struct Stage {
  static constexpr int kA = kBM * BK / kConvThreads, kB = kBN * BK / kConvThreads;
  float ra[kA], rb[kB];

  // Element e of a tile: A (row, k) with k fastest; B (k, column) with the column fastest, or k for kBAlongK.
  static __device__ __forceinline__ void a_coords(int e, int& mm, int& kk) { mm = e / BK, kk = e % BK; }
  static __device__ __forceinline__ void b_coords(int e, int& kk, int& nn) {
    if (P::kBAlongK)
      kk = e % BK, nn = e / BK;
    else
      kk = e / kBN, nn = e % kBN;
  }

  __device__ __forceinline__ void load(const P& p, const GemmDesc& g, const KEntry* ktab, const ColEntry* ctab,
                                       int m0, int n0, int k0, int k_end, int img) {
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      int mm, kk;
      a_coords(threadIdx.x + i * kConvThreads, mm, kk);
      ra[i] = m0 + mm < g.M && k0 + kk < k_end ? p.a(ktab[kk], m0 + mm, img) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) {
      int kk, nn;
      b_coords(threadIdx.x + i * kConvThreads, kk, nn);
      rb[i] = n0 + nn < g.Ncols && k0 + kk < k_end ? p.b(ktab[kk], ctab[nn], img) : 0.f;
    }
  }

  // put_a(mm, kk, value), put_b(kk, nn, value): the kernel's shared layout.
  template <class PutA, class PutB>
  __device__ __forceinline__ void store(PutA put_a, PutB put_b) const {
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      int mm, kk;
      a_coords(threadIdx.x + i * kConvThreads, mm, kk);
      put_a(mm, kk, ra[i]);
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) {
      int kk, nn;
      b_coords(threadIdx.x + i * kConvThreads, kk, nn);
      put_b(kk, nn, rb[i]);
    }
  }
};

// The block's place in the grid and the K range of its slice.
struct BlockPos {
  int m0, n0, img, slice, k_begin, k_end;
};
__device__ __forceinline__ BlockPos block_pos(const GemmDesc& g) {
  BlockPos b;
  b.m0 = blockIdx.y * kBM, b.n0 = blockIdx.x * kBN;
  b.img = blockIdx.z / g.slices, b.slice = blockIdx.z % g.slices;
  b.k_begin = b.slice * g.chunk;
  b.k_end = min(g.K, b.k_begin + g.chunk);
  return b;
}

// Decodes the block's columns (once) and a K tile's indices (per tile) into the shared tables.
template <class P>
__device__ __forceinline__ void fill_columns(const P& p, const GemmDesc& g, ColEntry* ctab, int n0) {
  for (int i = threadIdx.x; i < kBN; i += kConvThreads) ctab[i] = n0 + i < g.Ncols ? p.col_entry(n0 + i) : ColEntry{};
}
template <class P, int BK>
__device__ __forceinline__ void fill_ktile(const P& p, KEntry* ktab, int k0, int k_end) {
  if (threadIdx.x < BK) ktab[threadIdx.x] = k0 + threadIdx.x < k_end ? p.k_entry(k0 + threadIdx.x) : KEntry{};
}

// The K loop shared by both kernels: stage tile t+1 into registers while `math` consumes tile t from shared memory.
// put_a / put_b write a staged element into shared memory; math() runs between the barriers.
template <class P, int BK, class PutA, class PutB, class Math>
__device__ __forceinline__ void k_loop(const P& p, const GemmDesc& g, const BlockPos& b, PutA put_a, PutB put_b,
                                       Math math) {
  __shared__ ColEntry ctab[kBN];
  __shared__ KEntry ktab[2][BK];
  fill_columns(p, g, ctab, b.n0);
  fill_ktile<P, BK>(p, ktab[0], b.k_begin, b.k_end);
  __syncthreads();
  Stage<P, BK> stage;
  stage.load(p, g, ktab[0], ctab, b.m0, b.n0, b.k_begin, b.k_end, b.img);
  int buf = 0;
  for (int k0 = b.k_begin; k0 < b.k_end; k0 += BK, buf ^= 1) {
    const bool more = k0 + BK < b.k_end;
    stage.store(put_a, put_b);
    if (more) fill_ktile<P, BK>(p, ktab[buf ^ 1], k0 + BK, b.k_end);
    __syncthreads();  // the tile and the next table are in shared memory
    if (more) stage.load(p, g, ktab[buf ^ 1], ctab, b.m0, b.n0, k0 + BK, b.k_end, b.img);
    math();
    __syncthreads();  // every warp is done with the tile before the next store overwrites it
  }
}

// ---- tensor cores ----
template <class P, typename T>
__global__ void __launch_bounds__(kConvThreads) conv_gemm_tc_kernel(P p, GemmDesc g) {
  __shared__ __align__(16) T As[kBM][kTcK + kTcPad];  // As[m][k]
  __shared__ __align__(16) T Bs[kBN][kTcK + kTcPad];  // Bs[n][k] (the "col" operand: k contiguous)
  const BlockPos b = block_pos(g);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
  const int group = lane / 4, quad = lane % 4;  // PTX fragment names: groupID, threadID_in_group
  float acc[4][4][4] = {};
  auto put_a = [&](int mm, int kk, float v) { As[mm][kk] = to_low<T>(v); };
  auto put_b = [&](int kk, int nn, float v) { Bs[nn][kk] = to_low<T>(v); };
  auto math = [&] {
#pragma unroll
    for (int kk = 0; kk < kTcK; kk += 16) {
      uint32_t a[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
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
        bf[j][0] = pair_at(col, kk + 2 * quad);
        bf[j][1] = pair_at(col, kk + 2 * quad + 8);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_16816<T>(acc[i][j], a[i], bf[j]);
    }
  };
  k_loop<P, kTcK>(p, g, b, put_a, put_b, math);
  // Accumulator layout: c0, c1 at (row group, cols 2·quad, +1); c2, c3 at (row group + 8, same cols).
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int m = b.m0 + wm + 16 * i + group, n = b.n0 + wn + 8 * j + 2 * quad;
      emit(p, g, b.slice, b.img, m, n, acc[i][j][0]);
      emit(p, g, b.slice, b.img, m, n + 1, acc[i][j][1]);
      emit(p, g, b.slice, b.img, m + 8, n, acc[i][j][2]);
      emit(p, g, b.slice, b.img, m + 8, n + 1, acc[i][j][3]);
    }
}

// ---- SIMT fp32 ----
template <class P>
__global__ void __launch_bounds__(kConvThreads) conv_gemm_simt_kernel(P p, GemmDesc g) {
  __shared__ float As[kSimtK][kBM + kSimtPad];  // As[k][m]
  __shared__ float Bs[kSimtK][kBN + kSimtPad];  // Bs[k][n]
  const BlockPos b = block_pos(g);
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;  // outputs: rows ty + 16i, columns tx + 16j
  float acc[8][8] = {};
  auto put_a = [&](int mm, int kk, float v) { As[kk][mm] = v; };
  auto put_b = [&](int kk, int nn, float v) { Bs[kk][nn] = v; };
  auto math = [&] {
#pragma unroll
    for (int kk = 0; kk < kSimtK; ++kk) {
      float a[8], bv[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 8; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
    }
  };
  k_loop<P, kSimtK>(p, g, b, put_a, put_b, math);
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) emit(p, g, b.slice, b.img, b.m0 + ty + 16 * i, b.n0 + tx + 16 * j, acc[i][j]);
}

// Σ over the K slices in slice order (deterministic), then the epilogue. ws[s][img][m][n].
template <class P>
__global__ void __launch_bounds__(kThreads) conv_split_reduce_kernel(P p, GemmDesc g) {
  const int64_t per_slice = static_cast<int64_t>(g.batch) * g.M * g.Ncols, mn = static_cast<int64_t>(g.M) * g.Ncols;
  DBCORE_GRID_STRIDE(i, per_slice) {
    float sum = 0.f;
    for (int s = 0; s < g.slices; ++s) sum += g.ws[s * per_slice + i];
    const int img = static_cast<int>(i / mn), r = static_cast<int>(i % mn);
    p.store(img, r / g.Ncols, r % g.Ncols, sum);
  }
}

// dbias (OC) += Σ dout (N, OC, OHW) over N and OHW: one block per channel, fixed summation order, double sums.
__global__ void __launch_bounds__(kThreads) conv_bias_grad_kernel(float* dbias, const float* dout, int N, int OC,
                                                                  int OHW) {
  const int oc = blockIdx.x;
  double acc = 0.0;
  for (int img = 0; img < N; ++img) {
    const float* row = dout + (static_cast<int64_t>(img) * OC + oc) * OHW;
    for (int i = threadIdx.x; i < OHW; i += blockDim.x) acc += row[i];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dbias[oc] += static_cast<float>(acc);
}

template <class P>
void run_gemm(const P& p, const ConvGemm& c, float* workspace, Precision precision, const char* what) {
  const GemmDesc g{c.M, c.Ncols, c.K, c.batch, c.split.slices, c.split.chunk, workspace};
  const dim3 grid((c.Ncols + kBN - 1) / kBN, (c.M + kBM - 1) / kBM, static_cast<unsigned>(c.batch) * c.split.slices);
  DBCORE_CHECK(grid.y <= 65535 && grid.z <= 65535, "EINVAL", "conv2d %s: grid %ux%ux%u is too large (M %d, batch %d)",
               what, grid.x, grid.y, grid.z, c.M, c.batch);
  DBCORE_CHECK(c.split.slices == 1 || workspace, "EINVAL", "conv2d %s: the split product needs a workspace", what);
  if (precision == Precision::BF16 && device_major() < 8) precision = Precision::F32;
  if (precision == Precision::F32)
    conv_gemm_simt_kernel<P><<<grid, kConvThreads>>>(p, g);
  else if (precision == Precision::F16)
    conv_gemm_tc_kernel<P, __half><<<grid, kConvThreads>>>(p, g);
  else
    conv_gemm_tc_kernel<P, __nv_bfloat16><<<grid, kConvThreads>>>(p, g);
  DBCORE_CUDA_CHECK_LAUNCH();
  if (c.split.slices > 1) {
    conv_split_reduce_kernel<P><<<blocks_for(static_cast<int64_t>(c.batch) * c.M * c.Ncols), kThreads>>>(p, g);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
}

ConvDims checked_dims(const cpu::Conv2dShape& s) {
  cpu::check_conv2d_shape(s);
  check_conv_int32(s);
  return conv_dims(s);
}

}  // namespace

size_t conv2d_workspace_floats(const cpu::Conv2dShape& s) {
  const ConvDims d = checked_dims(s);
  if (d.N == 0) return 0;
  size_t floats = forward_gemm(d).workspace_floats();
  floats = std::max(floats, dgrad_gemm(d).workspace_floats());
  return std::max(floats, wgrad_gemm(d).workspace_floats());
}

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* workspace,
                    const cpu::Conv2dShape& s, Precision precision) {
  const ConvDims d = checked_dims(s);
  if (d.N == 0) return;
  run_gemm(ForwardProblem{d, out, inp, weight, bias}, forward_gemm(d), workspace, precision, "forward");
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* workspace, const cpu::Conv2dShape& s, Precision precision) {
  const ConvDims d = checked_dims(s);
  if (d.N == 0) return;
  if (dinp) run_gemm(DgradProblem{d, dinp, dout, weight}, dgrad_gemm(d), workspace, precision, "input gradient");
  if (dweight) run_gemm(WgradProblem{d, dweight, dout, inp}, wgrad_gemm(d), workspace, precision, "weight gradient");
  if (dbias) {
    conv_bias_grad_kernel<<<d.OC, kThreads>>>(dbias, dout, d.N, d.OC, d.OHW);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace dbcore::cuda
