// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11). Every value is a pure function of (seed, offset + index), so any slice of a stream can be regenerated
// on any thread or backend, and a run resumes exactly by storing (seed, offset).
#pragma once
#include <cstdint>

namespace dbcore {

struct Philox {
  uint32_t v[4];
};

// One Philox4x32-10 block: 4 random 32-bit words for counter `counter` under key `seed`.
Philox philox4x32_10(uint64_t counter, uint64_t seed);

// Uniform floats in [0, 1) with 24 random bits: out[i] for stream positions offset + i.
void uniform_fill(float* out, int64_t n, uint64_t seed, uint64_t offset);
// Standard normal floats by the Box–Muller transform on pairs of uniforms (two normals per pair).
void normal_fill(float* out, int64_t n, uint64_t seed, uint64_t offset);
// Integers uniform in [0, bound) (bound < 2^31), by 64-bit multiply-shift on a 32-bit word (Lemire).
void randint_fill(int32_t* out, int64_t n, int32_t bound, uint64_t seed, uint64_t offset);

}  // namespace dbcore
