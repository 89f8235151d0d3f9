// Embedding lookups. Dimension letters: M looked-up rows, C width, V table rows.
#pragma once
#include <cstdint>

namespace dbcore::cpu {

// out (M, C) = table (V, C)[ids (M)]; ids outside [0, V) throw dbcore::Error EINVAL.
void embedding_forward(float* out, const int32_t* ids, const float* table, int M, int C, int V);
// dtable (V, C) [ids[m]] += dout (M, C)[m] (repeated ids accumulate).
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int M, int C);

// Sinusoidal timestep embedding. ref: diffusers get_timestep_embedding (computed in float32):
// half = dim/2, exponent_i = -ln(max_period)·i/(half - shift), emb = t·exp(exponent) · scale,
// out = [sin | cos] ([cos | sin] when flip_sin_to_cos), zero-padded when dim is odd. out (N, dim), t (N).
void timestep_embedding(float* out, const float* timesteps, int N, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float scale, float max_period);

}  // namespace dbcore::cpu
