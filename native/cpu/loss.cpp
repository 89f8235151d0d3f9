// Mean squared error. ref: torch.nn.functional.mse_loss (mean reduction). n = element count.
// The forward sum runs in float64; the backward writes dpred (=).
#include "loss.h"

#include "core/parallel.h"

namespace dbcore::cpu {

DBCORE_SIMD_CLONES
double mse_forward(const float* pred, const float* target, int64_t n) {
  if (n == 0) return 0.0;
  double sum = 0.0;
#pragma omp parallel for simd reduction(+ : sum) schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(pred[i]) - target[i];
    sum += d * d;
  }
  return sum / static_cast<double>(n);
}

DBCORE_SIMD_CLONES
void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float dloss) {
  const float k = static_cast<float>(2.0 * dloss / static_cast<double>(n));
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) dpred[i] = k * (pred[i] - target[i]);
}

}  // namespace dbcore::cpu
