// Matrix products on the CPU: OpenBLAS sgemm, row-major.
// Dimension letters: C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C.
#pragma once

namespace dbcore::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// Batched: for b < batch, C + b·stride_c = op(A + b·stride_a) · op(B + b·stride_b) (+ beta · C).
void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch);

}  // namespace dbcore::cpu
