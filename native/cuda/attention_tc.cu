// Flash attention on tensor cores (Precision F16 / BF16), the mixed-precision twin of cpu/attention.cpp at the same
// precision: FlashAttention-2 (Dao 2023) forward (Alg. 1) and backward (Alg. 2).
// Dimension letters as cpu/attention.h: B batch, Tq query / Tk key tokens, NH heads, D head size, C = NH·D (row
// stride of q, k, v, out, dout, all fp32 in global memory), Dp the padded head size (attention_tiles.h).
// Data flow: q, k, v, dout tiles are rounded to fp16/bf16 as they are staged into shared memory (rows beyond T and
// columns beyond D are zeros); every product runs on mma.sync m16n8k16 with fp32 accumulators (mma.cuh); the
// softmax statistics (running max m, running sum l, lse, Di) stay fp32 in registers; the probabilities P (and dS in
// the backward) are rounded to fp16/bf16 in registers, straight from the accumulator layout into the A operand
// layout of the next product (an S accumulator pair of n8 blocks 2t, 2t+1 is the A fragment of k-step t).
// Tiling (attention_tiles.h's plans), each warp owning 16 rows:
//  - forward: CTA = 64 query rows of one (batch, head) = 4 warps; Q kept as A fragments in registers; loop over key
//    tiles of 64: S = Q Kᵀ (B operand read from K[j][d] rows), online softmax, O += P V (B operand from V[j][d] by
//    ldmatrix.trans). lse = m + log l.
//  - backward dK, dV: CTA = `keys` key rows (4 warps, 2 for Dp > 80); loop over query tiles: Sᵀ = K Qᵀ,
//    Pᵀ = exp(scale·Sᵀ − lse), dPᵀ = V dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ − Di), dV += Pᵀ dO, dK += dSᵀ Q (then · scale).
//  - backward dQ: CTA = `rows` query rows; loop over key tiles: S, P, dP, dS as above, dQ += dS K (then · scale).
//    dQ has its own pass (it recomputes S and dP) so that every output element is written by one thread from one
//    fixed-order sum: no atomics, results independent of scheduling.
// Causal (top-left, j ≤ i): tiles past the diagonal are skipped per CTA (loop bounds) and per warp; masked scores are
// -inf (forward) or P = 0 (backward). Accumulation: out, lse, dq, dk, dv are written (=).
#include "attention_tc.cuh"
#include "attention_tiles.h"
#include "common.cuh"
#include "mma.cuh"

#include <initializer_list>
#include <type_traits>

