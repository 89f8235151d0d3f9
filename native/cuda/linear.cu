// Fully connected layer on the CUDA GEMM, twin of native/cpu/linear.cpp (ref: torch.nn.Linear).
// Dimension letters: M rows (tokens), IC in, OC out features. Accumulation: dweight, dbias +=; dinp = (skipped when
// null). The products take the caller's precision (autocast); the bias add (GEMM epilogue) and its gradient
// are fp32.
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int kRowsPerColumnBlock = 64;

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
  // out = inp · weightᵀ + bias, the bias added in the GEMM's epilogue (no second pass over out)
  sgemm(false, true, M, OC, IC, 1.f, inp, IC, weight, IC, 0.f, out, OC, precision, GemmEpilogue{bias});
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
