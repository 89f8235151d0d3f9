// Fully connected layer. ref: torch.nn.Linear. Dimension letters: M rows (tokens), IC in, OC out features.
// Accumulation: parameter gradients +=, input gradients = (skipped when the pointer is null). Products run at
// `precision` (cpu/gemm.h: F16 / BF16 round the operands).
#pragma once
#include "core/precision.h"

namespace dbcore::cpu {

// out (M, OC) = inp (M, IC) · weight (OC, IC)ᵀ + bias (OC); bias may be null.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int M, int IC, int OC,
                    Precision precision = Precision::F32);
// Linear then GEGLU (ref: diffusers GEGLU, its proj is a Linear to 2F features): pre (M, 2F) = inp · weightᵀ + bias
// (weight (2F, IC), bias (2F) or null) = [hidden | gate], kept for geglu_backward; out (M, F) = hidden · gelu(gate).
// Reference twin of cuda::linear_geglu_forward, which fuses the two.
void linear_geglu_forward(float* out, float* pre, const float* inp, const float* weight, const float* bias, int M,
                          int IC, int F, Precision precision = Precision::F32);
// dinp (M, IC) = dout · weight; dweight (OC, IC) += doutᵀ · inp; dbias (OC) += Σ_M dout.
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int M, int IC, int OC, Precision precision = Precision::F32);

}  // namespace dbcore::cpu
