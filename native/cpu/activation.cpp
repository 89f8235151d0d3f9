// Pointwise activations and GEGLU. Dimension letters: n elements; M rows, F features (GEGLU).
// Accumulation: outputs and input gradients are written (=).
#include "activation.h"

#include <cmath>

#include "core/parallel.h"
#include "fast_math.h"

namespace dbcore::cpu {

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kQuickGeluAlpha = 1.702f;  // ref: transformers QuickGELUActivation

// GELU (exact form, not the tanh one): x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2, erf by fast_erf (≈ 1 ulp).
DBCORE_INLINE float gelu(float x) { return 0.5f * x * (1.f + fast_erf(x * kInvSqrt2)); }
// d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
DBCORE_INLINE float gelu_grad(float x) {
  return 0.5f * (1.f + fast_erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * fast_exp(-0.5f * x * x);
}

}  // namespace

DBCORE_SIMD_CLONES
void silu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * fast_sigmoid(inp[i]);
}

// d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))).
DBCORE_SIMD_CLONES
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float x = inp[i], s = fast_sigmoid(x);
    dinp[i] = dout[i] * s * (1.f + x * (1.f - s));
  }
}

DBCORE_SIMD_CLONES
void gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = gelu(inp[i]);
}

DBCORE_SIMD_CLONES
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * gelu_grad(inp[i]);
}

DBCORE_SIMD_CLONES
void quick_gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * fast_sigmoid(kQuickGeluAlpha * inp[i]);
}

// d/dx x·σ(αx) = σ(αx)·(1 + αx·(1 − σ(αx))).
DBCORE_SIMD_CLONES
void quick_gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float ax = kQuickGeluAlpha * inp[i], s = fast_sigmoid(ax);
    dinp[i] = dout[i] * s * (1.f + ax * (1.f - s));
  }
}

// out[m, f] = hidden[m, f] · gelu(gate[m, f]) with hidden = inp[m, 0:F], gate = inp[m, F:2F].
DBCORE_SIMD_CLONES
void geglu_forward(float* out, const float* inp, int M, int F) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const float* hidden = inp + static_cast<long>(m) * 2 * F;
    const float* gate = hidden + F;
    float* y = out + static_cast<long>(m) * F;
#pragma omp simd
    for (int f = 0; f < F; ++f) y[f] = hidden[f] * gelu(gate[f]);
  }
}

// dhidden = dout · gelu(gate), dgate = dout · hidden · gelu'(gate).
DBCORE_SIMD_CLONES
void geglu_backward(float* dinp, const float* dout, const float* inp, int M, int F) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    const float* hidden = inp + static_cast<long>(m) * 2 * F;
    const float* gate = hidden + F;
    const float* dy = dout + static_cast<long>(m) * F;
    float* dhidden = dinp + static_cast<long>(m) * 2 * F;
    float* dgate = dhidden + F;
#pragma omp simd
    for (int f = 0; f < F; ++f) {
      dhidden[f] = dy[f] * gelu(gate[f]);
      dgate[f] = dy[f] * hidden[f] * gelu_grad(gate[f]);
    }
  }
}

}  // namespace dbcore::cpu
