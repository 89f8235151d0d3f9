// 2-D convolution, NCHW, groups 1, dilation 1, zero padding. ref: torch.nn.Conv2d.
// Dimension letters: N batch, C in channels, H W input size, OC out channels, KH KW kernel, OH OW output size.
// Accumulation: parameter gradients +=, input gradients = (skipped when the pointer is null).
#pragma once
#include <cstddef>

#include "core/error.h"
#include "core/precision.h"

namespace dbcore::cpu {

struct Conv2dShape {
  int N, C, H, W, OC, KH, KW, stride, pad;
  int OH() const { return (H + 2 * pad - KH) / stride + 1; }
  int OW() const { return (W + 2 * pad - KW) / stride + 1; }
};

// Throws EINVAL / ESHAPE for a shape no convolution has (shared by the CPU and CUDA kernels).
inline void check_conv2d_shape(const Conv2dShape& s) {
  DBCORE_CHECK(s.N >= 0 && s.C > 0 && s.OC > 0 && s.KH > 0 && s.KW > 0 && s.stride > 0 && s.pad >= 0, "EINVAL",
               "conv2d: invalid shape N=%d C=%d OC=%d kernel %dx%d stride %d pad %d", s.N, s.C, s.OC, s.KH, s.KW,
               s.stride, s.pad);
  DBCORE_CHECK(s.H + 2 * s.pad >= s.KH && s.W + 2 * s.pad >= s.KW, "ESHAPE",
               "conv2d: kernel %dx%d is larger than the padded input %dx%d", s.KH, s.KW, s.H + 2 * s.pad,
               s.W + 2 * s.pad);
}

// Floats of scratch memory the two functions below need (allocated once by the caller, reused every call).
size_t conv2d_workspace_floats(const Conv2dShape& s);

// out (N, OC, OH, OW) = weight (OC, C, KH, KW) ⋆ inp (N, C, H, W) + bias (OC); bias may be null.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* workspace,
                    const Conv2dShape& s, Precision precision = Precision::F32);
// dinp (N, C, H, W) =; dweight (OC, C, KH, KW) +=; dbias (OC) +=.
void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* workspace, const Conv2dShape& s, Precision precision = Precision::F32);

}  // namespace dbcore::cpu
