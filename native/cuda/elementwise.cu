// Data movement and elementwise ops, twins of native/cpu/elementwise.cpp. One thread per output element
// (grid-stride loops); the reductions (sum_over_hw) use one block per (n, c) row.
// Dimension letters: N batch, C channels, H W spatial, HW = H·W. Accumulation: written (=) unless the name says
// add (add_inplace, add_channel_bias add into their first argument).
#include "common.cuh"
#include "core/half.h"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void axpby_kernel(float* out, float alpha, const float* a, float beta, const float* b, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) out[i] = alpha * a[i] + beta * b[i];
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) x[i] *= s;
}

// x (N, C, HW) += bias (N, C): element i belongs to row i / HW.
__global__ void add_channel_bias_kernel(float* x, const float* bias, int64_t rows, int HW) {
  DBCORE_GRID_STRIDE(i, rows * HW) x[i] += bias[i / HW];
}

// One block per row (n, c) of (N·C, HW).
__global__ void sum_over_hw_kernel(float* dbias, const float* dout, int HW) {
  const float* row = dout + static_cast<int64_t>(blockIdx.x) * HW;
  float s = 0.f;
  for (int i = threadIdx.x; i < HW; i += blockDim.x) s += row[i];
  s = block_sum(s);
  if (threadIdx.x == 0) dbias[blockIdx.x] = s;
}

// out (N, HW, C) from inp (N, C, HW), one output element per thread (reads strided, writes coalesced).
__global__ void nchw_to_nhwc_kernel(float* out, const float* inp, int N, int C, int HW) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  DBCORE_GRID_STRIDE(i, total) {
    int64_t c = i % C, p = (i / C) % HW, n = i / (static_cast<int64_t>(C) * HW);
    out[i] = inp[(n * C + c) * HW + p];
  }
}

__global__ void nhwc_to_nchw_kernel(float* out, const float* inp, int N, int C, int HW) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  DBCORE_GRID_STRIDE(i, total) {
    int64_t p = i % HW, c = (i / HW) % C, n = i / (static_cast<int64_t>(C) * HW);
    out[i] = inp[(n * HW + p) * C + c];
  }
}

// out (NC, 2H, 2W)[y, x] = inp (NC, H, W)[y/2, x/2].
__global__ void upsample2x_forward_kernel(float* out, const float* inp, int64_t planes, int H, int W) {
  const int OW = 2 * W, OH = 2 * H;
  DBCORE_GRID_STRIDE(i, planes * OH * OW) {
    int64_t x = i % OW, y = (i / OW) % OH, p = i / (static_cast<int64_t>(OH) * OW);
    out[i] = inp[(p * H + y / 2) * W + x / 2];
  }
}

// dinp (NC, H, W)[y, x] = Σ of the 2x2 block of dout (NC, 2H, 2W) at (2y, 2x).
__global__ void upsample2x_backward_kernel(float* dinp, const float* dout, int64_t planes, int H, int W) {
  const int OW = 2 * W;
  DBCORE_GRID_STRIDE(i, planes * H * W) {
    int64_t x = i % W, y = (i / W) % H, p = i / (static_cast<int64_t>(H) * W);
    const float* d = dout + (p * 2 * H + 2 * y) * OW + 2 * x;
    dinp[i] = (d[0] + d[1]) + (d[OW] + d[OW + 1]);
  }
}

// out (N, Ca+Cb, HW) = [a | b]; each output element reads its source.
__global__ void concat_forward_kernel(float* out, const float* a, const float* b, int N, int Ca, int Cb, int HW) {
  const int C = Ca + Cb;
  DBCORE_GRID_STRIDE(i, static_cast<int64_t>(N) * C * HW) {
    int64_t p = i % HW, c = (i / HW) % C, n = i / (static_cast<int64_t>(C) * HW);
    out[i] = c < Ca ? a[(n * Ca + c) * HW + p] : b[(n * Cb + (c - Ca)) * HW + p];
  }
}

__global__ void concat_backward_kernel(float* da, float* db, const float* dout, int N, int Ca, int Cb, int HW) {
  const int C = Ca + Cb;
  DBCORE_GRID_STRIDE(i, static_cast<int64_t>(N) * C * HW) {
    int64_t p = i % HW, c = (i / HW) % C, n = i / (static_cast<int64_t>(C) * HW);
    if (c < Ca)
      da[(n * Ca + c) * HW + p] = dout[i];
    else
      db[(n * Cb + (c - Ca)) * HW + p] = dout[i];
  }
}

__global__ void gaussian_sample_kernel(float* out, const float* mean, const float* logvar, const float* eps,
                                       float scale, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) out[i] = (mean[i] + expf(0.5f * logvar[i]) * eps[i]) * scale;
}

