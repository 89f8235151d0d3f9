// Compiled with -ffp-contract=off (CMakeLists.txt): every operation rounds once, in the order written,
// like torch's separate elementwise kernels.
#include "optim.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace dbcore::cpu {

DBCORE_SIMD_CLONES
void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step,
                int64_t n) {
  const AdamWConstants k = adamw_constants(h, step);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float p = param[i] * k.decay;
    const float mi = m[i] * k.b1 + k.one_minus_b1 * g;
    const float vi = v[i] * k.b2 + k.one_minus_b2 * g * g;  // addcmul: value·t1·t2, left to right
    const float denom = std::sqrt(vi) / k.bias_correction2_sqrt + k.eps;
    param[i] = p + k.neg_step_size * mi / denom;  // addcdiv: value·t1/t2, left to right
    m[i] = mi;
    v[i] = vi;
  }
}

DBCORE_SIMD_CLONES
double sum_of_squares(const float* grad, int64_t n) {
  double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(grad[i]) * grad[i];
  return s;
}

DBCORE_SIMD_CLONES
static void scale_by(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

ClipResult clip_grad_norm(float* const* grads, const int64_t* numels, int count, double max_norm) {
  double total_sq = 0.0;
  for (int i = 0; i < count; ++i) total_sq += sum_of_squares(grads[i], numels[i]);
  ClipResult r;
  r.total_norm = std::sqrt(total_sq);
  r.coef = std::min(1.0, max_norm / (r.total_norm + 1e-6));
  if (r.coef < 1.0) {
    for (int i = 0; i < count; ++i) scale_by(grads[i], static_cast<float>(r.coef), numels[i]);
  }
  return r;
}

}  // namespace dbcore::cpu
