// Classifier-free guidance. Dimension letters: n elements of one half. Accumulation: written (=).
#include "guidance.h"

#include "core/parallel.h"

namespace dbcore::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

DBCORE_SIMD_CLONES
void guidance_combine(float* out, const float* uncond, const float* cond, float scale, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
}

}  // namespace dbcore::cpu
