// Fully connected layer on OpenBLAS. ref: torch.nn.Linear.
// Dimension letters: M rows (tokens), IC in features, OC out features; row-major (M, IC) · (OC, IC)ᵀ.
// Accumulation: dweight, dbias +=; dinp = . Any of the three gradient pointers may be null (that gradient is skipped).
#include "linear.h"

#include <algorithm>

#include "activation.h"
#include "core/parallel.h"
#include "gemm.h"

namespace dbcore::cpu {

namespace {

// Columns of dout handled together when summing over rows: one 64-byte cache line per row.
constexpr int kColumnTile = 16;

// dbias (OC) += Σ_m dout (M, OC), summed in double per column (M can be thousands of tokens).
DBCORE_SIMD_CLONES
void accumulate_column_sums(float* dbias, const float* dout, int M, int OC) {
  const int tiles = (OC + kColumnTile - 1) / kColumnTile;
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * OC > 32768)
  for (int t = 0; t < tiles; ++t) {
    const int c0 = t * kColumnTile, width = std::min(kColumnTile, OC - c0);
    double acc[kColumnTile] = {};
    for (int m = 0; m < M; ++m) {
      const float* row = dout + static_cast<long>(m) * OC + c0;
      for (int j = 0; j < width; ++j) acc[j] += row[j];
    }
    for (int j = 0; j < width; ++j) dbias[c0 + j] += static_cast<float>(acc[j]);
  }
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int M, int IC, int OC,
                    Precision precision) {
  float beta = 0.f;
  if (bias) {
    // Start every row from the bias so the product adds onto it (beta = 1): no second pass over out.
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * OC > 32768)
    for (int m = 0; m < M; ++m) std::copy(bias, bias + OC, out + static_cast<long>(m) * OC);
    beta = 1.f;
  }
  sgemm(false, true, M, OC, IC, 1.f, inp, IC, weight, IC, beta, out, OC, precision);
}

void linear_geglu_forward(float* out, float* pre, const float* inp, const float* weight, const float* bias, int M,
                          int IC, int F, Precision precision) {
  linear_forward(pre, inp, weight, bias, M, IC, 2 * F, precision);
  geglu_forward(out, pre, M, F);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int M, int IC, int OC, Precision precision) {
  if (dinp) sgemm(false, false, M, IC, OC, 1.f, dout, OC, weight, IC, 0.f, dinp, IC, precision);  // (M,OC)·(OC,IC)
  if (dweight) sgemm(true, false, OC, IC, M, 1.f, dout, OC, inp, IC, 1.f, dweight, IC, precision);  // (OC,M)·(M,IC) +=
  if (dbias) accumulate_column_sums(dbias, dout, M, OC);
}

}  // namespace dbcore::cpu
