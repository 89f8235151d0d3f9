// GroupNorm and LayerNorm, twins of native/cpu/norm.cpp (ref: torch.nn.GroupNorm / LayerNorm: biased variance,
// eps inside the sqrt). Dimension letters: N batch, C channels, HW spatial, G groups, CG = C/G, K elements of one
// group or row; M rows (LayerNorm).
// Statistics in fp32 per thread, reduced across the block in double, two passes (mean, then Σ (x - mean)²), as
// the CPU twin (GroupNorm per channel, then combined per group: see the GroupNorm section). Saved: mean and
// rstd = 1/sqrt(var + eps).
// Backward (x̂ = (x - mean)·rstd, dx̂ = dout·weight): dinp = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)) (=, skipped
// when null); dweight += Σ dout · x̂, dbias += Σ dout (skipped when null; in a fixed order: deterministic).
// GroupNorm + SiLU: out = silu(y), y = x̂·weight + bias not stored; the backward recomputes y for silu'(y).
#include "column_sums.cuh"
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kNormThreads = 256;

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

// ---- GroupNorm: one block per channel (n, c), N·C blocks (one block per group would leave most of the GPU idle:
// an image has only 32 groups). Group (n, g) is the contiguous block of channels [g·CG, (g+1)·CG) of image n.
// Forward: (1) channel_moments: each channel's mean and M2 = Σ (x − mean_c)² (two passes over its HW values,
// double across threads); (2) groupnorm_apply: each block combines its group's CG channel moments (Chan et al.:
// mean = mean of the channel means, M2 = Σ_c M2_c + HW·(mean_c − mean)², in double) and writes its own channel.
// Backward: (1) channel_grad_sums: per channel Σ g and Σ g·x̂ (g = dout, or dout·silu'(y)); (2) the parameter
// gradients, += the sums over the batch, one thread per channel in a fixed order (deterministic); (3)
// groupnorm_input_grad: each block forms its group's mean(dx̂) and mean(dx̂·x̂) from the channel sums and writes
// its channel of dinp. The per-channel values live in thread_scratch between the kernels.

struct ChannelSums {
  double a, b;  // forward: mean_c, M2_c; backward: Σ g, Σ g·x̂
};

__global__ void __launch_bounds__(kNormThreads) channel_moments_kernel(ChannelSums* moments, const float* inp, int HW) {
  const float* x = inp + static_cast<int64_t>(blockIdx.x) * HW;
  float s = 0.f;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) s += x[i];
  const double mean_c = block_sum(static_cast<double>(s)) / HW;
  const float center = static_cast<float>(mean_c);
  float sq = 0.f;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) {
    const float d = x[i] - center;
    sq += d * d;
  }
  // Σ (x − center)² − HW·(mean_c − center)² = Σ (x − mean_c)² exactly; the center is mean_c rounded to float.
  const double offset = mean_c - center;
  const double m2 = block_sum(static_cast<double>(sq)) - HW * offset * offset;
  if (threadIdx.x == 0) moments[blockIdx.x] = {mean_c, m2};
}

template <bool kSilu>
__global__ void __launch_bounds__(kNormThreads)
    groupnorm_apply_kernel(float* out, float* mean, float* rstd, const ChannelSums* moments, const float* inp,
                           const float* weight, const float* bias, int C, int HW, int G, float eps) {
  const int64_t nc = blockIdx.x;
  const int n = static_cast<int>(nc / C), c = static_cast<int>(nc % C), CG = C / G, g = c / CG;
  __shared__ float group_mean, group_rstd;
  if (threadIdx.x == 0) {
    const ChannelSums* m = moments + static_cast<int64_t>(n) * C + static_cast<int64_t>(g) * CG;
    double mu = 0.0;
    for (int k = 0; k < CG; ++k) mu += m[k].a;
    mu /= CG;  // the channels have HW values each: the group mean is the mean of the channel means
    double m2 = 0.0;
    for (int k = 0; k < CG; ++k) m2 += m[k].b + HW * (m[k].a - mu) * (m[k].a - mu);
    group_mean = static_cast<float>(mu);
    group_rstd = static_cast<float>(1.0 / sqrt(m2 / (static_cast<double>(CG) * HW) + eps));
    if (c % CG == 0) {
      mean[n * G + g] = group_mean;
      rstd[n * G + g] = group_rstd;
    }
  }
  __syncthreads();
  const ChannelAffine a(group_mean, group_rstd, weight[c], bias[c]);
  const float* x = inp + nc * HW;
  float* y = out + nc * HW;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) {
    const float v = x[i] * a.scale + a.shift;
    y[i] = kSilu ? v * sigmoid(v) : v;
  }
}

// bias is read only with SiLU.
template <bool kSilu>
__global__ void __launch_bounds__(kNormThreads)
    channel_grad_sums_kernel(ChannelSums* sums, const float* dout, const float* inp, const float* weight,
                             const float* bias, const float* mean, const float* rstd, int C, int HW, int G) {
  const int64_t nc = blockIdx.x;
  const int n = static_cast<int>(nc / C), c = static_cast<int>(nc % C), ng = n * G + c / (C / G);
  const float mu = mean[ng], r = rstd[ng];
  const ChannelAffine a(mu, r, weight[c], kSilu ? bias[c] : 0.f);
  const float* x = inp + nc * HW;
  const float* dy = dout + nc * HW;
  float s = 0.f, sx = 0.f;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) {
    const float g = norm_grad<kSilu>(dy[i], x[i], a);
    s += g;
    sx += g * ((x[i] - mu) * r);
  }
  const double sum = block_sum(static_cast<double>(s));
  const double sum_xhat = block_sum(static_cast<double>(sx));
  if (threadIdx.x == 0) sums[nc] = {sum, sum_xhat};
}

