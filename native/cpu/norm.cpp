// GroupNorm and LayerNorm. ref: torch.nn.GroupNorm, torch.nn.LayerNorm (biased variance, eps inside the sqrt).
// Dimension letters: N batch, C channels, HW spatial positions, G groups, CG = C/G channels per group; M rows.
// Statistics: two passes (mean, then Σ (x - mean)²), float SIMD partial sums per channel or row, double across
// the channels of a group. Saved: mean and rstd = 1/sqrt(var + eps).
// Backward (x̂ = (x - mean)·rstd, dx̂ = dout·weight, K elements per group or row):
//   dinp = rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)),  dweight += Σ dout · x̂,  dbias += Σ dout.
// GroupNorm + SiLU: y = x̂·weight + bias is not stored; its backward recomputes y for silu'(y).
// Accumulation: dweight, dbias +=; dinp = (skipped when null).
#include "norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "fast_math.h"
#include "reduce.h"

namespace dbcore::cpu {

namespace {

constexpr int kColumnTile = 16;  // LayerNorm parameter gradients: columns summed together, one cache line per row

float inverse_std(double var, float eps) { return static_cast<float>(1.0 / std::sqrt(var + eps)); }

}  // namespace

namespace {

void check_groups(int C, int G) {
  DBCORE_CHECK(G > 0 && C % G == 0, "EINVAL", "groupnorm: %d channels do not split into %d groups", C, G);
}

// y = x·scale + shift with scale = rstd·weight, shift = bias - mean·scale (torch's CPU GroupNorm form); the fused
// backward recomputes y with the same two products, so it sees the forward's values exactly.
struct ChannelAffine {
  float scale, shift;
  ChannelAffine(float mu, float r, float w, float b) : scale(r * w), shift(b - mu * (r * w)) {}
};

// Forward of every group, y = act(x·scale + shift): act is the identity (kSilu false) or SiLU.
template <bool kSilu>
DBCORE_INLINE void groupnorm_forward_groups(float* out, float* mean, float* rstd, const float* inp,
                                            const float* weight, const float* bias, int N, int C, int HW, int G,
                                            float eps) {
  check_groups(C, G);
  const int CG = C / G;
  const long K = static_cast<long>(CG) * HW;
  // Group (n, g) is the contiguous block [(n·G + g)·K, +K) of (N, C, HW).
#pragma omp parallel for schedule(static)
  for (int ng = 0; ng < N * G; ++ng) {
    const float* x = inp + ng * K;
    float* y = out + ng * K;
    double sum = 0.0;
    for (int c = 0; c < CG; ++c) sum += row_sum(x + static_cast<long>(c) * HW, HW);
    const float mu = static_cast<float>(sum / K);
    double sq = 0.0;
    for (int c = 0; c < CG; ++c) sq += row_sum_sq_dev(x + static_cast<long>(c) * HW, mu, HW);
    const float r = inverse_std(sq / K, eps);
    mean[ng] = mu;
    rstd[ng] = r;
    const int c0 = (ng % G) * CG;
    for (int c = 0; c < CG; ++c) {
      const ChannelAffine a(mu, r, weight[c0 + c], bias[c0 + c]);
      const float* xc = x + static_cast<long>(c) * HW;
      float* yc = y + static_cast<long>(c) * HW;
      if (kSilu) {
#pragma omp simd
        for (int i = 0; i < HW; ++i) {
          const float v = xc[i] * a.scale + a.shift;
          yc[i] = v * fast_sigmoid(v);
        }
      } else {
#pragma omp simd
        for (int i = 0; i < HW; ++i) yc[i] = xc[i] * a.scale + a.shift;
      }
    }
  }
}

// dg = dout · silu'(y) for one channel, y = x·scale + shift recomputed (silu' as in cpu/activation.cpp).
DBCORE_INLINE void silu_grad_of_affine(float* dg, const float* dout, const float* x, ChannelAffine a, int HW) {
#pragma omp simd
  for (int i = 0; i < HW; ++i) {
    const float y = x[i] * a.scale + a.shift, s = fast_sigmoid(y);
    dg[i] = dout[i] * s * (1.f + y * (1.f - s));
  }
}

// Backward of every group. Parallel over groups, images in turn: each thread owns its group's channels of dweight
// and dbias. With SiLU, the gradient reaching the norm (dout · silu'(y)) is written into dinp's channel first (or
// a per-thread scratch channel when dinp is null) and the dinp pass then rewrites it in place.
template <bool kSilu>
DBCORE_INLINE void groupnorm_backward_groups(float* dinp, float* dweight, float* dbias, const float* dout,
                                             const float* inp, const float* weight, const float* bias,
                                             const float* mean, const float* rstd, int N, int C, int HW, int G) {
  check_groups(C, G);
  const int CG = C / G;
  const long K = static_cast<long>(CG) * HW;
#pragma omp parallel
  {
    std::vector<float> scratch(kSilu && !dinp ? HW : 0);
#pragma omp for schedule(static)
    for (int g = 0; g < G; ++g) {
      for (int n = 0; n < N; ++n) {
        const long ng = static_cast<long>(n) * G + g;
        const float* x = inp + ng * K;
        const float* dy = dout + ng * K;
        float* dx = dinp ? dinp + ng * K : nullptr;
        const float mu = mean[ng], r = rstd[ng];
        double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
        for (int c = 0; c < CG; ++c) {
          const int ch = g * CG + c;
          const long off = static_cast<long>(c) * HW;
          const float* dyc = dy + off;
          if (kSilu) {
            float* dg = dx ? dx + off : scratch.data();
            silu_grad_of_affine(dg, dyc, x + off, ChannelAffine(mu, r, weight[ch], bias[ch]), HW);
            dyc = dg;
          }
          const float dy_sum = row_sum(dyc, HW);
          const float dy_xhat = row_dot_dev(dyc, x + off, mu, HW) * r;
          if (dweight) dweight[ch] += dy_xhat;
          if (dbias) dbias[ch] += dy_sum;
          sum_dxhat += static_cast<double>(weight[ch]) * dy_sum;
          sum_dxhat_xhat += static_cast<double>(weight[ch]) * dy_xhat;
        }
        if (!dx) continue;
        const float mean_dxhat = static_cast<float>(sum_dxhat / K);
        const float mean_dxhat_xhat = static_cast<float>(sum_dxhat_xhat / K);
        const float* dsrc = kSilu ? dx : dy;  // with SiLU the norm's incoming gradient is already in dx
        for (int c = 0; c < CG; ++c) {
          const float w = weight[g * CG + c];
          const long off = static_cast<long>(c) * HW;
#pragma omp simd
          for (int i = 0; i < HW; ++i) {
            const float xhat = (x[off + i] - mu) * r;
            dx[off + i] = r * (dsrc[off + i] * w - mean_dxhat - xhat * mean_dxhat_xhat);
          }
        }
      }
    }
  }
}

}  // namespace

DBCORE_SIMD_CLONES
void groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, int HW, int G, float eps) {
  groupnorm_forward_groups<false>(out, mean, rstd, inp, weight, bias, N, C, HW, G, eps);
}

