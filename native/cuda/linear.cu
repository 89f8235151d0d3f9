// Fully connected layer on the CUDA GEMM, twin of native/cpu/linear.cpp (ref: torch.nn.Linear).
// Dimension letters: M rows (tokens), IC in, OC out features. Accumulation: dweight, dbias +=; dinp = (skipped when
// null). The products take the caller's precision (autocast); the bias add and its gradient are fp32.
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kRowsPerColumnBlock = 64;

// out (M, OC) += bias (OC) broadcast over rows.
__global__ void add_row_bias_kernel(float* out, const float* bias, int64_t M, int OC) {
  DBCORE_GRID_STRIDE(i, M * OC) out[i] += bias[i % OC];
}

// dbias (OC) += Σ_m dout (M, OC): thread (column, chunk of rows), one atomicAdd per thread.
__global__ void column_sum_kernel(float* dbias, const float* dout, int M, int OC) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= OC) return;
  const int m0 = blockIdx.y * kRowsPerColumnBlock, m1 = min(M, m0 + kRowsPerColumnBlock);
  float s = 0.f;
  for (int m = m0; m < m1; ++m) s += dout[static_cast<int64_t>(m) * OC + c];
  atomicAdd(dbias + c, s);
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int M, int IC, int OC,
                    Precision precision) {
  // out = inp · weightᵀ
  sgemm(false, true, M, OC, IC, 1.f, inp, IC, weight, IC, 0.f, out, OC, precision);
  if (bias && static_cast<int64_t>(M) * OC > 0) {
    add_row_bias_kernel<<<blocks_for(static_cast<int64_t>(M) * OC), kThreads>>>(out, bias, M, OC);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int M, int IC, int OC, Precision precision) {
  if (dinp) sgemm(false, false, M, IC, OC, 1.f, dout, OC, weight, IC, 0.f, dinp, IC, precision);  // dout · weight
  if (dweight) sgemm(true, false, OC, IC, M, 1.f, dout, OC, inp, IC, 1.f, dweight, IC, precision);  // += doutᵀ · inp
  if (dbias && M > 0 && OC > 0) {
    dim3 grid((OC + kThreads - 1) / kThreads, (M + kRowsPerColumnBlock - 1) / kRowsPerColumnBlock);
    DBCORE_CHECK(grid.y <= 65535, "EINVAL", "linear_backward: %d rows is too many", M);
    column_sum_kernel<<<grid, kThreads>>>(dbias, dout, M, OC);
    DBCORE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace dbcore::cuda
