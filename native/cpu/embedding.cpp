// Embedding lookups and the sinusoidal timestep embedding. Dimension letters: M looked-up rows, C width, V table
// rows, N timesteps. Accumulation: dtable += (repeated ids accumulate); out =.
#include "embedding.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/parallel.h"

namespace dbcore::cpu {

void embedding_forward(float* out, const int32_t* ids, const float* table, int M, int C, int V) {
  for (int m = 0; m < M; ++m)
    DBCORE_CHECK(ids[m] >= 0 && ids[m] < V, "EINVAL", "embedding: id %d at position %d is outside [0, %d)", ids[m],
                 m, V);
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * C > 32768)
  for (int m = 0; m < M; ++m) {
    const float* row = table + static_cast<long>(ids[m]) * C;
    std::copy(row, row + C, out + static_cast<long>(m) * C);
  }
}

// Rows in order, so repeated ids add up deterministically; each row is a contiguous vector add.
DBCORE_SIMD_CLONES
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int M, int C) {
  for (int m = 0; m < M; ++m) {
    float* dst = dtable + static_cast<long>(ids[m]) * C;
    const float* src = dout + static_cast<long>(m) * C;
#pragma omp simd
    for (int c = 0; c < C; ++c) dst[c] += src[c];
  }
}

// Every step rounds to float32 as torch does on float32 tensors (python scalars enter as float32):
//   exponent_i = float(-ln max_period) · i,  exponent_i /= float(half - shift),  freq_i = exp(exponent_i),
//   arg = (t · freq_i) · scale,  out = [sin(arg) | cos(arg)], swapped halves when flip_sin_to_cos.
// exp/sin/cos come from libm (correctly rounded in practice); torch's SLEEF routines are ≤ 1 ulp, so a few entries
// can differ by 1-2 ulp (measured against the golden in test/native/embedding.test.ts).
void timestep_embedding(float* out, const float* timesteps, int N, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float scale, float max_period) {
  const int half = dim / 2;
  DBCORE_CHECK(half > 0 && half != downscale_freq_shift && max_period > 0, "EINVAL",
               "timestep_embedding: needs dim >= 2 (got %d), dim/2 != shift (got %g) and max_period > 0 (got %g)",
               dim, double(downscale_freq_shift), double(max_period));
  const float neg_log_period = static_cast<float>(-std::log(static_cast<double>(max_period)));
  const float denominator = static_cast<float>(half - static_cast<double>(downscale_freq_shift));
  const int sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
  for (int n = 0; n < N; ++n) {
    float* row = out + static_cast<long>(n) * dim;
    for (int i = 0; i < half; ++i) {
      float exponent = neg_log_period * static_cast<float>(i);
      exponent = exponent / denominator;
      const float arg = (timesteps[n] * std::exp(exponent)) * scale;
      row[sin_at + i] = std::sin(arg);
      row[cos_at + i] = std::cos(arg);
    }
    if (dim % 2) row[dim - 1] = 0.f;
  }
}

}  // namespace dbcore::cpu
