// Classifier-free guidance (Ho & Salimans 2022; ref: diffusers StableDiffusionPipeline.__call__).
// Dimension letters: n elements of one half of the (2N, …) noise prediction.
// Accumulation: outputs are written (=).
#pragma once
#include <cstdint>

namespace dbcore::cpu {

// out = uncond + scale · (cond − uncond), in that order of operations (as diffusers writes it), each (n).
void guidance_combine(float* out, const float* uncond, const float* cond, float scale, int64_t n);

}  // namespace dbcore::cpu
