// OpenBLAS does the work; this file adapts row-major calls and batches, and rounds operands for fp16 / bf16 autocast.
#include "gemm.h"

#include <cblas.h>

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"

namespace dbcore::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this many elements one thread rounds faster than a fork

// x rounded to bfloat16 (nearest, ties to even), back in fp32: bf16_to_float(float_to_bf16(x)) without branches.
// Adding 0x7fff + (bit 16) to the bits rounds the low 16 bits away with ties to even (a carry into the exponent is
// the correct next binade, or inf); NaN is quieted as float_to_bf16 does (top payload bits kept, bit 22 set).
inline float round_to_bf16(float x) {
  const uint32_t bits = float_bits(x);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  const uint32_t quiet_nan = (bits & 0xffff0000u) | 0x00400000u;
  return bits_float((bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// x rounded to IEEE half (nearest, ties to even), back in fp32: half_to_float(float_to_half(x)) without branches.
// Works on |x| and puts the sign back at the end.
//  - fp16 normal range (|x| ≥ 2^-14): a half keeps 10 of float's 23 mantissa bits, so adding 0xfff + (bit 13) and
//    clearing the low 13 bits rounds with ties to even; a carry into the exponent is the correct next binade.
//    A result ≥ 65536 means |x| ≥ 65520 (the midpoint above 65504, the largest half): it saturates to inf.
//  - fp16 subnormals (|x| < 2^-14): the halves there are the multiples of 2^-24. |x| + 0.5 lies in [0.5, 1), whose
//    float spacing is exactly 2^-24, so the addition rounds (nearest, ties to even: 0.5's mantissa is 0, so the
//    sum's mantissa is the multiple itself) to 0.5 + k·2^-24 with k = |x| / 2^-24 rounded as float_to_half does;
//    subtracting 0.5 is exact (Sterbenz: both in [0.5, 1]) and leaves k·2^-24. k = 1024 gives 2^-14, the smallest
//    normal, as the carry does in float_to_half. This needs IEEE arithmetic: no -ffast-math (which would fold
//    (a + 0.5) - 0.5 to a and flush float subnormal inputs to zero) for this file.
//  - inf stays inf (the normal-range add leaves its zero mantissa alone, then saturates); NaN becomes the quiet
//    NaN half_to_float returns for a half NaN (bit 22 only, payload dropped).
inline float round_to_f16(float x) {
  const uint32_t bits = float_bits(x), sign = bits & 0x80000000u, mag = bits & 0x7fffffffu;
  const uint32_t normal = (mag + 0xfffu + ((mag >> 13) & 1u)) & ~0x1fffu;
  const uint32_t subnormal = float_bits((bits_float(mag) + 0.5f) - 0.5f);
  // A mask, not a select: with a select GCC moves the float additions into the branch that uses them and, since
  // they might trap (-ftrapping-math), no longer vectorizes the loop.
  const uint32_t is_subnormal = 0u - uint32_t(mag < 0x38800000u);  // 0x38800000: 2^-14
  uint32_t rounded = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  rounded = rounded >= 0x47800000u ? 0x7f800000u : rounded;  // 0x47800000: 65536
  rounded = mag > 0x7f800000u ? 0x7fc00000u : rounded;
  return bits_float(sign | rounded);
}

// A stored (rows, cols) matrix with leading dimension ld, rounded to `precision` into a packed per-thread buffer
// (`slot` 0 for A, 1 for B; grown once, reused by every later call on this thread).
const float* rounded(const float* src, int rows, int cols, int ld, Precision precision, int slot) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& buf = buffers[slot];
  if (buf.size() < size_t(rows) * cols) buf.resize(size_t(rows) * cols);
  round_to_precision(buf.data(), src, rows, cols, ld, precision);
  return buf.data();
}

}  // namespace

DBCORE_SIMD_CLONES
void round_to_precision(float* dst, const float* src, int rows, int cols, int ld, Precision precision) {
  DBCORE_CHECK(precision != Precision::F32, "EINVAL", "round_to_precision: precision must be fp16 or bf16");
  const bool f16 = precision == Precision::F16;
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols > kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const float* in = src + int64_t(r) * ld;
    float* out = dst + int64_t(r) * cols;
    if (f16) {
#pragma omp simd
      for (int c = 0; c < cols; ++c) out[c] = round_to_f16(in[c]);
    } else {
#pragma omp simd
      for (int c = 0; c < cols; ++c) out[c] = round_to_bf16(in[c]);
    }
  }
}

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
