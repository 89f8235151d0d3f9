// MSE loss and the gradient-norm reduction (twins of native/cpu/loss.cpp and cpu::sum_of_squares_into).
// Sums: fp32 products, double partial sums per thread, a block reduction in double, one double per block, then the
// blocks' partials added in block order (a fixed order: the same sum on every run; the CPU twin sums in double too).
// Accumulation: dpred =; *acc +=.
#include <algorithm>

#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kReduceBlocks = 1024;

// partials[block] = Σ (a[i] - b[i])² over the block's grid-stride share (b == nullptr: Σ a[i]²).
__global__ void __launch_bounds__(kThreads) sum_sq_diff_kernel(double* partials, const float* a, const float* b,
                                                               int64_t n) {
  double s = 0.0;
  DBCORE_GRID_STRIDE(i, n) {
    const double d = b ? static_cast<double>(a[i]) - static_cast<double>(b[i]) : static_cast<double>(a[i]);
    s += d * d;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// *acc += Σ partials[0, count) in index order (one thread: at most kReduceBlocks additions).
__global__ void add_partials_kernel(double* acc, const double* partials, int count) {
  double total = 0.0;
  for (int i = 0; i < count; ++i) total += partials[i];
  *acc += total;
}

// Queues *acc += Σ (a - b)² (or Σ a²) on the default stream; no synchronization. `partials` holds kReduceBlocks
// doubles and must not overlap acc.
void add_sum_sq_diff(double* acc, double* partials, const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  const unsigned blocks = std::min<unsigned>(blocks_for(n), kReduceBlocks);
  sum_sq_diff_kernel<<<blocks, kThreads>>>(partials, a, b, n);
  DBCORE_CUDA_CHECK_LAUNCH();
  add_partials_kernel<<<1, 1>>>(acc, partials, static_cast<int>(blocks));
  DBCORE_CUDA_CHECK_LAUNCH();
}

__global__ void __launch_bounds__(kThreads) mse_backward_kernel(float* dpred, const float* pred, const float* target, int64_t n, float factor) {
  DBCORE_GRID_STRIDE(i, n) dpred[i] = factor * (pred[i] - target[i]);
}

}  // namespace

double mse_forward(const float* pred, const float* target, int64_t n) {
  if (n <= 0) return 0.0;
  double* acc = static_cast<double*>(thread_scratch(sizeof(double) * (1 + kReduceBlocks)));  // acc, then partials
  fill_bytes(acc, 0, sizeof(double));
  add_sum_sq_diff(acc, acc + 1, pred, target, n);
  double sum = 0.0;
  copy_to_host(&sum, acc, sizeof(double));  // the one synchronization: the mean is returned to the host
  return sum / static_cast<double>(n);
}

void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float dloss) {
  if (n <= 0) return;
  const float factor = static_cast<float>(2.0 * dloss / static_cast<double>(n));
  mse_backward_kernel<<<blocks_for(n), kThreads>>>(dpred, pred, target, n, factor);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void sum_of_squares_into(double* acc, const float* x, int64_t n) {
  add_sum_sq_diff(acc, static_cast<double*>(thread_scratch(sizeof(double) * kReduceBlocks)), x, nullptr, n);
}

}  // namespace dbcore::cuda
