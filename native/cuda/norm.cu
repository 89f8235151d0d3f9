// GroupNorm and LayerNorm, twins of native/cpu/norm.cpp (ref: torch.nn.GroupNorm / LayerNorm: biased variance,
// eps inside the sqrt). Dimension letters: N batch, C channels, HW spatial, G groups, CG = C/G, K elements of one
// group or row; M rows (LayerNorm).
// Statistics in fp32 per thread, reduced across the block in double, two passes (mean, then Σ (x - mean)²), as
// the CPU twin. Saved: mean and rstd = 1/sqrt(var + eps).
// Backward (x̂ = (x - mean)·rstd, dx̂ = dout·weight): dinp = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)) (=, skipped
// when null); dweight += Σ dout · x̂, dbias += Σ dout (atomics across blocks, skipped when null).
// GroupNorm + SiLU: out = silu(y), y = x̂·weight + bias not stored; the backward recomputes y for silu'(y).
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kNormThreads = 256;
constexpr int kRowsPerParamBlock = 64;  // LayerNorm parameter gradients: rows summed by one thread

// Mean and rstd of x[0, K) by the whole block (two passes, double across threads).
__device__ void block_stats(const float* x, int64_t K, float eps, float& mu, float& r) {
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < K; i += blockDim.x) s += x[i];
  mu = static_cast<float>(block_sum(static_cast<double>(s)) / K);
  float sq = 0.f;
  for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
    float d = x[i] - mu;
    sq += d * d;
  }
  double var = block_sum(static_cast<double>(sq)) / K;
  r = static_cast<float>(1.0 / sqrt(var + eps));
}

// y = x·scale + shift with scale = rstd·weight, shift = bias - mean·scale (the CPU twin's form).
struct ChannelAffine {
  float scale, shift;
  __device__ ChannelAffine(float mu, float r, float w, float b) : scale(r * w), shift(b - mu * (r * w)) {}
};

// The gradient reaching the norm: dout itself, or dout · silu'(y) with y recomputed (GroupNorm + SiLU).
template <bool kSilu>
__device__ __forceinline__ float norm_grad(float dout, float x, ChannelAffine a) {
  if (!kSilu) return dout;
  const float y = x * a.scale + a.shift, s = sigmoid(y);
  return dout * s * (1.f + y * (1.f - s));
}

// One block per group (n, g): the contiguous K = CG·HW elements at (n·G + g)·K; y = act(x·scale + shift).
template <bool kSilu>
__global__ void groupnorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int C, int HW, int G, float eps) {
  const int CG = C / G;
  const int64_t K = static_cast<int64_t>(CG) * HW, ng = blockIdx.x;
  const float* x = inp + ng * K;
  float* y = out + ng * K;
  float mu, r;
  block_stats(x, K, eps, mu, r);
  if (threadIdx.x == 0) {
    mean[ng] = mu;
    rstd[ng] = r;
  }
  const int c0 = static_cast<int>(ng % G) * CG;
  for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
    const int c = c0 + static_cast<int>(i / HW);
    const ChannelAffine a(mu, r, weight[c], bias[c]);
    const float v = x[i] * a.scale + a.shift;
    y[i] = kSilu ? v * sigmoid(v) : v;
  }
}

// One block per group; bias is read only with SiLU. dinp may alias dout (each element is read, then written, by
// the same thread).
template <bool kSilu>
__global__ void groupnorm_backward_kernel(float* dinp, float* dweight, float* dbias, const float* dout,
                                          const float* inp, const float* weight, const float* bias,
                                          const float* mean, const float* rstd, int C, int HW, int G) {
  const int CG = C / G;
  const int64_t K = static_cast<int64_t>(CG) * HW, ng = blockIdx.x;
  const float* x = inp + ng * K;
  const float* dy = dout + ng * K;
  const float mu = mean[ng], r = rstd[ng];
  const int c0 = static_cast<int>(ng % G) * CG;
  auto affine = [&](int c) { return ChannelAffine(mu, r, weight[c], kSilu ? bias[c] : 0.f); };
  double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;  // the same value in every thread (block_sum broadcasts)
  for (int c = 0; c < CG; ++c) {
    const float* xc = x + static_cast<int64_t>(c) * HW;
    const float* dyc = dy + static_cast<int64_t>(c) * HW;
    const ChannelAffine a = affine(c0 + c);
    float s_dy = 0.f, s_dy_xhat = 0.f;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
      const float g = norm_grad<kSilu>(dyc[i], xc[i], a);
      s_dy += g;
      s_dy_xhat += g * ((xc[i] - mu) * r);
    }
    const double dy_sum = block_sum(static_cast<double>(s_dy));
    const double dy_xhat = block_sum(static_cast<double>(s_dy_xhat));
    if (threadIdx.x == 0) {
      if (dweight) atomicAdd(dweight + c0 + c, static_cast<float>(dy_xhat));
      if (dbias) atomicAdd(dbias + c0 + c, static_cast<float>(dy_sum));
    }
    sum_dxhat += weight[c0 + c] * dy_sum;
    sum_dxhat_xhat += weight[c0 + c] * dy_xhat;
  }
  if (!dinp) return;
  const float mean_dxhat = static_cast<float>(sum_dxhat / K), mean_dxhat_xhat = static_cast<float>(sum_dxhat_xhat / K);
  float* dx = dinp + ng * K;
  for (int64_t i = threadIdx.x; i < K; i += blockDim.x) {
    const int c = c0 + static_cast<int>(i / HW);
    const float xhat = (x[i] - mu) * r;
    dx[i] = r * (norm_grad<kSilu>(dy[i], x[i], affine(c)) * weight[c] - mean_dxhat - xhat * mean_dxhat_xhat);
  }
}

