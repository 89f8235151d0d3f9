// OpenBLAS does the work; this file adapts row-major calls and batches, and rounds operands for bf16 autocast.
#include "gemm.h"

#include <cblas.h>

#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace dbcore::cpu {

namespace {

// A stored (rows, cols) matrix with leading dimension ld, rounded to bf16 values into a packed per-thread buffer
// (`slot` 0 for A, 1 for B; grown once, reused by every later call on this thread).
const float* bf16_rounded(const float* src, int rows, int cols, int ld, int slot) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& buf = buffers[slot];
  if (buf.size() < size_t(rows) * cols) buf.resize(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) buf[size_t(r) * cols + c] = bf16_to_float(float_to_bf16(src[size_t(r) * ld + c]));
  return buf.data();
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision) {
  if (M == 0 || N == 0) return;
  DBCORE_CHECK(precision != Precision::F16, "EUNSUPPORTED", "fp16 matrix products need the CUDA backend");
  if (precision == Precision::BF16 && K > 0) {
    // Stored shapes: A is (M, K), or (K, M) transposed; B is (K, N), or (N, K) transposed.
    const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    A = bf16_rounded(A, a_rows, a_cols, lda, 0);
    B = bf16_rounded(B, b_rows, b_cols, ldb, 1);
    lda = a_cols;
    ldb = b_cols;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch, Precision precision) {
  for (int b = 0; b < batch; ++b)
    sgemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta, C + b * stride_c, ldc,
          precision);
}

}  // namespace dbcore::cpu
