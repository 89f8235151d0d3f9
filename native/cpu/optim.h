// fp32 AdamW (torch 1.13 `torch.optim.AdamW`, single-tensor path) and global gradient-norm clipping
// (`torch.nn.utils.clip_grad_norm_`). n = number of elements of one parameter tensor; count = number of tensors.
// Accumulation: the optimizer updates param, m and v in place (=); clipping scales gradients in place;
// norms are accumulated in double, per chunk of kOptimChunk elements, the chunk sums added in order (the same
// value for any thread count).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dbcore::cpu {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// One AdamW step k (k ≥ 1: the number of updates including this one) on one tensor, in float32 with
// torch 1.13's order of operations (ref: torch/optim/adamw.py `_single_tensor_adamw`):
//   p *= 1 - lr·wd;  m = m·β1 + (1-β1)·g;  v = v·β2 + (1-β2)·g·g;
//   p += (-lr/(1-β1^k))·m / (sqrt(v)/sqrt(1-β2^k) + eps)
// Scalar factors are computed in double (as Python does) and rounded to float once.
// The scalar factors of step k, computed in double (as Python does) and rounded to float once; shared with the
// CUDA twin (native/cuda/optim.cu).
struct AdamWConstants {
  float decay, b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bias_correction2_sqrt, eps;
};
inline AdamWConstants adamw_constants(const AdamWHyper& h, int64_t step) {
  AdamWConstants c;
  c.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  c.b1 = static_cast<float>(h.beta1);
  c.one_minus_b1 = static_cast<float>(1.0 - h.beta1);
  c.b2 = static_cast<float>(h.beta2);
  c.one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bias_correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  c.neg_step_size = static_cast<float>(-(h.lr / bias_correction1));
  c.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  c.eps = static_cast<float>(h.eps);
  return c;
}

void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step,
                int64_t n);

// Σ g² over one tensor, accumulated in double.
double sum_of_squares(const float* grad, int64_t n);
// *acc += Σ x² (sum_of_squares added into a caller's accumulator, in host memory here; the CUDA twin adds into a
// device double without synchronizing, so callers sum many tensors and read the accumulators once).
void sum_of_squares_into(double* acc, const float* x, int64_t n);

// Σ_i ||g_i||² over count gradient tensors: parallel over the chunks of all tensors (small tensors make
// per-tensor parallel loops inefficient), each chunk summed in double, the chunk sums added in tensor order.
double sum_of_squares_all(const float* const* grads, const int64_t* numels, int count);
// g_i *= s for every gradient tensor (clip_grad_norm_'s in-place scaling).
void scale_all(float* const* grads, const int64_t* numels, int count, float s);

struct ClipResult {
  double total_norm;  // sqrt(Σ_i ||g_i||²) before clipping
  double coef;        // min(1, max_norm / (total_norm + 1e-6)), the factor every gradient was scaled by
};
// clip_grad_norm_'s factor: min(1, max_norm / (total_norm + 1e-6)).
inline double clip_coefficient(double total_norm, double max_norm) {
  return std::min(1.0, max_norm / (total_norm + 1e-6));
}
// clip_grad_norm_ over `count` gradient tensors (grads[i] has numels[i] elements), scaled in place.
ClipResult clip_grad_norm(float* const* grads, const int64_t* numels, int count, double max_norm);

// One fp32 AdamW tensor of a fused update: parameter, states and gradient, n elements each.
struct AdamWTensor {
  float* param;
  float* m;
  float* v;
  float* grad;
  int64_t n;
};
// clip_grad_norm_'s scaling, AdamW step k and zero_grad in one pass over `count` tensors, parallel over the chunks
// of all tensors: per element gs = g·clip_coef (rounded to float, as the in-place scaling; ·1 is exact), the
// adamw_step update with gs, then g = 0. Bit-identical to scale_all + adamw_step per tensor + filling zeros.
void adamw_clip_step_zero(const AdamWTensor* tensors, int count, float clip_coef, const AdamWHyper& h,
                          int64_t step);

}  // namespace dbcore::cpu
