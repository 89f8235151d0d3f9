// Pointwise activations. Backward: dinp = dout · f'(inp) (written, =). n = element count.
#pragma once
#include <cstdint>

namespace dbcore::cpu {

void silu_forward(float* out, const float* inp, int64_t n);  // x·σ(x)
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void gelu_forward(float* out, const float* inp, int64_t n);  // exact: x·Φ(x) = x/2·(1 + erf(x/√2))
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void quick_gelu_forward(float* out, const float* inp, int64_t n);  // x·σ(1.702x) (CLIP)
void quick_gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n);

// GEGLU (ref: diffusers GEGLU): inp (M, 2F) = [hidden | gate] per row; out (M, F) = hidden · gelu(gate) (exact).
void geglu_forward(float* out, const float* inp, int M, int F);
void geglu_backward(float* dinp, const float* dout, const float* inp, int M, int F);

}  // namespace dbcore::cpu