// The CPU's bf16 rounding (core/half.h, compiled for both sides): bit-identical blocks on either backend.
__global__ void add_into_bf16_kernel(uint16_t* dst, const float* src, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) dst[i] = float_to_bf16(bf16_to_float(dst[i]) + src[i]);
}

__global__ void bf16_to_f32_kernel(float* dst, const uint16_t* src, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) dst[i] = bf16_to_float(src[i]);
}

// out (NC, OH, OW)[y, x] = inp (NC, H, W)[y0 + y, x0 + x] inside, else 0.
__global__ void crop_pad2d_kernel(float* out, const float* inp, int64_t planes, int H, int W, int y0, int x0, int OH,
                                  int OW) {
  DBCORE_GRID_STRIDE(i, planes * OH * OW) {
    int64_t x = i % OW, y = (i / OW) % OH, p = i / (static_cast<int64_t>(OH) * OW);
    int64_t sy = y0 + y, sx = x0 + x;
    out[i] = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? inp[(p * H + sy) * W + sx] : 0.f;
  }
}

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads>>>(out, a, b, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void add_inplace(float* acc, const float* x, int64_t n) { add(acc, acc, x, n); }

void axpby(float* out, float alpha, const float* a, float beta, const float* b, int64_t n) {
  if (n <= 0) return;
  axpby_kernel<<<blocks_for(n), kThreads>>>(out, alpha, a, beta, b, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, float s, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, s, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void add_channel_bias(float* x, const float* bias, int N, int C, int HW) {
  const int64_t rows = static_cast<int64_t>(N) * C;
  if (rows * HW <= 0) return;
  add_channel_bias_kernel<<<blocks_for(rows * HW), kThreads>>>(x, bias, rows, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void sum_over_hw(float* dbias, const float* dout, int N, int C, int HW) {
  const int64_t rows = static_cast<int64_t>(N) * C;
  if (rows <= 0) return;
  DBCORE_CHECK(rows <= 0x7fffffff, "EINVAL", "sum_over_hw: %lld rows is too many", static_cast<long long>(rows));
  sum_over_hw_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dbias, dout, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void nchw_to_nhwc(float* out, const float* inp, int N, int C, int HW) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  if (total <= 0) return;
  nchw_to_nhwc_kernel<<<blocks_for(total), kThreads>>>(out, inp, N, C, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void nhwc_to_nchw(float* out, const float* inp, int N, int C, int HW) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  if (total <= 0) return;
  nhwc_to_nchw_kernel<<<blocks_for(total), kThreads>>>(out, inp, N, C, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void upsample_nearest2x_forward(float* out, const float* inp, int N, int C, int H, int W) {
  const int64_t planes = static_cast<int64_t>(N) * C;
  if (planes * H * W <= 0) return;
  upsample2x_forward_kernel<<<blocks_for(planes * 4 * H * W), kThreads>>>(out, inp, planes, H, W);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void upsample_nearest2x_backward(float* dinp, const float* dout, int N, int C, int H, int W) {
  const int64_t planes = static_cast<int64_t>(N) * C;
  if (planes * H * W <= 0) return;
  upsample2x_backward_kernel<<<blocks_for(planes * H * W), kThreads>>>(dinp, dout, planes, H, W);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void concat_channels_forward(float* out, const float* a, const float* b, int N, int Ca, int Cb, int HW) {
  const int64_t total = static_cast<int64_t>(N) * (Ca + Cb) * HW;
  if (total <= 0) return;
  concat_forward_kernel<<<blocks_for(total), kThreads>>>(out, a, b, N, Ca, Cb, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void concat_channels_backward(float* da, float* db, const float* dout, int N, int Ca, int Cb, int HW) {
  const int64_t total = static_cast<int64_t>(N) * (Ca + Cb) * HW;
  if (total <= 0) return;
  concat_backward_kernel<<<blocks_for(total), kThreads>>>(da, db, dout, N, Ca, Cb, HW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void gaussian_sample(float* out, const float* mean, const float* logvar, const float* eps, float scale, int64_t n) {
  if (n <= 0) return;
  gaussian_sample_kernel<<<blocks_for(n), kThreads>>>(out, mean, logvar, eps, scale, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void add_into_bf16(uint16_t* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  add_into_bf16_kernel<<<blocks_for(n), kThreads>>>(dst, src, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<blocks_for(n), kThreads>>>(dst, src, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void crop_pad2d(float* out, const float* inp, int N, int C, int H, int W, int y0, int x0, int OH, int OW) {
  const int64_t planes = static_cast<int64_t>(N) * C;
  if (planes * OH * OW <= 0) return;
  crop_pad2d_kernel<<<blocks_for(planes * OH * OW), kThreads>>>(out, inp, planes, H, W, y0, x0, OH, OW);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
