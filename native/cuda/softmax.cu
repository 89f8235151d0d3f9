// Row-wise softmax, twin of native/cpu/softmax.cpp. One warp per row; statistics in fp32.
// Dimension letters: M rows, N columns. Outputs and input gradients are written (=).
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void softmax_forward_kernel(float* out, const float* inp, int M, int N) {
  int row = blockIdx.x * kWarpsPerBlock + threadIdx.y;
  if (row >= M) return;
  const float* x = inp + static_cast<long>(row) * N;
  float* y = out + static_cast<long>(row) * N;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < N; j += 32) mx = fmaxf(mx, x[j]);
  mx = warp_max(mx);
  float sum = 0.f;
  for (int j = threadIdx.x; j < N; j += 32) sum += __expf(x[j] - mx);
  float inv = 1.f / warp_sum(sum);
  for (int j = threadIdx.x; j < N; j += 32) y[j] = __expf(x[j] - mx) * inv;
}

__global__ void softmax_backward_kernel(float* dinp, const float* dout, const float* out, int M, int N) {
  int row = blockIdx.x * kWarpsPerBlock + threadIdx.y;
  if (row >= M) return;
  const float* dy = dout + static_cast<long>(row) * N;
  const float* y = out + static_cast<long>(row) * N;
  float* dx = dinp + static_cast<long>(row) * N;
  float dot = 0.f;
  for (int j = threadIdx.x; j < N; j += 32) dot += dy[j] * y[j];
  dot = warp_sum(dot);
  for (int j = threadIdx.x; j < N; j += 32) dx[j] = y[j] * (dy[j] - dot);
}

dim3 grid_for(int M) { return dim3((M + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

void softmax_forward(float* out, const float* inp, int M, int N) {
  if (M == 0) return;
  softmax_forward_kernel<<<grid_for(M), dim3(32, kWarpsPerBlock)>>>(out, inp, M, N);
  DBCORE_CUDA_CHECK(cudaGetLastError());
}

void softmax_backward(float* dinp, const float* dout, const float* out, int M, int N) {
  if (M == 0) return;
  softmax_backward_kernel<<<grid_for(M), dim3(32, kWarpsPerBlock)>>>(dinp, dout, out, M, N);
  DBCORE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dbcore::cuda
