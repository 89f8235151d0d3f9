// fp32 AdamW (torch 1.13 `torch.optim.AdamW`, single-tensor path) and global gradient-norm clipping
// (`torch.nn.utils.clip_grad_norm_`). n = number of elements of one parameter tensor.
// Accumulation: the optimizer updates param, m and v in place (=); clipping scales gradients in place;
// norms are accumulated in double.
#pragma once
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
void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step,
                int64_t n);

// Σ g² over one tensor, accumulated in double.
double sum_of_squares(const float* grad, int64_t n);

struct ClipResult {
  double total_norm;  // sqrt(Σ_i ||g_i||²) before clipping
  double coef;        // min(1, max_norm / (total_norm + 1e-6)), the factor every gradient was scaled by
};
// clip_grad_norm_ over `count` gradient tensors (grads[i] has numels[i] elements), scaled in place.
ClipResult clip_grad_norm(float* const* grads, const int64_t* numels, int count, double max_norm);

}  // namespace dbcore::cpu