DBCORE_SIMD_CLONES
void groupnorm_silu_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                            const float* bias, int N, int C, int HW, int G, float eps) {
  groupnorm_forward_groups<true>(out, mean, rstd, inp, weight, bias, N, C, HW, G, eps);
}

DBCORE_SIMD_CLONES
void groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C, int HW, int G) {
  groupnorm_backward_groups<false>(dinp, dweight, dbias, dout, inp, weight, nullptr, mean, rstd, N, C, HW, G);
}

DBCORE_SIMD_CLONES
void groupnorm_silu_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                             int C, int HW, int G) {
  groupnorm_backward_groups<true>(dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd, N, C, HW, G);
}

DBCORE_SIMD_CLONES
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int M, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const float* x = inp + static_cast<long>(m) * C;
    float* y = out + static_cast<long>(m) * C;
    const float mu = static_cast<float>(static_cast<double>(row_sum(x, C)) / C);
    const float r = inverse_std(static_cast<double>(row_sum_sq_dev(x, mu, C)) / C, eps);
    mean[m] = mu;
    rstd[m] = r;
#pragma omp simd
    for (int c = 0; c < C; ++c) y[c] = (x[c] - mu) * r * weight[c] + bias[c];
  }
}

namespace {

// dinp rows: rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)) with dx̂ = dout · weight.
DBCORE_SIMD_CLONES
void layernorm_input_grad(float* dinp, const float* dout, const float* inp, const float* weight, const float* mean,
                          const float* rstd, int M, int C) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const long off = static_cast<long>(m) * C;
    const float *x = inp + off, *dy = dout + off;
    const float mu = mean[m], r = rstd[m];
    float sum_dxhat = 0.f, sum_dxhat_xhat = 0.f;
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
    for (int c = 0; c < C; ++c) {
      const float dxhat = dy[c] * weight[c];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * (x[c] - mu) * r;
    }
    const float a = sum_dxhat / C, b = sum_dxhat_xhat / C;
    float* dx = dinp + off;
#pragma omp simd
    for (int c = 0; c < C; ++c) dx[c] = r * (dy[c] * weight[c] - a - (x[c] - mu) * r * b);
  }
}

// dweight (C) += Σ_m dout · x̂, dbias (C) += Σ_m dout: tiles of columns in parallel, double sums over rows.
DBCORE_SIMD_CLONES
void layernorm_param_grads(float* dweight, float* dbias, const float* dout, const float* inp, const float* mean,
                           const float* rstd, int M, int C) {
  const int tiles = (C + kColumnTile - 1) / kColumnTile;
#pragma omp parallel for schedule(static)
  for (int t = 0; t < tiles; ++t) {
    const int c0 = t * kColumnTile, width = std::min(kColumnTile, C - c0);
    double acc_w[kColumnTile] = {}, acc_b[kColumnTile] = {};
    for (int m = 0; m < M; ++m) {
      const long off = static_cast<long>(m) * C + c0;
      const float mu = mean[m], r = rstd[m];
      for (int j = 0; j < width; ++j) {
        acc_w[j] += dout[off + j] * ((inp[off + j] - mu) * r);
        acc_b[j] += dout[off + j];
      }
    }
    for (int j = 0; j < width; ++j) {
      if (dweight) dweight[c0 + j] += static_cast<float>(acc_w[j]);
      if (dbias) dbias[c0 + j] += static_cast<float>(acc_b[j]);
    }
  }
}

}  // namespace

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int M, int C) {
  if (dinp) layernorm_input_grad(dinp, dout, inp, weight, mean, rstd, M, C);
  if (dweight || dbias) layernorm_param_grads(dweight, dbias, dout, inp, mean, rstd, M, C);
}

}  // namespace dbcore::cpu
