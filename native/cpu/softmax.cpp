#include "softmax.h"

#include <cmath>

#include "core/parallel.h"

namespace dbcore::cpu {

DBCORE_SIMD_CLONES
void softmax_forward(float* out, const float* inp, int M, int N) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const float* x = inp + static_cast<long>(m) * N;
    float* y = out + static_cast<long>(m) * N;
    float mx = -INFINITY;
    for (int j = 0; j < N; ++j) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.f;
    for (int j = 0; j < N; ++j) {
      y[j] = std::exp(x[j] - mx);
      sum += y[j];
    }
    float inv = 1.f / sum;
    for (int j = 0; j < N; ++j) y[j] *= inv;
  }
}

DBCORE_SIMD_CLONES
void softmax_backward(float* dinp, const float* dout, const float* out, int M, int N) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const float* dy = dout + static_cast<long>(m) * N;
    const float* y = out + static_cast<long>(m) * N;
    float* dx = dinp + static_cast<long>(m) * N;
    float dot = 0.f;
    for (int j = 0; j < N; ++j) dot += dy[j] * y[j];
    for (int j = 0; j < N; ++j) dx[j] = y[j] * (dy[j] - dot);
  }
}

}  // namespace dbcore::cpu
