// Fused multi-head attention in fp32, twin of native/cpu/attention.cpp: softmax(scale · Q Kᵀ [+ top-left causal
// mask]) V with an online softmax (FlashAttention-2, Dao 2023): never materializes (Tq, Tk), memory O(T); backward
// recomputes the probabilities from the saved log-sum-exp.
// Dimension letters: B batch, Tq query / Tk key tokens, NH heads, D head size (≤ kMaxHead). Q (B, Tq, NH·D) with
// head h in columns [h·D, (h+1)·D), K and V (B, Tk, NH·D), out (B, Tq, NH·D), lse (B, NH, Tq).
// Precision F32: one warp per query row (forward, dq) or key row (dk, dv), each lane holding PL = ceil(D/32) columns
// (instantiated for PL 5, heads up to 160, and 16, the VAE's single 512-column head), one warp reduction per dot
// product; keys and values come through L1/L2. Precision F16 / BF16 (autocast) run the tensor-core kernels of
// attention_tc.cu for heads up to 160 (bf16 on sm_75, and wider heads, run these fp32 kernels); the backward's Di
// is the delta kernel below for both.
// Accumulation: out, lse, dq, dk, dv are written (=).
#include "attention_tc.cuh"
#include "common.cuh"
#include "cuda_backend.h"

#include <type_traits>

namespace dbcore::cuda {

namespace {

constexpr int kNarrowHead = 160;            // the UNet's and text encoders' head sizes: 40, 64, 80, 160
constexpr int kMaxHead = 512;               // the VAE's mid-block attention: one head of 512 columns
constexpr int kRowsPerBlock = 4;            // warps per block

struct AttnDims {
  int B, Tq, Tk, NH, D;
  float scale;
  bool causal;
};

// Row `t` of head h of batch b in a (B, T, NH·D) tensor.
__device__ __forceinline__ int64_t row_offset(const AttnDims& a, int b, int t, int T, int h) {
  return (static_cast<int64_t>(b) * T + t) * a.NH * a.D + static_cast<int64_t>(h) * a.D;
}

// x · y over D columns held kPerLane per lane (lanes beyond D hold zeros).
template <int kPerLane>
__device__ __forceinline__ float warp_dot(const float* x, const float* row, int D, int lane) {
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    const int d = lane + 32 * e;
    if (d < D) s += x[e] * row[d];
  }
  return warp_sum(s);
}

template <int kPerLane>
__device__ __forceinline__ void load_row(float* x, const float* row, int D, int lane, float mul = 1.f) {
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    const int d = lane + 32 * e;
    x[e] = d < D ? row[d] * mul : 0.f;
  }
}

// Warp per (b, h, i): streaming softmax over keys j (j ≤ i when causal).
template <int kPerLane>
__global__ void attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                                         AttnDims a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= static_cast<int64_t>(a.B) * a.NH * a.Tq) return;  // whole warps leave together
  const int lane = threadIdx.x;
  const int i = static_cast<int>(row % a.Tq), h = static_cast<int>((row / a.Tq) % a.NH),
            b = static_cast<int>(row / (static_cast<int64_t>(a.Tq) * a.NH));
  float qi[kPerLane], acc[kPerLane] = {};
  load_row<kPerLane>(qi, q + row_offset(a, b, i, a.Tq, h), a.D, lane, a.scale);
  float mx = -INFINITY, l = 0.f;
  const int keys = a.causal ? min(a.Tk, i + 1) : a.Tk;
  for (int j = 0; j < keys; ++j) {
    const int64_t kv = row_offset(a, b, j, a.Tk, h);
    const float s = warp_dot<kPerLane>(qi, k + kv, a.D, lane);
    const float new_mx = fmaxf(mx, s);
    const float correction = expf(mx - new_mx), p = expf(s - new_mx);
    l = l * correction + p;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int d = lane + 32 * e;
      acc[e] = acc[e] * correction + (d < a.D ? p * v[kv + d] : 0.f);
    }
    mx = new_mx;
  }
  float* o = out + row_offset(a, b, i, a.Tq, h);
  const float inv = keys > 0 ? 1.f / l : 0.f;
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    const int d = lane + 32 * e;
    if (d < a.D) o[d] = acc[e] * inv;
  }
  if (lane == 0) lse[(static_cast<int64_t>(b) * a.NH + h) * a.Tq + i] = keys > 0 ? mx + logf(l) : -INFINITY;
}