namespace dbcore::cuda {

namespace {

namespace at = attn_tiles;
using at::kRowPad;

struct TcShape {
  int B, Tq, Tk, NH, D;
  float scale;
  bool causal;
  bool vec4;  // D % 4 == 0 and every staged input 16-byte aligned: tiles are staged with float4 loads
};

// Element offset of (batch b, token 0, head h) in a (B, T, NH·D) tensor.
__device__ __forceinline__ int64_t head_base(const TcShape& a, int b, int T, int h) {
  return static_cast<int64_t>(b) * T * a.NH * a.D + static_cast<int64_t>(h) * a.D;
}

// Rows [r0, r0 + ROWS) of one head (src = its row 0, rows C apart) into the shared tile (ROWS, DP + kRowPad),
// rounded to T; rows ≥ T_rows and columns ≥ D are zeros. Consecutive threads read consecutive columns.
template <typename T, int ROWS, int DP, int THREADS>
__device__ __forceinline__ void stage_rows(T* tile, const float* src, int r0, int T_rows, const TcShape& a) {
  constexpr int LD = DP + kRowPad;
  const int64_t C = static_cast<int64_t>(a.NH) * a.D;
  if (a.vec4) {
    constexpr int kVecs = DP / 4;
    for (int e = threadIdx.x; e < ROWS * kVecs; e += THREADS) {
      const int r = e / kVecs, c = (e % kVecs) * 4;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r0 + r < T_rows && c < a.D) x = *reinterpret_cast<const float4*>(src + (r0 + r) * C + c);
      *reinterpret_cast<uint2*>(tile + r * LD + c) = make_uint2(pack_low<T>(x.x, x.y), pack_low<T>(x.z, x.w));
    }
  } else {
    for (int e = threadIdx.x; e < ROWS * DP; e += THREADS) {
      const int r = e / DP, c = e % DP;
      tile[r * LD + c] = to_low<T>(r0 + r < T_rows && c < a.D ? src[(r0 + r) * C + c] : 0.f);
    }
  }
}

// A fragments (16 rows from `row0`, k-step kk) of a row-major shared tile.
template <typename T, int LD>
__device__ __forceinline__ void load_a(uint32_t* a, const T* tile, int row0, int kk, int group, int quad) {
  const T* r0 = tile + (row0 + group) * LD;
  const T* r8 = r0 + 8 * LD;
  a[0] = pair_at(r0, 16 * kk + 2 * quad);
  a[1] = pair_at(r8, 16 * kk + 2 * quad);
  a[2] = pair_at(r0, 16 * kk + 2 * quad + 8);
  a[3] = pair_at(r8, 16 * kk + 2 * quad + 8);
}

// B fragment (n8 block from tile row n0, k-step kk) of the product X · Yᵀ, Y a row-major shared tile (k contiguous).
template <typename T, int LD>
__device__ __forceinline__ void load_b_rows(uint32_t* b, const T* tile, int n0, int kk, int group, int quad) {
  const T* r = tile + (n0 + group) * LD;
  b[0] = pair_at(r, 16 * kk + 2 * quad);
  b[1] = pair_at(r, 16 * kk + 2 * quad + 8);
}

// The two products of a backward tile that share their loop over the head dimension: for each of the N n8 blocks,
// s[n] += A1 (16 rows from a_row) · B1 (rows 8n..8n+7)ᵀ and dp[n] += A2 · B2ᵀ (S and dP, or Sᵀ and dPᵀ).
template <typename T, int LD, int N, int KSTEPS>
__device__ __forceinline__ void paired_products(float (&s)[N][4], float (&dp)[N][4], const T* a1, const T* a2,
                                                const T* b1, const T* b2, int a_row, int group, int quad) {
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk) {
    uint32_t x[4], y[4];
    load_a<T, LD>(x, a1, a_row, kk, group, quad);
    load_a<T, LD>(y, a2, a_row, kk, group, quad);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      uint32_t u[2], v[2];
      load_b_rows<T, LD>(u, b1, 8 * n, kk, group, quad);
      load_b_rows<T, LD>(v, b2, 8 * n, kk, group, quad);
      mma_16816<T>(s[n], x, u);
      mma_16816<T>(dp[n], y, v);
    }
  }
}

// A fragment of k-step t from fp32 accumulators x[2t], x[2t+1] (16 rows x 16 cols), rounded to T.
template <typename T>
__device__ __forceinline__ void accumulators_to_a(uint32_t* a, const float* lo, const float* hi) {
  a[0] = pack_low<T>(lo[0], lo[1]);
  a[1] = pack_low<T>(lo[2], lo[3]);
  a[2] = pack_low<T>(hi[0], hi[1]);
  a[3] = pack_low<T>(hi[2], hi[3]);
}

// acc (16 x DP) += X (16 x 16·KT, as KT A fragments) · Y (16·KT x DP) with Y k-major in shared memory.
template <typename T, int LD, int NHEAD>
__device__ __forceinline__ void mma_rows_times_tile(float (*acc)[4], const uint32_t* x_frag, const T* y, int k0,
                                                    int lane) {
#pragma unroll
  for (int d = 0; d < NHEAD; d += 2) {
    uint32_t b[4];
    ldmatrix_b_trans_x4(b, y, LD, k0, 8 * d, lane);
    mma_16816<T>(acc[d], x_frag, b);
    mma_16816<T>(acc[d + 1], x_frag, b + 2);
  }
}

// Row max over the 4 lanes of a quad (they hold the same rows).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Stores a warp's 16 x DP accumulator rows [row0, row0 + 16) times `mul` into a (B, T, NH·D) tensor (dst = the
// head's row 0), skipping rows ≥ T_rows and columns ≥ D. mul0 / mul1 scale rows group / group + 8.
template <int NHEAD>
__device__ __forceinline__ void store_rows(float* dst, const float (*acc)[4], int row0, int T_rows, float mul0,
                                           float mul1, const TcShape& a, int group, int quad) {
  const int64_t C = static_cast<int64_t>(a.NH) * a.D;
  const int r0 = row0 + group, r1 = r0 + 8;
#pragma unroll
  for (int d = 0; d < NHEAD; ++d) {
    const int c = 8 * d + 2 * quad;
    if (r0 < T_rows) {
      if (c < a.D) dst[r0 * C + c] = acc[d][0] * mul0;
      if (c + 1 < a.D) dst[r0 * C + c + 1] = acc[d][1] * mul0;
    }
    if (r1 < T_rows) {
      if (c < a.D) dst[r1 * C + c] = acc[d][2] * mul1;
      if (c + 1 < a.D) dst[r1 * C + c + 1] = acc[d][3] * mul1;
    }
  }
}

