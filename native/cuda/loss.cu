// MSE loss and the gradient-norm reductions (twins of native/cpu/loss.cpp and the norm part of optim.cpp).
// Sums: fp32 products, double partial sums per thread, a block reduction in double, one double atomicAdd per
// block into a device accumulator (the CPU twin sums in double too). Accumulation: dpred =; clip scales in place.
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kReduceBlocks = 1024;

// *acc += Σ (a[i] - b[i])² (b == nullptr: Σ a[i]²).
__global__ void sum_sq_diff_kernel(double* acc, const float* a, const float* b, int64_t n) {
  double s = 0.0;
  DBCORE_GRID_STRIDE(i, n) {
    const double d = b ? static_cast<double>(a[i]) - static_cast<double>(b[i]) : static_cast<double>(a[i]);
    s += d * d;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

// Σ (a - b)² or Σ a² on the device, returned to the host (synchronizes).
double sum_sq_diff(const float* a, const float* b, int64_t n) {
  if (n <= 0) return 0.0;
  double* acc = static_cast<double*>(device_alloc(sizeof(double)));
  double result = 0.0;
  try {
    DBCORE_CUDA_CHECK(cudaMemset(acc, 0, sizeof(double)));
    const unsigned blocks = std::min<unsigned>(blocks_for(n), kReduceBlocks);
    sum_sq_diff_kernel<<<blocks, kThreads>>>(acc, a, b, n);
    DBCORE_CUDA_CHECK_LAUNCH();
    copy_to_host(&result, acc, sizeof(double));
  } catch (...) {
    device_free(acc);
    throw;
  }
  device_free(acc);
  return result;
}

__global__ void mse_backward_kernel(float* dpred, const float* pred, const float* target, int64_t n, float factor) {
  DBCORE_GRID_STRIDE(i, n) dpred[i] = factor * (pred[i] - target[i]);
}

}  // namespace

double mse_forward(const float* pred, const float* target, int64_t n) {
  if (n <= 0) return 0.0;
  return sum_sq_diff(pred, target, n) / static_cast<double>(n);
}

void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float dloss) {
  if (n <= 0) return;
  const float factor = static_cast<float>(2.0 * dloss / static_cast<double>(n));
  mse_backward_kernel<<<blocks_for(n), kThreads>>>(dpred, pred, target, n, factor);
  DBCORE_CUDA_CHECK_LAUNCH();
}

double sum_of_squares(const float* grad, int64_t n) { return sum_sq_diff(grad, nullptr, n); }

ClipResult clip_grad_norm(float* const* grads, const int64_t* numels, int count, double max_norm) {
  double total_sq = 0.0;
  for (int i = 0; i < count; ++i) total_sq += sum_of_squares(grads[i], numels[i]);
  ClipResult r;
  r.total_norm = std::sqrt(total_sq);
  r.coef = std::min(1.0, max_norm / (r.total_norm + 1e-6));
  if (r.coef < 1.0) {
    for (int i = 0; i < count; ++i) scale_inplace(grads[i], static_cast<float>(r.coef), numels[i]);
  }
  return r;
}

}  // namespace dbcore::cuda
