// OpenBLAS does the work; this file adapts row-major calls and batches, and rounds operands for fp16 / bf16 autocast.
#include "gemm.h"

#include <cblas.h>

#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace dbcore::cpu {

namespace {

// One operand value as the matrix unit reads it: rounded to fp16 or bf16 (nearest, ties to even), back in fp32.
// fp16 saturates as a tensor core's conversion does: |x| ≥ 65520 becomes ±inf, NaN stays NaN.
float rounded_operand(float x, Precision precision) {
  return precision == Precision::F16 ? half_to_float(float_to_half(x)) : bf16_to_float(float_to_bf16(x));
}

// A stored (rows, cols) matrix with leading dimension ld, rounded to `precision` into a packed per-thread buffer
// (`slot` 0 for A, 1 for B; grown once, reused by every later call on this thread).
const float* rounded(const float* src, int rows, int cols, int ld, Precision precision, int slot) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& buf = buffers[slot];
  if (buf.size() < size_t(rows) * cols) buf.resize(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) buf[size_t(r) * cols + c] = rounded_operand(src[size_t(r) * ld + c], precision);
  return buf.data();
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision) {
  if (M == 0 || N == 0) return;
  if (precision != Precision::F32 && K > 0) {
    // Stored shapes: A is (M, K), or (K, M) transposed; B is (K, N), or (N, K) transposed.
    const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    A = rounded(A, a_rows, a_cols, lda, precision, 0);
    B = rounded(B, b_rows, b_cols, ldb, precision, 1);
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