// Thread c: dweight[c] += Σ_n Σ g·x̂, dbias[c] += Σ_n Σ g (skipped when null).
__global__ void groupnorm_param_grads_kernel(float* dweight, float* dbias, const ChannelSums* sums, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double sw = 0.0, sb = 0.0;
  for (int n = 0; n < N; ++n) {
    sw += sums[static_cast<int64_t>(n) * C + c].b;
    sb += sums[static_cast<int64_t>(n) * C + c].a;
  }
  if (dweight) dweight[c] += static_cast<float>(sw);
  if (dbias) dbias[c] += static_cast<float>(sb);
}

// dinp may alias dout (each element is read, then written, by the same thread).
template <bool kSilu>
__global__ void __launch_bounds__(kNormThreads)
    groupnorm_input_grad_kernel(float* dinp, const ChannelSums* sums, const float* dout, const float* inp,
                                const float* weight, const float* bias, const float* mean, const float* rstd, int C,
                                int HW, int G) {
  const int64_t nc = blockIdx.x;
  const int n = static_cast<int>(nc / C), c = static_cast<int>(nc % C), CG = C / G, g = c / CG, ng = n * G + g;
  __shared__ float mean_dxhat, mean_dxhat_xhat;
  if (threadIdx.x == 0) {
    double a = 0.0, b = 0.0;  // Σ over the group of dx̂ = g·weight and of dx̂·x̂
    for (int k = g * CG; k < (g + 1) * CG; ++k) {
      a += static_cast<double>(weight[k]) * sums[static_cast<int64_t>(n) * C + k].a;
      b += static_cast<double>(weight[k]) * sums[static_cast<int64_t>(n) * C + k].b;
    }
    const double K = static_cast<double>(CG) * HW;
    mean_dxhat = static_cast<float>(a / K);
    mean_dxhat_xhat = static_cast<float>(b / K);
  }
  __syncthreads();
  const float mu = mean[ng], r = rstd[ng], w = weight[c];
  const ChannelAffine a(mu, r, w, kSilu ? bias[c] : 0.f);
  const float* x = inp + nc * HW;
  const float* dy = dout + nc * HW;
  float* dx = dinp + nc * HW;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) {
    const float xhat = (x[i] - mu) * r;
    dx[i] = r * (norm_grad<kSilu>(dy[i], x[i], a) * w - mean_dxhat - xhat * mean_dxhat_xhat);
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

// LayerNorm's parameter gradients: acc[0] += dout · x̂ (dweight), acc[1] += dout (dbias).
struct LayerNormParamTerm {
  const float *dout, *inp, *mean, *rstd;
  int C;
  __device__ void operator()(int m, int c, float* acc) const {
    const int64_t off = static_cast<int64_t>(m) * C + c;
    acc[0] += dout[off] * ((inp[off] - mean[m]) * rstd[m]);
    acc[1] += dout[off];
  }
};

void check_groups(int C, int G) {
  DBCORE_CHECK(G > 0 && C % G == 0, "EINVAL", "groupnorm: %d channels do not split into %d groups", C, G);
}

// Every (n, c) channel is one block; the channel moments or gradient sums go through thread_scratch.
unsigned channel_blocks(int N, int C) {
  const int64_t blocks = static_cast<int64_t>(N) * C;
  DBCORE_CHECK(blocks <= 0x7fffffff, "EINVAL", "groupnorm: %d x %d channels is too many", N, C);
  return static_cast<unsigned>(blocks);
}

template <bool kSilu>
void launch_groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int N, int C, int HW, int G, float eps) {
  check_groups(C, G);
  if (N * C == 0 || HW == 0) return;
  const unsigned blocks = channel_blocks(N, C);
  auto* moments = static_cast<ChannelSums*>(thread_scratch(sizeof(ChannelSums) * blocks));
  channel_moments_kernel<<<blocks, kNormThreads>>>(moments, inp, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
  groupnorm_apply_kernel<kSilu><<<blocks, kNormThreads>>>(out, mean, rstd, moments, inp, weight, bias, C, HW, G, eps);
  DBCORE_CUDA_CHECK_LAUNCH();
}

template <bool kSilu>
void launch_groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                               int C, int HW, int G) {
  check_groups(C, G);
  if (N * C == 0 || HW == 0) return;
  const unsigned blocks = channel_blocks(N, C);
  auto* sums = static_cast<ChannelSums*>(thread_scratch(sizeof(ChannelSums) * blocks));
  channel_grad_sums_kernel<kSilu><<<blocks, kNormThreads>>>(sums, dout, inp, weight, bias, mean, rstd, C, HW, G);
  DBCORE_CUDA_CHECK_LAUNCH();
  if (dweight || dbias) {
    groupnorm_param_grads_kernel<<<(C + kNormThreads - 1) / kNormThreads, kNormThreads>>>(dweight, dbias, sums, N, C);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
  if (dinp) {
    groupnorm_input_grad_kernel<kSilu><<<blocks, kNormThreads>>>(dinp, sums, dout, inp, weight, bias, mean, rstd, C,
                                                                  HW, G);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
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
  if (dweight || dbias)
    add_column_sums(ColumnDests<2>{{dweight, dbias}}, LayerNormParamTerm{dout, inp, mean, rstd, C}, M, C,
                    "layernorm_backward");
}

}  // namespace dbcore::cuda
