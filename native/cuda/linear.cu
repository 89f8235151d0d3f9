// Fully connected layer on the CUDA GEMM, twin of native/cpu/linear.cpp (ref: torch.nn.Linear).
// Dimension letters: M rows (tokens), IC in, OC out features. Accumulation: dweight, dbias += (dbias in a fixed
// order: column_sums.cuh); dinp = (skipped when null). The products take the caller's precision (autocast); the bias add (GEMM epilogue) and its gradient
// are fp32.
#include "column_sums.cuh"
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

// dbias: Σ_m dout[m][c].
struct DoutTerm {
  const float* dout;
  int OC;
  __device__ void operator()(int m, int c, float* acc) const { acc[0] += dout[static_cast<int64_t>(m) * OC + c]; }
};

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
  if (dbias) add_column_sums(ColumnDests<1>{{dbias}}, DoutTerm{dout, OC}, M, OC, "linear_backward");
}

}  // namespace dbcore::cuda
