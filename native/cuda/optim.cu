// fp32 AdamW, twin of native/cpu/optim.cpp's adamw_step: the same float32 operations in the same order (torch 1.13
// `_single_tensor_adamw`), scalar factors from cpu::adamw_constants. Compiled with --fmad=false and IEEE division
// and square root (CMakeLists.txt), so each operation rounds once as on the CPU: results are bit-identical.
// n = elements of one parameter tensor. Accumulation: param, m, v updated in place (=).
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

__global__ void adamw_kernel(float* param, float* m, float* v, const float* grad, cpu::AdamWConstants k, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) {
    const float g = grad[i];
    const float p = param[i] * k.decay;
    const float mi = m[i] * k.b1 + k.one_minus_b1 * g;
    const float vi = v[i] * k.b2 + k.one_minus_b2 * g * g;  // addcmul: value·t1·t2, left to right
    const float denom = sqrtf(vi) / k.bias_correction2_sqrt + k.eps;
    param[i] = p + k.neg_step_size * mi / denom;  // addcdiv: value·t1/t2, left to right
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step, int64_t n) {
  if (n <= 0) return;
  adamw_kernel<<<blocks_for(n), kThreads>>>(param, m, v, grad, cpu::adamw_constants(h, step), n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
