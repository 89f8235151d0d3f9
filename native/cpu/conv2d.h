// 2-D convolution, NCHW, groups 1, dilation 1, zero padding. ref: torch.nn.Conv2d.
// Dimension letters: N batch, C in channels, H W input size, OC out channels, KH KW kernel, OH OW output size.
// Accumulation: parameter gradients +=, input gradients = (skipped when the pointer is null).
#pragma once
#include <cstddef>

#include "core/precision.h"

namespace dbcore::cpu {

struct Conv2dShape {
  int N, C, H, W, OC, KH, KW, stride, pad;
  int OH() const { return (H + 2 * pad - KH) / stride + 1; }
  int OW() const { return (W + 2 * pad - KW) / stride + 1; }
};

// Floats of scratch memory the two functions below need (allocated once by the caller, reused every call).
size_t conv2d_workspace_floats(const Conv2dShape& s);

// out (N, OC, OH, OW) = weight (OC, C, KH, KW) ⋆ inp (N, C, H, W) + bias (OC); bias may be null.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* workspace,
                    const Conv2dShape& s, Precision precision = Precision::F32);
// dinp (N, C, H, W) =; dweight (OC, C, KH, KW) +=; dbias (OC) +=.
void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* workspace, const Conv2dShape& s, Precision precision = Precision::F32);

}  // namespace dbcore::cpu
