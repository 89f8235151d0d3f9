// Tensor-core flash attention (native/cuda/attention_tc.cu), called by attention.cu for Precision F16 / BF16.
// Arguments as cpu/attention.h; delta (B, NH, Tq) = rowsum(dO ∘ O) is computed by attention.cu's delta kernel.
#pragma once
#include "cuda_backend.h"

namespace dbcore::cuda {

// Whether attention at `precision` runs on the tensor-core kernels: F16 and BF16 with at least one key and a head
// of at most attention_tiles.h's kMaxHead (160) columns; bf16 mma needs sm_80, so bf16 on sm_75 runs the fp32
// kernels (as gemm.cu does for bf16 products there), and so do wider heads (the VAE's 512).
bool attention_uses_tensor_cores(Precision precision, int Tk, int D);

void attention_forward_tc(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                          int Tk, int NH, int D, float scale, bool causal, Precision precision);
void attention_backward_tc(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                           const float* v, const float* lse, const float* delta, int B, int Tq, int Tk, int NH, int D,
                           float scale, bool causal, Precision precision);

}  // namespace dbcore::cuda
