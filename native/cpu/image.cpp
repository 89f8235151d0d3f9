// Pixel conversions between 8-bit RGB (N, H, W, 3) and float (N, 3, H, W). Dimension letters: N images,
// H W spatial, HW = H·W. Accumulation: written (=). Each output element depends on one input element; the loops
// run over (image, channel) planes in parallel and vectorize along HW.
#include "image.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace dbcore::cpu {

namespace {
constexpr int kChannels = 3;
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

DBCORE_SIMD_CLONES
void rgb8_to_tensor(float* out, const uint8_t* inp, int N, int H, int W) {
  const int64_t HW = int64_t(H) * W;
#pragma omp parallel for schedule(static) if (N * kChannels * HW > kParallelMin)
  for (int nc = 0; nc < N * kChannels; ++nc) {
    const int n = nc / kChannels, c = nc % kChannels;
    const uint8_t* src = inp + n * HW * kChannels + c;  // (H, W, 3): channel c every 3 bytes
    float* dst = out + int64_t(nc) * HW;                 // (H, W) plane of channel c
#pragma omp simd
    for (int64_t i = 0; i < HW; ++i) {
      const float v = static_cast<float>(src[i * kChannels]) / 255.f;  // ToTensor
      dst[i] = (v - 0.5f) / 0.5f;                                       // Normalize(mean 0.5, std 0.5)
    }
  }
}

void tensor_to_rgb8(uint8_t* out, const float* inp, int N, int H, int W) {
  const int64_t HW = int64_t(H) * W;
#pragma omp parallel for schedule(static) if (N * kChannels * HW > kParallelMin)
  for (int nc = 0; nc < N * kChannels; ++nc) {
    const int n = nc / kChannels, c = nc % kChannels;
    const float* src = inp + int64_t(nc) * HW;
    uint8_t* dst = out + n * HW * kChannels + c;
    for (int64_t i = 0; i < HW; ++i) {
      const float v = std::clamp(src[i] / 2.f + 0.5f, 0.f, 1.f);  // NaN stays NaN here and is mapped to 0 below
      const float scaled = std::nearbyint(v * 255.f);             // round half to even (default FP rounding mode)
      dst[i * kChannels] = scaled >= 0.f ? static_cast<uint8_t>(scaled) : 0;
    }
  }
}

}  // namespace dbcore::cpu
