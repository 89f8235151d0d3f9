// Data movement and elementwise ops between layers. Dimension letters: N batch, C channels, H W spatial,
// HW = H·W. Accumulation: written (=) unless the name says add/accumulate.
// Small inputs run on one thread: below kParallelMin elements the OpenMP fork costs more than the work.
#include "elementwise.h"

#include <cmath>

#include <algorithm>

#include "core/half.h"
#include "core/parallel.h"
#include "reduce.h"

namespace dbcore::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
constexpr int kTransposeTile = 32;  // (C, HW) ↔ (HW, C) in 32x32 tiles: both sides stay in cache
}  // namespace

DBCORE_SIMD_CLONES
void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

DBCORE_SIMD_CLONES
void add_inplace(float* acc, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

DBCORE_SIMD_CLONES
void axpby(float* out, float alpha, const float* a, float beta, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i] + beta * b[i];
}

DBCORE_SIMD_CLONES
void scale_inplace(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

DBCORE_SIMD_CLONES
void add_channel_bias(float* x, const float* bias, int N, int C, int HW) {
#pragma omp parallel for schedule(static) if (int64_t(N) * C * HW > kParallelMin)
  for (int nc = 0; nc < N * C; ++nc) {
    float* row = x + static_cast<int64_t>(nc) * HW;
    const float b = bias[nc];
#pragma omp simd
    for (int i = 0; i < HW; ++i) row[i] += b;
  }
}

DBCORE_SIMD_CLONES
void sum_over_hw(float* dbias, const float* dout, int N, int C, int HW) {
#pragma omp parallel for schedule(static) if (int64_t(N) * C * HW > kParallelMin)
  for (int nc = 0; nc < N * C; ++nc) dbias[nc] = row_sum(dout + static_cast<int64_t>(nc) * HW, HW);
}

namespace {

// out (N, cols, rows) = inp (N, rows, cols)ᵀ per image, tile by tile.
DBCORE_SIMD_CLONES
void transpose_batched(float* out, const float* inp, int N, int rows, int cols) {
  const int row_tiles = (rows + kTransposeTile - 1) / kTransposeTile;
  const int col_tiles = (cols + kTransposeTile - 1) / kTransposeTile;
#pragma omp parallel for collapse(3) schedule(static) if (int64_t(N) * rows * cols > kParallelMin)
  for (int n = 0; n < N; ++n)
    for (int rt = 0; rt < row_tiles; ++rt)
      for (int ct = 0; ct < col_tiles; ++ct) {
        const float* src = inp + static_cast<int64_t>(n) * rows * cols;
        float* dst = out + static_cast<int64_t>(n) * rows * cols;
        const int r1 = std::min(rows, (rt + 1) * kTransposeTile), c1 = std::min(cols, (ct + 1) * kTransposeTile);
        for (int c = ct * kTransposeTile; c < c1; ++c)
          for (int r = rt * kTransposeTile; r < r1; ++r)
            dst[static_cast<int64_t>(c) * rows + r] = src[static_cast<int64_t>(r) * cols + c];
      }
}

}  // namespace

void nchw_to_nhwc(float* out, const float* inp, int N, int C, int HW) { transpose_batched(out, inp, N, C, HW); }
void nhwc_to_nchw(float* out, const float* inp, int N, int C, int HW) { transpose_batched(out, inp, N, HW, C); }

DBCORE_SIMD_CLONES
void upsample_nearest2x_forward(float* out, const float* inp, int N, int C, int H, int W) {
  const int W2 = 2 * W;
#pragma omp parallel for schedule(static) if (int64_t(N) * C * H * W > kParallelMin / 4)
  for (int64_t row = 0; row < int64_t(N) * C * H; ++row) {  // input row (n, c, h) → output rows 2h, 2h+1
    const float* src = inp + row * W;
    float* dst = out + row * 2 * W2;
    for (int w = 0; w < W; ++w) dst[2 * w] = dst[2 * w + 1] = src[w];
    std::copy(dst, dst + W2, dst + W2);
  }
}

DBCORE_SIMD_CLONES
void upsample_nearest2x_backward(float* dinp, const float* dout, int N, int C, int H, int W) {
  const int W2 = 2 * W;
#pragma omp parallel for schedule(static) if (int64_t(N) * C * H * W > kParallelMin / 4)
  for (int64_t row = 0; row < int64_t(N) * C * H; ++row) {
    const float* top = dout + row * 2 * W2;
    const float* bottom = top + W2;
    float* dst = dinp + row * W;
    for (int w = 0; w < W; ++w) dst[w] = (top[2 * w] + top[2 * w + 1]) + (bottom[2 * w] + bottom[2 * w + 1]);
  }
}

void concat_channels_forward(float* out, const float* a, const float* b, int N, int Ca, int Cb, int HW) {
  const int64_t size_a = int64_t(Ca) * HW, size_b = int64_t(Cb) * HW;
#pragma omp parallel for schedule(static) if (N > 1 && (size_a + size_b) * N > kParallelMin)
  for (int n = 0; n < N; ++n) {
    float* dst = out + n * (size_a + size_b);
    std::copy(a + n * size_a, a + (n + 1) * size_a, dst);
    std::copy(b + n * size_b, b + (n + 1) * size_b, dst + size_a);
  }
}

void concat_channels_backward(float* da, float* db, const float* dout, int N, int Ca, int Cb, int HW) {
  const int64_t size_a = int64_t(Ca) * HW, size_b = int64_t(Cb) * HW;
#pragma omp parallel for schedule(static) if (N > 1 && (size_a + size_b) * N > kParallelMin)
  for (int n = 0; n < N; ++n) {
    const float* src = dout + n * (size_a + size_b);
    std::copy(src, src + size_a, da + n * size_a);
    std::copy(src + size_a, src + size_a + size_b, db + n * size_b);
  }
}

DBCORE_SIMD_CLONES
void gaussian_sample(float* out, const float* mean, const float* logvar, const float* eps, float scale, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) out[i] = (mean[i] + std::exp(0.5f * logvar[i]) * eps[i]) * scale;
}

DBCORE_SIMD_CLONES
void add_into_bf16(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(bf16_to_float(dst[i]) + src[i]);
}

DBCORE_SIMD_CLONES
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

void crop_pad2d(float* out, const float* inp, int N, int C, int H, int W, int y0, int x0, int OH, int OW) {
  // Output columns [lo, hi) read input columns x0 + [lo, hi) inside [0, W); the rest of each row is zero.
  const int lo = std::clamp(-x0, 0, OW), hi = std::clamp(W - x0, lo, OW);
#pragma omp parallel for schedule(static) if (int64_t(N) * C * OH * OW > kParallelMin)
  for (int64_t row = 0; row < int64_t(N) * C * OH; ++row) {  // output row (n, c, y)
    const int64_t plane = row / OH;
    const int y = int(row % OH), iy = y0 + y;
    float* dst = out + row * OW;
    if (iy < 0 || iy >= H) {
      std::fill(dst, dst + OW, 0.f);
      continue;
    }
    const float* src = inp + (plane * H + iy) * W;  // input row (n, c, iy)
    std::fill(dst, dst + lo, 0.f);
    std::copy(src + (x0 + lo), src + (x0 + hi), dst + lo);
    std::fill(dst + hi, dst + OW, 0.f);
  }
}

}  // namespace dbcore::cpu
