// OpenBLAS does the work; this file only adapts row-major calls and batches.
#include "gemm.h"

#include <cblas.h>

namespace dbcore::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch) {
  for (int b = 0; b < batch; ++b)
    sgemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta, C + b * stride_c, ldc);
}

}  // namespace dbcore::cpu
