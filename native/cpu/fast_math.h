// Branch-free float math that the compiler vectorizes inside `#pragma omp simd` loops (glibc's expf is a
// scalar call there unless -ffast-math is on). Used by the attention softmax and the sigmoid activations.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// Forced inline: the kernels that call these are compiled per ISA (DBCORE_SIMD_CLONES), and GCC does not
// inline a plain function into a clone with a different target, which would keep the loop scalar.
#if defined(__GNUC__) || defined(__clang__)
#define DBCORE_INLINE inline __attribute__((always_inline))
#else
#define DBCORE_INLINE inline
#endif

namespace dbcore::cpu {

// cond ? a : b computed with bit masks. A plain ?: on a clamped input lets GCC thread the branches into
// separate constant paths, which stops the loop from being vectorized.
DBCORE_INLINE float select_bits(bool cond, float a, float b) {
  int32_t ia, ib, mask = -static_cast<int32_t>(cond);
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  int32_t r = (ia & mask) | (ib & ~mask);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

// exp(x − n·ln2) for |x − n·ln2| ≤ ln2/2: the Cephes expf polynomial of degree 7, error ≤ 1 ulp there.
DBCORE_INLINE float exp_of_remainder(float x, float n) {
  float r = x - n * 0.693359375f;  // ln2 split in a high part exact in float and a low correction
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.f;
}

// exp(x) for float x, relative error ≤ 2 ulp on [-87, 88]; exactly 0 below -87.3 (so exp(-inf) = 0, which the
// masked attention scores rely on); saturates at exp(88.7) above. Cephes expf: x = n·ln2 + r with |r| ≤ ln2/2,
// exp(r) by a degree-7 polynomial, 2^n put into the exponent bits.
DBCORE_INLINE float fast_exp(float x) {
  const float lo = -87.33654f, hi = 88.72283f;
  float xc = select_bits(x < lo, lo, select_bits(x > hi, hi, x));
  // n = round(x / ln2) by the 1.5·2^23 trick: the sum's low mantissa bits hold n.
  const float shifter = 12582912.f;
  float t = xc * 1.44269504088896341f + shifter;
  float n = t - shifter;
  int32_t tbits;
  std::memcpy(&tbits, &t, 4);
  int32_t ni = tbits - 0x4B400000;
  float y = exp_of_remainder(xc, n);
  // 2^n via the exponent field; n ∈ [-126, 128] is applied in two halves so each factor is a normal float.
  int32_t half = ni >> 1;
  int32_t b1 = (half + 127) << 23, b2 = (ni - half + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  y = y * s1 * s2;
  return select_bits(x < lo, 0.f, y);
}

// exp(x) for x ≤ 88 (softmax arguments x − max ≤ 0, or slightly above 0 after rounding), bit-identical to
// fast_exp there (checked by hand over every float in [-120, 88]); exactly 0 below -87.3, -inf included. About 40 %
// cheaper than fast_exp: no clamping (an argument below -87.3 yields garbage that the final select discards) and
// 2^n in one factor, which n ≤ 127 allows. Unsigned bit arithmetic, so discarded lanes overflow without undefined
// behavior.
DBCORE_INLINE float fast_exp_le88(float x) {
  const float shifter = 12582912.f;  // n = round(x / ln2), as in fast_exp
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  uint32_t tbits;
  std::memcpy(&tbits, &t, 4);
  float y = exp_of_remainder(x, n);
  uint32_t bits = (tbits - 0x4B400000u + 127u) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, 4);
  return select_bits(x < -87.33654f, 0.f, y * scale);
}

// erf(x) for float x, error about 1 ulp (2e-8 absolute in double evaluation of the same polynomials): two minimax
// fits (N. Juffa's erff), an odd polynomial x + x·P(x²) for |x| ≤ 0.9277 and 1 − exp(Q(|x|)) above, both computed
// and one selected so the loop stays branch-free. glibc's erff is a scalar call that keeps loops scalar.
DBCORE_INLINE float fast_erf(float x) {
  const float t = std::fabs(x), s = x * x;
  float p = -5.96761703e-4f;  // |x| ≤ 0.9277
  p = p * s + 4.99119423e-3f;
  p = p * s - 2.67681349e-2f;
  p = p * s + 1.12819925e-1f;
  p = p * s - 3.76125336e-1f;
  p = p * s + 1.28379166e-1f;
  const float small = p * x + x;
  float q = -1.72853470e-5f * t + 3.83197126e-4f;  // |x| > 0.9277
  const float u = -3.88396438e-3f * t + 2.42546219e-2f;
  q = q * s + u;
  q = q * t - 1.06777877e-1f;
  q = q * t - 6.34846687e-1f;
  q = q * t - 1.28717512e-1f;
  q = q * t - t;
  const float large = std::copysign(1.f - fast_exp(q), x);
  return select_bits(t > 0.927734375f, large, small);
}

// σ(x) = 1 / (1 + e^{-x}).
DBCORE_INLINE float fast_sigmoid(float x) { return 1.f / (1.f + fast_exp(-x)); }

}  // namespace dbcore::cpu