// ---- forward ----------------------------------------------------------------------------------------------------
constexpr int kFwdRows = at::forward_plan(0).rows, kFwdKeys = at::forward_plan(0).keys;
constexpr int kFwdThreads = kFwdRows / 16 * 32;
static_assert(kFwdRows <= kFwdKeys, "Q is staged through the K tile");

template <typename T, int DP>
__global__ void __launch_bounds__(kFwdThreads) attention_forward_tc_kernel(float* out, float* lse, const float* q,
                                                                           const float* k, const float* v, TcShape a) {
  static_assert(at::forward_shared_bytes(DP) <= at::kStaticSharedLimit, "forward tiles exceed static shared memory");
  constexpr int LD = DP + kRowPad, KSTEPS = DP / 16, NKEY = kFwdKeys / 8, NHEAD = DP / 8;
  __shared__ __align__(16) T Ks[kFwdKeys * LD];
  __shared__ __align__(16) T Vs[kFwdKeys * LD];
  const int q0 = blockIdx.x * kFwdRows, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
  const int wrow = q0 + 16 * warp;                   // the warp's first query row
  const int row[2] = {wrow + group, wrow + group + 8};  // the rows this thread's accumulators hold
  const float* kh = k + head_base(a, b, a.Tk, h);
  const float* vh = v + head_base(a, b, a.Tk, h);

  // Q tile through the K buffer into A fragments.
  stage_rows<T, kFwdRows, DP, kFwdThreads>(Ks, q + head_base(a, b, a.Tq, h), q0, a.Tq, a);
  __syncthreads();
  uint32_t qf[KSTEPS][4];
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk) load_a<T, LD>(qf[kk], Ks, 16 * warp, kk, group, quad);
  __syncthreads();

  float o[NHEAD][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this lane's partial sums (quad-reduced at the end)
  const int keys = at::key_end(q0, kFwdRows, a.Tk, a.causal);
  for (int j0 = 0; j0 < keys; j0 += kFwdKeys) {
    stage_rows<T, kFwdKeys, DP, kFwdThreads>(Ks, kh, j0, a.Tk, a);
    stage_rows<T, kFwdKeys, DP, kFwdThreads>(Vs, vh, j0, a.Tk, a);
    __syncthreads();
    if (!a.causal || j0 <= wrow + 15) {  // else every key of the tile is past this warp's rows
      float s[NKEY][4] = {};
#pragma unroll
      for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
        for (int n = 0; n < NKEY; ++n) {
          uint32_t kb[2];
          load_b_rows<T, LD>(kb, Ks, 8 * n, kk, group, quad);
          mma_16816<T>(s[n], qf[kk], kb);
        }
      // Scale, mask (only tiles that reach past Tk or the diagonal), and the tile's row maxima.
      const bool edge = j0 + kFwdKeys > a.Tk || (a.causal && j0 + kFwdKeys - 1 > wrow);
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < NKEY; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[n][e] * a.scale;
          if (edge && !at::visible(row[e / 2], j0 + 8 * n + 2 * quad + (e & 1), a.Tk, a.causal)) x = -INFINITY;
          s[n][e] = x;
          mx[e / 2] = fmaxf(mx[e / 2], x);
        }
      float alpha[2], shift[2], sum[2] = {0.f, 0.f};
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        alpha[r] = at::rescale_to(m[r], quad_max(mx[r]));
        shift[r] = at::exp_shift(m[r]);
      }
#pragma unroll
      for (int n = 0; n < NKEY; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[n][e] = expf(s[n][e] - shift[e / 2]);
          sum[e / 2] += s[n][e];
        }
#pragma unroll
      for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + sum[r];
#pragma unroll
      for (int d = 0; d < NHEAD; ++d) {
        o[d][0] *= alpha[0], o[d][1] *= alpha[0];
        o[d][2] *= alpha[1], o[d][3] *= alpha[1];
      }
      // O += P V, P rounded to T.
#pragma unroll
      for (int t = 0; t < kFwdKeys / 16; ++t) {
        uint32_t pa[4];
        accumulators_to_a<T>(pa, s[2 * t], s[2 * t + 1]);
        mma_rows_times_tile<T, LD, NHEAD>(o, pa, Vs, 16 * t, lane);
      }
    }
    __syncthreads();  // the next tile overwrites Ks, Vs
  }
  const float l0 = quad_sum(l[0]), l1 = quad_sum(l[1]);
  store_rows<NHEAD>(out + head_base(a, b, a.Tq, h), o, wrow, a.Tq, at::row_inverse(l0), at::row_inverse(l1), a, group,
                    quad);
  if (quad == 0) {
    float* lse_h = lse + (static_cast<int64_t>(b) * a.NH + h) * a.Tq;
    if (row[0] < a.Tq) lse_h[row[0]] = at::row_lse(m[0], l0);
    if (row[1] < a.Tq) lse_h[row[1]] = at::row_lse(m[1], l1);
  }
}

