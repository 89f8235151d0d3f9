// Pixel conversions between 8-bit RGB images (as sharp returns them) and the float tensors the VAE reads/writes.
// Dimension letters: N images, H W spatial, HW = H·W; 3 colour channels (R, G, B).
// Accumulation: outputs are written (=).
#pragma once
#include <cstdint>

namespace dbcore::cpu {

// out (N, 3, H, W) float in [-1, 1] = inp (N, H, W, 3) uint8 read as torchvision's ToTensor + Normalize([0.5], [0.5])
// (ref: diffusers train_dreambooth.py image_transforms): v = x / 255, then (v - 0.5) / 0.5, in float32.
void rgb8_to_tensor(float* out, const uint8_t* inp, int N, int H, int W);

// out (N, H, W, 3) uint8 = inp (N, 3, H, W) float, as diffusers' VaeImageProcessor.postprocess + numpy_to_pil:
// v = clamp(x / 2 + 0.5, 0, 1), then round(v · 255) half to even (numpy's round), in float32.
void tensor_to_rgb8(uint8_t* out, const float* inp, int N, int H, int W);

}  // namespace dbcore::cpu
