#include "rng.h"

#include <cmath>

namespace dbcore {

namespace {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

// 24 random bits → float in [0, 1).
inline float to_unit(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
}  // namespace

Philox philox4x32_10(uint64_t counter, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, &hi0, &lo0);
    mulhilo(kMul1, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// Stream position p lives in block p / 4, word p % 4.
void uniform_fill(float* out, int64_t n, uint64_t seed, uint64_t offset) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t p = offset + static_cast<uint64_t>(i);
    out[i] = to_unit(philox4x32_10(p >> 2, seed).v[p & 3]);
  }
}

// Normal i uses block (offset + i) / 2: words 0,1 feed the first normal of the pair, 2,3 the second, so
// each output depends only on its own position.
void normal_fill(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  constexpr double kTwoPi = 6.283185307179586;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t p = offset + static_cast<uint64_t>(i);
    Philox r = philox4x32_10(p >> 1, seed);
    int w = static_cast<int>(p & 1) * 2;
    // u1 in (0, 1] so log() is finite; 32-bit resolution for the radius, 24 bits for the angle.
    double u1 = (static_cast<double>(r.v[w]) + 1.0) / 4294967296.0;
    double u2 = static_cast<double>(r.v[w + 1] >> 8) / 16777216.0;
    out[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2));
  }
}

void randint_fill(int32_t* out, int64_t n, int32_t bound, uint64_t seed, uint64_t offset) {
  for (int64_t i = 0; i < n; ++i) {
    uint64_t p = offset + static_cast<uint64_t>(i);
    uint32_t x = philox4x32_10(p >> 2, seed).v[p & 3];
    out[i] = static_cast<int32_t>((static_cast<uint64_t>(x) * static_cast<uint64_t>(bound)) >> 32);
  }
}

}  // namespace dbcore