// ---- backward ---------------------------------------------------------------------------------------------------
template <int DP>
constexpr int kBwdRows = at::backward_plan(DP).rows;
template <int DP>
constexpr int kBwdKeys = at::backward_plan(DP).keys;

// dK, dV for `keys` key rows; warp w owns keys [j0 + 16w, j0 + 16w + 16).
template <typename T, int DP>
__global__ void __launch_bounds__(kBwdKeys<DP> / 16 * 32)
    attention_dkdv_tc_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                             const float* lse, const float* delta, TcShape a) {
  static_assert(at::backward_shared_bytes(DP) <= at::kStaticSharedLimit, "backward tiles exceed static shared memory");
  constexpr int ROWS = kBwdRows<DP>, KEYS = kBwdKeys<DP>, THREADS = KEYS / 16 * 32;
  constexpr int LD = DP + kRowPad, KSTEPS = DP / 16, NQ = ROWS / 8, NHEAD = DP / 8;
  __shared__ __align__(16) T Ks[KEYS * LD];
  __shared__ __align__(16) T Vs[KEYS * LD];
  __shared__ __align__(16) T Qs[ROWS * LD];
  __shared__ __align__(16) T dOs[ROWS * LD];
  __shared__ float lse_s[ROWS], delta_s[ROWS];
  const int j0 = blockIdx.x * KEYS, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
  const int wkey = j0 + 16 * warp;
  const int key[2] = {wkey + group, wkey + group + 8};
  const float* qh = q + head_base(a, b, a.Tq, h);
  const float* doh = dout + head_base(a, b, a.Tq, h);
  const int64_t stats = (static_cast<int64_t>(b) * a.NH + h) * a.Tq;
  stage_rows<T, KEYS, DP, THREADS>(Ks, k + head_base(a, b, a.Tk, h), j0, a.Tk, a);
  stage_rows<T, KEYS, DP, THREADS>(Vs, v + head_base(a, b, a.Tk, h), j0, a.Tk, a);

  float dk_acc[NHEAD][4] = {}, dv_acc[NHEAD][4] = {};
  for (int i0 = at::query_begin(j0, ROWS, a.causal); i0 < a.Tq; i0 += ROWS) {
    stage_rows<T, ROWS, DP, THREADS>(Qs, qh, i0, a.Tq, a);
    stage_rows<T, ROWS, DP, THREADS>(dOs, doh, i0, a.Tq, a);
    for (int t = threadIdx.x; t < ROWS; t += THREADS) {
      const bool in = i0 + t < a.Tq;
      lse_s[t] = in ? lse[stats + i0 + t] : INFINITY;  // padding queries: P = exp(-inf) = 0
      delta_s[t] = in ? delta[stats + i0 + t] : 0.f;
    }
    __syncthreads();
    if (!a.causal || i0 + ROWS - 1 >= wkey) {  // else every query of the tile is before this warp's keys
      // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (16 keys x ROWS queries).
      float s[NQ][4] = {}, dp[NQ][4] = {};
      paired_products<T, LD, NQ, KSTEPS>(s, dp, Ks, Vs, Qs, dOs, 16 * warp, group, quad);
      // Pᵀ = exp(scale·Sᵀ − lse) (0 where masked), dSᵀ = Pᵀ ∘ (dPᵀ − Di), element (key, query t).
#pragma unroll
      for (int n = 0; n < NQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = 8 * n + 2 * quad + (e & 1);
          float p = expf(s[n][e] * a.scale - lse_s[t]);
          if (a.causal && key[e / 2] > i0 + t) p = 0.f;
          s[n][e] = p;
          dp[n][e] = p * (dp[n][e] - delta_s[t]);
        }
      // dV += Pᵀ dO, dK += dSᵀ Q over the tile's queries (k-steps of 16).
#pragma unroll
      for (int t = 0; t < ROWS / 16; ++t) {
        uint32_t pa[4], dsa[4];
        accumulators_to_a<T>(pa, s[2 * t], s[2 * t + 1]);
        accumulators_to_a<T>(dsa, dp[2 * t], dp[2 * t + 1]);
        mma_rows_times_tile<T, LD, NHEAD>(dv_acc, pa, dOs, 16 * t, lane);
        mma_rows_times_tile<T, LD, NHEAD>(dk_acc, dsa, Qs, 16 * t, lane);
      }
    }
    __syncthreads();  // the next query tile overwrites Qs, dOs, lse_s, delta_s
  }
  store_rows<NHEAD>(dk + head_base(a, b, a.Tk, h), dk_acc, wkey, a.Tk, a.scale, a.scale, a, group, quad);
  store_rows<NHEAD>(dv + head_base(a, b, a.Tk, h), dv_acc, wkey, a.Tk, 1.f, 1.f, a, group, quad);
}

