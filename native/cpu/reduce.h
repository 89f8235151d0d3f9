// Reductions over contiguous float rows shared by the CPU kernels. Inlined into their callers, so they are
// vectorized for whichever DBCORE_SIMD_CLONES clone calls them. Partial sums run in float across SIMD lanes
// (omp simd reduction: 8-16 independent accumulators), the caller sums rows in double where rows are many.
#pragma once

namespace dbcore::cpu {

inline float row_sum(const float* x, long n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (long i = 0; i < n; ++i) s += x[i];
  return s;
}

// Σ (x_i - mean)²: the second pass of a two-pass variance.
inline float row_sum_sq_dev(const float* x, float mean, long n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (long i = 0; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

// Σ y_i · (x_i - mean), without the cancellation of Σ y·x - mean·Σ y.
inline float row_dot_dev(const float* y, const float* x, float mean, long n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (long i = 0; i < n; ++i) s += y[i] * (x[i] - mean);
  return s;
}

}  // namespace dbcore::cpu
