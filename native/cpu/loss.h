// Losses. ref: torch.nn.functional.mse_loss (mean reduction), summed in float64.
#pragma once
#include <cstdint>

namespace dbcore::cpu {

double mse_forward(const float* pred, const float* target, int64_t n);  // mean((pred - target)²)
// dpred = dloss · 2 (pred - target) / n (written).
void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float dloss);

}  // namespace dbcore::cpu