// dQ for `rows` query rows; warp w owns queries [i0 + 16w, i0 + 16w + 16).
template <typename T, int DP>
__global__ void __launch_bounds__(kBwdRows<DP> / 16 * 32)
    attention_dq_tc_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                           const float* lse, const float* delta, TcShape a) {
  constexpr int ROWS = kBwdRows<DP>, KEYS = kBwdKeys<DP>, THREADS = ROWS / 16 * 32;
  constexpr int LD = DP + kRowPad, KSTEPS = DP / 16, NKEY = KEYS / 8, NHEAD = DP / 8;
  __shared__ __align__(16) T Qs[ROWS * LD];
  __shared__ __align__(16) T dOs[ROWS * LD];
  __shared__ __align__(16) T Ks[KEYS * LD];
  __shared__ __align__(16) T Vs[KEYS * LD];
  const int i0 = blockIdx.x * ROWS, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, group = lane / 4, quad = lane % 4;
  const int wrow = i0 + 16 * warp;
  const int row[2] = {wrow + group, wrow + group + 8};
  const float* kh = k + head_base(a, b, a.Tk, h);
  const float* vh = v + head_base(a, b, a.Tk, h);
  const int64_t stats = (static_cast<int64_t>(b) * a.NH + h) * a.Tq;
  float L[2], Di[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    L[r] = row[r] < a.Tq ? lse[stats + row[r]] : INFINITY;
    Di[r] = row[r] < a.Tq ? delta[stats + row[r]] : 0.f;
  }
  stage_rows<T, ROWS, DP, THREADS>(Qs, q + head_base(a, b, a.Tq, h), i0, a.Tq, a);
  stage_rows<T, ROWS, DP, THREADS>(dOs, dout + head_base(a, b, a.Tq, h), i0, a.Tq, a);

  float dq_acc[NHEAD][4] = {};
  const int keys = at::key_end(i0, ROWS, a.Tk, a.causal);
  for (int j0 = 0; j0 < keys; j0 += KEYS) {
    stage_rows<T, KEYS, DP, THREADS>(Ks, kh, j0, a.Tk, a);
    stage_rows<T, KEYS, DP, THREADS>(Vs, vh, j0, a.Tk, a);
    __syncthreads();
    if (!a.causal || j0 <= wrow + 15) {
      // S = Q Kᵀ and dP = dO Vᵀ (16 queries x KEYS keys).
      float s[NKEY][4] = {}, dp[NKEY][4] = {};
      paired_products<T, LD, NKEY, KSTEPS>(s, dp, Qs, dOs, Ks, Vs, 16 * warp, group, quad);
      // dS = P ∘ (dP − Di), P = exp(scale·S − lse) where visible, into s.
#pragma unroll
      for (int n = 0; n < NKEY; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = j0 + 8 * n + 2 * quad + (e & 1);
          const float p = at::visible(row[e / 2], j, a.Tk, a.causal) ? expf(s[n][e] * a.scale - L[e / 2]) : 0.f;
          s[n][e] = p * (dp[n][e] - Di[e / 2]);
        }
      // dQ += dS K over the tile's keys.
#pragma unroll
      for (int t = 0; t < KEYS / 16; ++t) {
        uint32_t dsa[4];
        accumulators_to_a<T>(dsa, s[2 * t], s[2 * t + 1]);
        mma_rows_times_tile<T, LD, NHEAD>(dq_acc, dsa, Ks, 16 * t, lane);
      }
    }
    __syncthreads();
  }
  store_rows<NHEAD>(dq + head_base(a, b, a.Tq, h), dq_acc, wrow, a.Tq, a.scale, a.scale, a, group, quad);
}

