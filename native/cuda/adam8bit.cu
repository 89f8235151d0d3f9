// bitsandbytes-compatible 8-bit blockwise Adam(W) and its 32-bit-state variant, twins of native/cpu/adam8bit.cpp
// (spec: test/fixtures/adam8bit/SPEC.md, §n). One CUDA block of kAdam8bitBlockSize threads per state block, one
// element per thread, the block's new absmax by a shared-memory max reduction (order-free, so deterministic).
// Compiled with --fmad=false and IEEE division and square root (CMakeLists.txt): every operation rounds once in
// the order written, so the result is bit-identical to the CPU twin and the spec's vectors.
// n = elements of one parameter, B = 256, nb = ceil(n / B). Accumulation: everything updated in place (=).
#include <cfloat>

#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

constexpr int B = cpu::kAdam8bitBlockSize;
static_assert(B % 32 == 0 && B <= 1024, "one thread per element of a state block");

// Max over the block (B threads); every thread gets the result.
__device__ float block_max(float v) {
  __shared__ float partial[B / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float r = lane < B / 32 ? partial[lane] : -FLT_MAX;
  return warp_max(r);
}

// Thread j of block b handles element o + j; lanes past n are the padding lanes of §4 (g = 0, m code 128,
// v code 0), which still count in the new absmax.
__global__ void adam8bit_kernel(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                                const float* grad, const float* qmap1, const float* qmap2, Adam8bitHyper h,
                                cpu::Adam8bitConstants k, int64_t n) {
  const int64_t b = blockIdx.x, i = b * B + threadIdx.x;
  const bool real = i < n;
  const float one_minus_b1 = 1.0f - h.beta1, one_minus_b2 = 1.0f - h.beta2;
  const float old_absmax1 = absmax1[b], old_absmax2 = absmax2[b];
  const float gj = real ? grad[i] : 0.f;
  const bool finite = isfinite(gj);
  float mj = 0.f, vj = 0.f;
  if (finite) {
    const float gs = gj * h.gnorm_scale;
    vj = qmap2[real ? state2[i] : 0] * old_absmax2;
    vj = vj * h.beta2 + (one_minus_b2 * gs) * gs;  // this association is the 8-bit kernel's
    mj = qmap1[real ? state1[i] : 128] * old_absmax1;
    mj = mj * h.beta1 + one_minus_b1 * gs;
  }
  // Every thread has read the old absmax before block_max's barriers; thread 0 overwrites it only after them.
  const float new_absmax1 = block_max(fmaxf(-FLT_MAX, fabsf(mj)));
  const float new_absmax2 = block_max(fmaxf(-FLT_MAX, fabsf(vj)));
  if (real && finite) {  // non-finite gradient: parameter untouched, no weight decay either
    float p = param[i] + k.step_size * (mj / (sqrtf(vj) + k.correction2 * h.eps));
    if (h.weight_decay > 0.f) p = p * k.decay;
    param[i] = p;
  }
  if (real) {
    uint8_t q1 = cpu::quantize_nearest(qmap1, mj / new_absmax1);
    // Sign fix (uint8 wrap-around: an all-zero block, 0/0 = NaN → code 0, becomes code 255).
    if (signbit(qmap1[q1]) != signbit(mj)) q1 = static_cast<uint8_t>(mj > 0.f ? q1 + 1 : q1 - 1);
    state1[i] = q1;
    state2[i] = cpu::quantize_nearest(qmap2, vj / new_absmax2);
  }
  if (threadIdx.x == 0) {
    absmax1[b] = new_absmax1;
    absmax2[b] = new_absmax2;
  }
}

__global__ void adam32bit_kernel(float* param, float* m, float* v, const float* grad, Adam8bitHyper h,
                                 cpu::Adam8bitConstants k, int64_t n) {
  const float one_minus_b1 = 1.0f - h.beta1, one_minus_b2 = 1.0f - h.beta2;
  const bool decay = h.weight_decay > 0.f;
  DBCORE_GRID_STRIDE(i, n) {
    const float g = h.gnorm_scale * grad[i];
    const float mi = m[i] * h.beta1 + one_minus_b1 * g;
    const float vi = v[i] * h.beta2 + one_minus_b2 * (g * g);  // this association is the 32-bit kernel's
    float p = param[i] + k.step_size * (mi / (sqrtf(vi) + h.eps * k.correction2));
    if (decay) p = p * k.decay;
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adam8bit_blockwise_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             const float* grad, const float* qmap1, const float* qmap2, const Adam8bitHyper& h,
                             int64_t n) {
  if (n <= 0) return;
  const int64_t nb = (n + B - 1) / B;
  DBCORE_CHECK(nb <= 0x7fffffff, "EINVAL", "adam8bit: %lld elements is too many", static_cast<long long>(n));
  adam8bit_kernel<<<static_cast<unsigned>(nb), B>>>(param, state1, state2, absmax1, absmax2, grad, qmap1, qmap2, h,
                                                    cpu::adam8bit_constants(h), n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void adam32bit_step(float* param, float* m, float* v, const float* grad, const Adam8bitHyper& h, int64_t n) {
  if (n <= 0) return;
  adam32bit_kernel<<<blocks_for(n), kThreads>>>(param, m, v, grad, h, cpu::adam8bit_constants(h), n);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