// delta (B, NH, Tq) = Σ_d dout · out per query row (FlashAttention-2's D_i).
template <int kPerLane>
__global__ void attention_delta_kernel(float* delta, const float* dout, const float* out, AttnDims a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= static_cast<int64_t>(a.B) * a.NH * a.Tq) return;
  const int i = static_cast<int>(row % a.Tq), h = static_cast<int>((row / a.Tq) % a.NH),
            b = static_cast<int>(row / (static_cast<int64_t>(a.Tq) * a.NH));
  float o[kPerLane];
  const int64_t off = row_offset(a, b, i, a.Tq, h);
  load_row<kPerLane>(o, out + off, a.D, threadIdx.x);
  const float s = warp_dot<kPerLane>(o, dout + off, a.D, threadIdx.x);
  if (threadIdx.x == 0) delta[row] = s;  // row = (b·NH + h)·Tq + i
}

// dq_i = scale · Σ_j p_ij (dout_i·v_j − delta_i) k_j, warp per query row.
template <int kPerLane>
__global__ void attention_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                                    const float* lse, const float* delta, AttnDims a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= static_cast<int64_t>(a.B) * a.NH * a.Tq) return;
  const int lane = threadIdx.x;
  const int i = static_cast<int>(row % a.Tq), h = static_cast<int>((row / a.Tq) % a.NH),
            b = static_cast<int>(row / (static_cast<int64_t>(a.Tq) * a.NH));
  const int64_t off = row_offset(a, b, i, a.Tq, h);
  float qi[kPerLane], doi[kPerLane], acc[kPerLane] = {};
  load_row<kPerLane>(qi, q + off, a.D, lane, a.scale);
  load_row<kPerLane>(doi, dout + off, a.D, lane);
  const float L = lse[row], Di = delta[row];
  const int keys = a.causal ? min(a.Tk, i + 1) : a.Tk;
  for (int j = 0; j < keys; ++j) {
    const int64_t kv = row_offset(a, b, j, a.Tk, h);
    const float p = expf(warp_dot<kPerLane>(qi, k + kv, a.D, lane) - L);
    const float ds = p * (warp_dot<kPerLane>(doi, v + kv, a.D, lane) - Di);
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int d = lane + 32 * e;
      if (d < a.D) acc[e] += ds * k[kv + d];
    }
  }
  float* out = dq + off;
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    const int d = lane + 32 * e;
    if (d < a.D) out[d] = acc[e] * a.scale;
  }
}

// dv_j = Σ_i p_ij dout_i, dk_j = scale · Σ_i p_ij (dout_i·v_j − delta_i) q_i, warp per key row.
template <int kPerLane>
__global__ void attention_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                                     const float* v, const float* lse, const float* delta, AttnDims a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= static_cast<int64_t>(a.B) * a.NH * a.Tk) return;
  const int lane = threadIdx.x;
  const int j = static_cast<int>(row % a.Tk), h = static_cast<int>((row / a.Tk) % a.NH),
            b = static_cast<int>(row / (static_cast<int64_t>(a.Tk) * a.NH));
  const int64_t off = row_offset(a, b, j, a.Tk, h);
  float kj[kPerLane], vj[kPerLane], dk_acc[kPerLane] = {}, dv_acc[kPerLane] = {};
  load_row<kPerLane>(kj, k + off, a.D, lane, a.scale);
  load_row<kPerLane>(vj, v + off, a.D, lane);
  const int64_t stats = (static_cast<int64_t>(b) * a.NH + h) * a.Tq;
  for (int i = a.causal ? j : 0; i < a.Tq; ++i) {
    const int64_t qo = row_offset(a, b, i, a.Tq, h);
    const float p = expf(warp_dot<kPerLane>(kj, q + qo, a.D, lane) - lse[stats + i]);
    const float ds = p * (warp_dot<kPerLane>(vj, dout + qo, a.D, lane) - delta[stats + i]);
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      const int d = lane + 32 * e;
      if (d < a.D) {
        dv_acc[e] += p * dout[qo + d];
        dk_acc[e] += ds * q[qo + d];
      }
    }
  }
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    const int d = lane + 32 * e;
    if (d < a.D) {
      dk[off + d] = dk_acc[e] * a.scale;
      dv[off + d] = dv_acc[e];
    }
  }
}

