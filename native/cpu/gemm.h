// Matrix products on the CPU: OpenBLAS sgemm, row-major.
// Dimension letters: C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C.
// Precision::F16 / BF16 (autocast): A and B are rounded to fp16 / bfloat16 (round to nearest even) before the fp32
// product, the numerics of a tensor core with fp32 accumulation; C stays fp32. fp16 operands beyond its range
// (|x| ≥ 65520) become ±inf, so an overflowing scaled gradient shows as inf/NaN exactly as on CUDA.
#pragma once
#include "core/precision.h"

namespace dbcore::cpu {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision = Precision::F32);

// Batched: for b < batch, C + b·stride_c = op(A + b·stride_a) · op(B + b·stride_b) (+ beta · C).
void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch, Precision precision = Precision::F32);

// dst (rows, cols), packed = src (rows, cols; leading dimension ld) rounded to `precision` (F16 / BF16: the operand an
// autocast product reads, bit-identical to core/half.h's round trip) and stored back in fp32. F32 is not a rounding:
// callers pass F16 or BF16.
void round_to_precision(float* dst, const float* src, int rows, int cols, int ld, Precision precision);

}  // namespace dbcore::cpu
