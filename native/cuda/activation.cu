// Pointwise activations and GEGLU, twins of native/cpu/activation.cpp (same formulas; erff/expf in fp32).
// Dimension letters: n elements; M rows, F features (GEGLU). Accumulation: outputs and input gradients written (=).
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kQuickGeluAlpha = 1.702f;  // ref: transformers QuickGELUActivation

// Derivative of the exact GELU (common.cuh's gelu): Φ(x) + x·φ(x).
__device__ __forceinline__ float gelu_grad(float x) {
  return 0.5f * (1.f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
}

struct Silu {
  __device__ static float f(float x) { return x * sigmoid(x); }
  __device__ static float df(float x) {  // σ(x)·(1 + x·(1 − σ(x)))
    float s = sigmoid(x);
    return s * (1.f + x * (1.f - s));
  }
};
struct Gelu {
  __device__ static float f(float x) { return gelu(x); }
  __device__ static float df(float x) { return gelu_grad(x); }
};
struct QuickGelu {
  __device__ static float f(float x) { return x * sigmoid(kQuickGeluAlpha * x); }
  __device__ static float df(float x) {  // σ(αx)·(1 + αx·(1 − σ(αx)))
    float ax = kQuickGeluAlpha * x, s = sigmoid(ax);
    return s * (1.f + ax * (1.f - s));
  }
};

template <typename Act>
__global__ void forward_kernel(float* out, const float* inp, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) out[i] = Act::f(inp[i]);
}

template <typename Act>
__global__ void backward_kernel(float* dinp, const float* dout, const float* inp, int64_t n) {
  DBCORE_GRID_STRIDE(i, n) dinp[i] = dout[i] * Act::df(inp[i]);
}

template <typename Act>
void launch_forward(float* out, const float* inp, int64_t n) {
  if (n <= 0) return;
  forward_kernel<Act><<<blocks_for(n), kThreads>>>(out, inp, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

template <typename Act>
void launch_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  if (n <= 0) return;
  backward_kernel<Act><<<blocks_for(n), kThreads>>>(dinp, dout, inp, n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

// inp (M, 2F) = [hidden | gate]; out (M, F) = hidden · gelu(gate).
__global__ void geglu_forward_kernel(float* out, const float* inp, int64_t M, int F) {
  DBCORE_GRID_STRIDE(i, M * F) {
    int64_t m = i / F, f = i % F;
    const float* row = inp + m * 2 * F;
    out[i] = row[f] * gelu(row[F + f]);
  }
}

// dhidden = dout · gelu(gate), dgate = dout · hidden · gelu'(gate).
__global__ void geglu_backward_kernel(float* dinp, const float* dout, const float* inp, int64_t M, int F) {
  DBCORE_GRID_STRIDE(i, M * F) {
    int64_t m = i / F, f = i % F;
    const float* row = inp + m * 2 * F;
    float* drow = dinp + m * 2 * F;
    float hidden = row[f], gate = row[F + f];
    drow[f] = dout[i] * gelu(gate);
    drow[F + f] = dout[i] * hidden * gelu_grad(gate);
  }
}

}  // namespace

void silu_forward(float* out, const float* inp, int64_t n) { launch_forward<Silu>(out, inp, n); }
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  launch_backward<Silu>(dinp, dout, inp, n);
}
void gelu_forward(float* out, const float* inp, int64_t n) { launch_forward<Gelu>(out, inp, n); }
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  launch_backward<Gelu>(dinp, dout, inp, n);
}
void quick_gelu_forward(float* out, const float* inp, int64_t n) { launch_forward<QuickGelu>(out, inp, n); }
void quick_gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n) {
  launch_backward<QuickGelu>(dinp, dout, inp, n);
}

void geglu_forward(float* out, const float* inp, int M, int F) {
  const int64_t total = static_cast<int64_t>(M) * F;
  if (total <= 0) return;
  geglu_forward_kernel<<<blocks_for(total), kThreads>>>(out, inp, M, F);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void geglu_backward(float* dinp, const float* dout, const float* inp, int M, int F) {
  const int64_t total = static_cast<int64_t>(M) * F;
  if (total <= 0) return;
  geglu_backward_kernel<<<blocks_for(total), kThreads>>>(dinp, dout, inp, M, F);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