unsigned blocks_for_rows(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  DBCORE_CHECK(blocks <= 0x7fffffff, "EINVAL", "attention: %lld rows is too many", static_cast<long long>(rows));
  return static_cast<unsigned>(blocks);
}

// Calls f(std::integral_constant<int, PL>) with the columns per lane of the fp32 kernels' instance for D.
template <typename F>
void with_columns_per_lane(int D, F&& f) {
  if (D <= kNarrowHead)
    f(std::integral_constant<int, kNarrowHead / 32>{});
  else
    f(std::integral_constant<int, kMaxHead / 32>{});
}

// The fp32 kernels of the backward after the delta kernel: dq per query row, dk and dv per key row.
void launch_backward_fp32(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* lse, const float* delta, const AttnDims& a, int64_t q_rows,
                          int64_t k_rows) {
  with_columns_per_lane(a.D, [&](auto per_lane) {
    constexpr int PL = decltype(per_lane)::value;
    attention_dq_kernel<PL><<<blocks_for_rows(q_rows), dim3(32, kRowsPerBlock)>>>(dq, dout, q, k, v, lse, delta, a);
    DBCORE_CUDA_CHECK_LAUNCH();
    if (k_rows == 0) return;
    attention_dkv_kernel<PL>
        <<<blocks_for_rows(k_rows), dim3(32, kRowsPerBlock)>>>(dk, dv, dout, q, k, v, lse, delta, a);
    DBCORE_CUDA_CHECK_LAUNCH();
  });
}

AttnDims attention_dims(int B, int Tq, int Tk, int NH, int D, float scale, bool causal) {
  DBCORE_CHECK(D > 0 && D <= kMaxHead, "EINVAL", "attention: head size D = %d is outside [1, %d]", D, kMaxHead);
  DBCORE_CHECK(B >= 0 && Tq >= 0 && Tk >= 0 && NH >= 0, "EINVAL", "attention: negative size");
  return AttnDims{B, Tq, Tk, NH, D, scale, causal};
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int NH, int D, float scale, bool causal, Precision precision) {
  AttnDims a = attention_dims(B, Tq, Tk, NH, D, scale, causal);
  const int64_t rows = static_cast<int64_t>(B) * NH * Tq;
  if (rows == 0) return;
  if (attention_uses_tensor_cores(precision, Tk, D)) {
    attention_forward_tc(out, lse, q, k, v, B, Tq, Tk, NH, D, scale, causal, precision);
    return;
  }
  with_columns_per_lane(D, [&](auto per_lane) {
    constexpr int PL = decltype(per_lane)::value;
    attention_forward_kernel<PL><<<blocks_for_rows(rows), dim3(32, kRowsPerBlock)>>>(out, lse, q, k, v, a);
    DBCORE_CUDA_CHECK_LAUNCH();
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int NH, int D,
                        float scale, bool causal, Precision precision) {
  AttnDims a = attention_dims(B, Tq, Tk, NH, D, scale, causal);
  const int64_t q_rows = static_cast<int64_t>(B) * NH * Tq, k_rows = static_cast<int64_t>(B) * NH * Tk;
  if (k_rows > 0 && q_rows == 0) {  // no queries: the key gradients are zero
    DBCORE_CUDA_CHECK(cudaMemset(dk, 0, sizeof(float) * k_rows * D));
    DBCORE_CUDA_CHECK(cudaMemset(dv, 0, sizeof(float) * k_rows * D));
  }
  if (q_rows == 0) return;
  float* delta = static_cast<float*>(thread_scratch(sizeof(float) * q_rows));
  with_columns_per_lane(D, [&](auto per_lane) {
    constexpr int PL = decltype(per_lane)::value;
    attention_delta_kernel<PL><<<blocks_for_rows(q_rows), dim3(32, kRowsPerBlock)>>>(delta, dout, out, a);
    DBCORE_CUDA_CHECK_LAUNCH();
  });
  if (attention_uses_tensor_cores(precision, Tk, D)) {
    attention_backward_tc(dq, dk, dv, dout, q, k, v, lse, delta, B, Tq, Tk, NH, D, scale, causal, precision);
  } else {
    launch_backward_fp32(dq, dk, dv, dout, q, k, v, lse, delta, a, q_rows, k_rows);
  }
}

}  // namespace dbcore::cuda