// ---- host side ----------------------------------------------------------------------------------------------------
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

TcShape tc_shape(int B, int Tq, int Tk, int NH, int D, float scale, bool causal,
                 std::initializer_list<const float*> tensors) {
  DBCORE_CHECK(at::padded_head(D) > 0, "EINVAL", "attention: head size D = %d is outside [1, %d]", D, at::kMaxHead);
  DBCORE_CHECK(NH <= 65535 && B <= 65535, "EINVAL", "attention: %d heads x batch %d is over the grid limits", NH, B);
  bool vec4 = D % 4 == 0;
  for (const float* t : tensors) vec4 = vec4 && aligned16(t);
  return TcShape{B, Tq, Tk, NH, D, scale, causal, vec4};
}

// Calls f(std::integral_constant<int, Dp>) for D's padded head size (attention_tiles.h's list).
template <typename F>
void with_padded_head(int D, F&& f) {
  switch (at::padded_head(D)) {
    case 32: return f(std::integral_constant<int, 32>{});
    case 48: return f(std::integral_constant<int, 48>{});
    case 64: return f(std::integral_constant<int, 64>{});
    case 80: return f(std::integral_constant<int, 80>{});
    case 128: return f(std::integral_constant<int, 128>{});
    default: return f(std::integral_constant<int, 160>{});
  }
}

template <typename T>
void forward_tc(float* out, float* lse, const float* q, const float* k, const float* v, const TcShape& a) {
  with_padded_head(a.D, [&](auto dp) {
    constexpr int DP = decltype(dp)::value;
    const dim3 grid(at::ceil_div(a.Tq, kFwdRows), a.NH, a.B);
    attention_forward_tc_kernel<T, DP><<<grid, kFwdThreads>>>(out, lse, q, k, v, a);
    DBCORE_CUDA_CHECK_LAUNCH();
  });
}

template <typename T>
void backward_tc(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                 const float* lse, const float* delta, const TcShape& a) {
  with_padded_head(a.D, [&](auto dp) {
    constexpr int DP = decltype(dp)::value;
    const dim3 key_grid(at::ceil_div(a.Tk, kBwdKeys<DP>), a.NH, a.B);
    attention_dkdv_tc_kernel<T, DP><<<key_grid, kBwdKeys<DP> / 16 * 32>>>(dk, dv, dout, q, k, v, lse, delta, a);
    DBCORE_CUDA_CHECK_LAUNCH();
    const dim3 query_grid(at::ceil_div(a.Tq, kBwdRows<DP>), a.NH, a.B);
    attention_dq_tc_kernel<T, DP><<<query_grid, kBwdRows<DP> / 16 * 32>>>(dq, dout, q, k, v, lse, delta, a);
    DBCORE_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

bool attention_uses_tensor_cores(Precision precision, int Tk, int D) {
  if (precision == Precision::F32 || Tk == 0 || at::padded_head(D) == 0) return false;
  return precision == Precision::F16 || device_major() >= 8;
}

void attention_forward_tc(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                          int Tk, int NH, int D, float scale, bool causal, Precision precision) {
  const TcShape a = tc_shape(B, Tq, Tk, NH, D, scale, causal, {q, k, v});
  if (precision == Precision::F16)
    forward_tc<__half>(out, lse, q, k, v, a);
  else
    forward_tc<__nv_bfloat16>(out, lse, q, k, v, a);
}

void attention_backward_tc(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                           const float* v, const float* lse, const float* delta, int B, int Tq, int Tk, int NH, int D,
                           float scale, bool causal, Precision precision) {
  const TcShape a = tc_shape(B, Tq, Tk, NH, D, scale, causal, {dout, q, k, v});
  if (precision == Precision::F16)
    backward_tc<__half>(dq, dk, dv, dout, q, k, v, lse, delta, a);
  else
    backward_tc<__nv_bfloat16>(dq, dk, dv, dout, q, k, v, lse, delta, a);
}

}  // namespace dbcore::cuda