// One block per row.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                         const float* bias, int C, float eps) {
  const int64_t m = blockIdx.x;
  const float* x = inp + m * C;
  float* y = out + m * C;
  float mu, r;
  block_stats(x, C, eps, mu, r);
  if (threadIdx.x == 0) {
    mean[m] = mu;
    rstd[m] = r;
  }
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = (x[c] - mu) * r * weight[c] + bias[c];
}

__global__ void layernorm_input_grad_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                            const float* mean, const float* rstd, int C) {
  const int64_t m = blockIdx.x;
  const float* x = inp + m * C;
  const float* dy = dout + m * C;
  const float mu = mean[m], r = rstd[m];
  float s_dxhat = 0.f, s_dxhat_xhat = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float dxhat = dy[c] * weight[c];
    s_dxhat += dxhat;
    s_dxhat_xhat += dxhat * ((x[c] - mu) * r);
  }
  const float a = static_cast<float>(block_sum(static_cast<double>(s_dxhat)) / C);
  const float b = static_cast<float>(block_sum(static_cast<double>(s_dxhat_xhat)) / C);
  float* dx = dinp + m * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] = r * (dy[c] * weight[c] - a - (x[c] - mu) * r * b);
}

// Thread (column c, chunk of kRowsPerParamBlock rows): partial sums added to dweight[c], dbias[c].
__global__ void layernorm_param_grads_kernel(float* dweight, float* dbias, const float* dout, const float* inp,
                                             const float* mean, const float* rstd, int M, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int m0 = blockIdx.y * kRowsPerParamBlock, m1 = min(M, m0 + kRowsPerParamBlock);
  float acc_w = 0.f, acc_b = 0.f;
  for (int m = m0; m < m1; ++m) {
    const int64_t off = static_cast<int64_t>(m) * C + c;
    acc_w += dout[off] * ((inp[off] - mean[m]) * rstd[m]);
    acc_b += dout[off];
  }
  if (dweight) atomicAdd(dweight + c, acc_w);
  if (dbias) atomicAdd(dbias + c, acc_b);
}

void check_groups(int C, int G) {
  DBCORE_CHECK(G > 0 && C % G == 0, "EINVAL", "groupnorm: %d channels do not split into %d groups", C, G);
}

template <bool kSilu>
void launch_groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int N, int C, int HW, int G, float eps) {
  check_groups(C, G);
  if (N * G == 0) return;
  groupnorm_forward_kernel<kSilu><<<N * G, kNormThreads>>>(out, mean, rstd, inp, weight, bias, C, HW, G, eps);
  DBCORE_CUDA_CHECK_LAUNCH();
}

template <bool kSilu>
void launch_groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                               int C, int HW, int G) {
  check_groups(C, G);
  if (N * G == 0) return;
  groupnorm_backward_kernel<kSilu><<<N * G, kNormThreads>>>(dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd,
                                                            C, HW, G);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace

void groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, int HW, int G, float eps) {
  launch_groupnorm_forward<false>(out, mean, rstd, inp, weight, bias, N, C, HW, G, eps);
}

void groupnorm_silu_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                            const float* bias, int N, int C, int HW, int G, float eps) {
  launch_groupnorm_forward<true>(out, mean, rstd, inp, weight, bias, N, C, HW, G, eps);
}

void groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C, int HW, int G) {
  launch_groupnorm_backward<false>(dinp, dweight, dbias, dout, inp, weight, nullptr, mean, rstd, N, C, HW, G);
}

void groupnorm_silu_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                             int C, int HW, int G) {
  launch_groupnorm_backward<true>(dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd, N, C, HW, G);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int M, int C, float eps) {
  if (M <= 0) return;
  layernorm_forward_kernel<<<M, kNormThreads>>>(out, mean, rstd, inp, weight, bias, C, eps);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int M, int C) {
  if (M <= 0 || C <= 0) return;
  if (dinp) {
    layernorm_input_grad_kernel<<<M, kNormThreads>>>(dinp, dout, inp, weight, mean, rstd, C);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
  if (dweight || dbias) {
    dim3 grid((C + kNormThreads - 1) / kNormThreads, (M + kRowsPerParamBlock - 1) / kRowsPerParamBlock);
    DBCORE_CHECK(grid.y <= 65535, "EINVAL", "layernorm_backward: %d rows is too many", M);
    layernorm_param_grads_kernel<<<grid, kNormThreads>>>(dweight, dbias, dout, inp, mean, rstd, M, C);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace dbcore::cuda
