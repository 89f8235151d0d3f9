// Normalization layers. ref: torch.nn.GroupNorm, torch.nn.LayerNorm (biased variance, eps inside the sqrt).
// Dimension letters: N batch, C channels, HW spatial positions, G groups; M rows for LayerNorm.
// Saved statistics: mean and rstd = 1/sqrt(var + eps), one per (N, G) or per row.
// Accumulation: parameter gradients +=, input gradients =.
#pragma once

namespace dbcore::cpu {

// out, inp (N, C, HW); weight, bias (C); mean, rstd (N, G).
void groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, int HW, int G, float eps);
void groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C, int HW, int G);

// GroupNorm followed by SiLU (every ResnetBlock's norm1/act and norm2/act, the UNet's and VAE's norm_out/act):
// out = silu(groupnorm(inp)) without storing the normalized tensor; backward recomputes it from inp, mean, rstd
// and bias. The same formulas as groupnorm_* followed by silu_*, so equal to them up to float rounding.
// dinp may alias dout.
void groupnorm_silu_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                            const float* bias, int N, int C, int HW, int G, float eps);
void groupnorm_silu_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                             int C, int HW, int G);

// out, inp (M, C); weight, bias (C); mean, rstd (M).
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int M, int C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int M, int C);

}  // namespace dbcore::cpu
