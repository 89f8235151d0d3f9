// Data movement and elementwise ops the networks need between layers.
// Dimension letters: N batch, C channels, H W spatial, HW = H·W.
// Accumulation: written (=) unless the name says add/accumulate.
#pragma once
#include <cstdint>

namespace dbcore::cpu {

void add(float* out, const float* a, const float* b, int64_t n);                 // out = a + b (out may alias)
void add_inplace(float* acc, const float* x, int64_t n);                          // acc += x
void axpby(float* out, float alpha, const float* a, float beta, const float* b, int64_t n);  // out = αa + βb
void scale_inplace(float* x, float s, int64_t n);                                 // x *= s

// Time-embedding injection (ref: diffusers ResnetBlock2D): x (N, C, HW) += bias (N, C) broadcast over HW.
void add_channel_bias(float* x, const float* bias, int N, int C, int HW);
// Its backward: dbias (N, C) = Σ_HW dout (N, C, HW).
void sum_over_hw(float* dbias, const float* dout, int N, int C, int HW);

// (N, C, HW) ↔ (N, HW, C) (Transformer2DModel's reshape); each is the other's backward.
void nchw_to_nhwc(float* out, const float* inp, int N, int C, int HW);
void nhwc_to_nchw(float* out, const float* inp, int N, int C, int HW);

// Nearest-neighbour 2x upsampling (ref: diffusers Upsample2D, F.interpolate nearest): inp (N, C, H, W) →
// out (N, C, 2H, 2W); backward sums each 2x2 block of dout.
void upsample_nearest2x_forward(float* out, const float* inp, int N, int C, int H, int W);
void upsample_nearest2x_backward(float* dinp, const float* dout, int N, int C, int H, int W);

// Channel concatenation (the UNet's skip connections): out (N, Ca+Cb, HW) = [a (N, Ca, HW) | b (N, Cb, HW)];
// backward splits dout into da and db (both written).
void concat_channels_forward(float* out, const float* a, const float* b, int N, int Ca, int Cb, int HW);
void concat_channels_backward(float* da, float* db, const float* dout, int N, int Ca, int Cb, int HW);

// Sample of a diagonal Gaussian (ref: diffusers DiagonalGaussianDistribution.sample, with the VAE's scaling factor):
// out = (mean + exp(0.5·logvar)·eps) · scale, eps standard normal.
void gaussian_sample(float* out, const float* mean, const float* logvar, const float* eps, float scale, int64_t n);

// bf16 gradient blocks (model/grad_sink.h): dst = bf16(float(dst) + src), rounded to nearest even; and the
// widening of bf16 values to fp32.
void add_into_bf16(uint16_t* dst, const float* src, int64_t n);
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);

// A window of each plane with zero fill: out (N, C, OH, OW), out[n, c, y, x] = inp[n, c, y0 + y, x0 + x] where that
// lies inside (H, W), else 0. Covers zero padding, also asymmetric (Downsample2D's F.pad(x, (0, 1, 0, 1)) is
// y0 = x0 = 0, OH = H + 1, OW = W + 1), and cropping (a tile, a band of rows with its halo).
void crop_pad2d(float* out, const float* inp, int N, int C, int H, int W, int y0, int x0, int OH, int OW);

}  // namespace dbcore::cpu
