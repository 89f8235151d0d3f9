// Compiled with -ffp-contract=off (CMakeLists.txt): the spec's vectors assume no FMA contraction (§6).
#include "adam8bit.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"

namespace dbcore::cpu {

const float kDynamicMapSigned[256] = {
    -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f, -0x1.df999ap-1f, -0x1.d86666p-1f, -0x1.d13334p-1f, -0x1.cap-1f,
    -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f, -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f,
    -0x1.893334p-1f, -0x1.82p-1f, -0x1.7accccp-1f, -0x1.73999ap-1f, -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f,
    -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f, -0x1.32ccccp-1f, -0x1.2b999ap-1f, -0x1.246668p-1f, -0x1.1d3334p-1f,
    -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f, -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f,
    -0x1.b8ccccp-2f, -0x1.aa6666p-2f, -0x1.9cp-2f, -0x1.8d9998p-2f, -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f, -0x1.0cp-2f, -0x1.fb3332p-3f, -0x1.de6666p-3f, -0x1.c1999ap-3f,
    -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f, -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f,
    -0x1.93d70ap-4f, -0x1.8851eep-4f, -0x1.7ccccep-4f, -0x1.7147aep-4f, -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f, -0x1.09999ap-4f, -0x1.fc28f6p-5f, -0x1.e51ebap-5f, -0x1.ce147ap-5f,
    -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f, -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f,
    -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f, -0x1.a147aep-6f, -0x1.733334p-6f, -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f, -0x1.e978d4p-8f, -0x1.c49ba6p-8f, -0x1.9fbe76p-8f, -0x1.7ae148p-8f,
    -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f, -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f,
    -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f, -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0.0f,
    0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f, 0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f,
    0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f, 0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f, 0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f,
    0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f, 0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f,
    0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451ebap-6f, 0x1.733334p-6f, 0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f, 0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f,
    0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f, 0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f,
    0x1.4eb854p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f, 0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f, 0x1.6b3334p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f,
    0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f, 0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f,
    0x1.626666p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f, 0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f, 0x1.079998p-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f,
    0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f, 0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f,
    0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f, 0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f, 0x1.b46666p-1f, 0x1.bb999ap-1f, 0x1.c2ccccp-1f, 0x1.cap-1f,
    0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f, 0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1p+0f,
};

const float kDynamicMapUnsigned[256] = {
    0.0f, 0x1.5cf754p-22f, 0x1.a0133p-21f, 0x1.1d367p-19f, 0x1.2599ecp-18f, 0x1.bc98a2p-18f, 0x1.29cbaap-17f, 0x1.0624dcp-16f,
    0x1.c2e34p-16f, 0x1.3fd0dp-15f, 0x1.9e3p-15f, 0x1.fc8f34p-15f, 0x1.2d7732p-14f, 0x1.5ca6c8p-14f, 0x1.8bd662p-14f, 0x1.0cb296p-13f,
    0x1.82a994p-13f, 0x1.f8a092p-13f, 0x1.374bc8p-12f, 0x1.724744p-12f, 0x1.ad42c6p-12f, 0x1.e83e44p-12f, 0x1.119ce2p-11f, 0x1.2f1aap-11f,
    0x1.4c986p-11f, 0x1.6a162p-11f, 0x1.8793dep-11f, 0x1.a511ap-11f, 0x1.c28f5ep-11f, 0x1.e00d1cp-11f, 0x1.fd8adcp-11f, 0x1.2b020cp-10f,
    0x1.74bc6ap-10f, 0x1.be76c8p-10f, 0x1.041894p-9f, 0x1.28f5c2p-9f, 0x1.4dd2fp-9f, 0x1.72b02p-9f, 0x1.978d4ep-9f, 0x1.bc6a8p-9f,
    0x1.e147aep-9f, 0x1.03126ep-8f, 0x1.158104p-8f, 0x1.27ef9ep-8f, 0x1.3a5e34p-8f, 0x1.4cccccp-8f, 0x1.5f3b64p-8f, 0x1.71a9fap-8f,
    0x1.841894p-8f, 0x1.96872ap-8f, 0x1.a8f5c2p-8f, 0x1.bb645cp-8f, 0x1.cdd2fp-8f, 0x1.e0418ap-8f, 0x1.f2b01ep-8f, 0x1.028f5cp-7f,
    0x1.0bc6a8p-7f, 0x1.14fdf2p-7f, 0x1.1e354p-7f, 0x1.276c8ap-7f, 0x1.30a3d6p-7f, 0x1.39db24p-7f, 0x1.43126ep-7f, 0x1.5eb854p-7f,
    0x1.8ccccep-7f, 0x1.bae146p-7f, 0x1.e8f5c4p-7f, 0x1.0b851ep-6f, 0x1.228f5ep-6f, 0x1.39999ap-6f, 0x1.50a3d6p-6f, 0x1.67ae16p-6f,
    0x1.7eb852p-6f, 0x1.95c28ep-6f, 0x1.accccep-6f, 0x1.c3d70ep-6f, 0x1.dae146p-6f, 0x1.f1eb86p-6f, 0x1.047aep-5f, 0x1.1p-5f,
    0x1.1b851ep-5f, 0x1.270a3ep-5f, 0x1.328f5ep-5f, 0x1.3e147ap-5f, 0x1.49999ap-5f, 0x1.551eb8p-5f, 0x1.60a3d6p-5f, 0x1.6c28f6p-5f,
    0x1.77ae14p-5f, 0x1.833334p-5f, 0x1.8eb85p-5f, 0x1.9a3d7p-5f, 0x1.a5c28ep-5f, 0x1.b147aep-5f, 0x1.bccccep-5f, 0x1.c851eep-5f,
    0x1.d3d70ep-5f, 0x1.df5c2ap-5f, 0x1.eae146p-5f, 0x1.f66666p-5f, 0x1.00f5c4p-4f, 0x1.06b854p-4f, 0x1.0c7ae2p-4f, 0x1.123d7p-4f,
    0x1.18p-4f, 0x1.1dc29p-4f, 0x1.23852p-4f, 0x1.2947aep-4f, 0x1.2f0a3ep-4f, 0x1.34cccep-4f, 0x1.3a8f5ep-4f, 0x1.4051ecp-4f,
    0x1.46147cp-4f, 0x1.4bd70ap-4f, 0x1.51999ap-4f, 0x1.575c2ap-4f, 0x1.5d1eb8p-4f, 0x1.62e148p-4f, 0x1.68a3d6p-4f, 0x1.6e6666p-4f,
    0x1.7428f6p-4f, 0x1.79eb86p-4f, 0x1.7fae16p-4f, 0x1.8570a4p-4f, 0x1.8b3334p-4f, 0x1.90f5c4p-4f, 0x1.96b852p-4f, 0x1.a8p-4f,
    0x1.c4ccccp-4f, 0x1.e1999ap-4f, 0x1.fe6666p-4f, 0x1.0d9998p-3f, 0x1.1cp-3f, 0x1.2a6668p-3f, 0x1.38ccccp-3f, 0x1.473334p-3f,
    0x1.559998p-3f, 0x1.64p-3f, 0x1.726668p-3f, 0x1.80ccccp-3f, 0x1.8f3334p-3f, 0x1.9d9998p-3f, 0x1.acp-3f, 0x1.ba6668p-3f,
    0x1.c8ccccp-3f, 0x1.d73334p-3f, 0x1.e59998p-3f, 0x1.f4p-3f, 0x1.013332p-2f, 0x1.086666p-2f, 0x1.0f999ap-2f, 0x1.16ccccp-2f,
    0x1.1ep-2f, 0x1.253334p-2f, 0x1.2c6666p-2f, 0x1.339998p-2f, 0x1.3accccp-2f, 0x1.42p-2f, 0x1.493334p-2f, 0x1.506666p-2f,
    0x1.579998p-2f, 0x1.5eccccp-2f, 0x1.66p-2f, 0x1.6d3334p-2f, 0x1.746666p-2f, 0x1.7b9998p-2f, 0x1.82ccccp-2f, 0x1.8ap-2f,
    0x1.913334p-2f, 0x1.986666p-2f, 0x1.9f9998p-2f, 0x1.a6ccccp-2f, 0x1.aep-2f, 0x1.b53334p-2f, 0x1.bc6666p-2f, 0x1.c39998p-2f,
    0x1.caccccp-2f, 0x1.d2p-2f, 0x1.d93334p-2f, 0x1.e06666p-2f, 0x1.e79998p-2f, 0x1.eeccccp-2f, 0x1.f6p-2f, 0x1.fd3332p-2f,
    0x1.023334p-1f, 0x1.05ccccp-1f, 0x1.096666p-1f, 0x1.0dp-1f, 0x1.109998p-1f, 0x1.143334p-1f, 0x1.17ccccp-1f, 0x1.1b6668p-1f,
    0x1.1fp-1f, 0x1.22999ap-1f, 0x1.263334p-1f, 0x1.29ccccp-1f, 0x1.2d6668p-1f, 0x1.31p-1f, 0x1.34999ap-1f, 0x1.383334p-1f,
    0x1.3bccccp-1f, 0x1.3f6668p-1f, 0x1.43p-1f, 0x1.46999ap-1f, 0x1.4a3334p-1f, 0x1.4dccccp-1f, 0x1.516668p-1f, 0x1.55p-1f,
    0x1.58999ap-1f, 0x1.5c3334p-1f, 0x1.5fccccp-1f, 0x1.636668p-1f, 0x1.67p-1f, 0x1.6a999ap-1f, 0x1.6e3334p-1f, 0x1.71ccccp-1f,
    0x1.756668p-1f, 0x1.79p-1f, 0x1.7c999ap-1f, 0x1.803334p-1f, 0x1.83ccccp-1f, 0x1.876668p-1f, 0x1.8bp-1f, 0x1.8e9998p-1f,
    0x1.923334p-1f, 0x1.95ccccp-1f, 0x1.996668p-1f, 0x1.9dp-1f, 0x1.a09998p-1f, 0x1.a43334p-1f, 0x1.a7ccccp-1f, 0x1.ab6668p-1f,
    0x1.afp-1f, 0x1.b29998p-1f, 0x1.b63334p-1f, 0x1.b9ccccp-1f, 0x1.bd6668p-1f, 0x1.c1p-1f, 0x1.c49998p-1f, 0x1.c83334p-1f,
    0x1.cbccccp-1f, 0x1.cf6668p-1f, 0x1.d3p-1f, 0x1.d69998p-1f, 0x1.da3334p-1f, 0x1.ddccccp-1f, 0x1.e16668p-1f, 0x1.e5p-1f,
    0x1.e89998p-1f, 0x1.ec3334p-1f, 0x1.efccccp-1f, 0x1.f36668p-1f, 0x1.f7p-1f, 0x1.fa9998p-1f, 0x1.fe3334p-1f, 0x1p+0f,
};

void quantize_blockwise(uint8_t* codes, float* absmax, const float* x, const float* code, int64_t n,
                        int blocksize) {
  const int64_t nb = (n + blocksize - 1) / blocksize;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float amax = -FLT_MAX;  // fmaxf reduction; NaN inputs never raise it
    for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    if (end - begin < blocksize) amax = std::fmax(amax, 0.f);  // out-of-range lanes load 0
    const float inv = 1.0f / amax;  // all-zero block: inf, and 0·inf = NaN → code 0
    for (int64_t i = begin; i < end; ++i) codes[i] = quantize_nearest(code, x[i] * inv);
    absmax[b] = amax;
  }
}

DBCORE_SIMD_CLONES
void dequantize_blockwise(float* out, const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                          int blocksize) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = code[codes[i]] * absmax[i / blocksize];
}

namespace {

// Number of thresholds ≤ x (t is sorted): the code quantize_nearest gives a non-NaN x.
int thresholds_at_or_below(const float* t, float x) { return static_cast<int>(std::upper_bound(t, t + 255, x) - t); }

float float_of_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void set_first_code(NearestCodeBuckets& b, int index, float lowest, float highest) {
  const int first = thresholds_at_or_below(b.threshold, lowest);
  DBCORE_CHECK(thresholds_at_or_below(b.threshold, highest) - first <= 2, "EINVAL",
               "quantization map: more than two thresholds in [%g, %g]", lowest, highest);
  b.first_code[index] = static_cast<uint8_t>(first);
}

NearestCodeBuckets build_buckets(const float* code) {
  using NB = NearestCodeBuckets;
  NB b;
  for (int k = 0; k < 255; ++k) {
    const float midpoint = (code[k] + code[k + 1]) * 0.5f;  // as quantize_nearest rounds it
    b.threshold[k] = k % 2 == 1 ? midpoint : std::nextafter(midpoint, INFINITY);  // ties to the even index (§2)
  }
  b.threshold[255] = b.threshold[256] = NAN;
  constexpr int shift = 23 - NB::kMantissaBits;
  constexpr uint32_t base = NB::kLowestExponent << NB::kMantissaBits;
  for (int i = 0; i < NB::kMagnitudeBuckets; ++i) {  // magnitude bit patterns [lo, hi] of bucket i
    const uint32_t lo = i == 0 ? 0u : (base + i) << shift;
    const uint32_t hi = i == NB::kMagnitudeBuckets - 1 ? 0x7f800000u : ((base + i + 1) << shift) - 1;
    set_first_code(b, i, float_of_bits(lo), float_of_bits(hi));
    set_first_code(b, NB::kMagnitudeBuckets + i, -float_of_bits(hi), -float_of_bits(lo));
  }
  return b;
}

bool same_map(const float* a, const float* b) { return a == b || std::memcmp(a, b, 256 * sizeof(float)) == 0; }

}  // namespace

const NearestCodeBuckets* builtin_map_buckets(const float* code) {
  static const NearestCodeBuckets signed_buckets = build_buckets(kDynamicMapSigned);
  static const NearestCodeBuckets unsigned_buckets = build_buckets(kDynamicMapUnsigned);
  if (same_map(code, kDynamicMapSigned)) return &signed_buckets;
  if (same_map(code, kDynamicMapUnsigned)) return &unsigned_buckets;
  return nullptr;
}

namespace {

constexpr int B = kAdam8bitBlockSize;

// Code search of the 8-bit update: the bucket table for the built-in maps, the binary search for any other map.
struct BucketQuantizer {
  const NearestCodeBuckets* buckets;
  uint8_t operator()(float x) const { return buckets->nearest(x); }
};
struct SearchQuantizer {
  const float* code;
  uint8_t operator()(float x) const { return quantize_nearest(code, x); }
};

bool finite(float g) { return std::fabs(g) <= FLT_MAX; }

// §4, first loop: dequantized moments updated with the gradient; m = v = 0 where g is not finite.
void update_moments(float* m, float* v, const uint8_t* c1, const uint8_t* c2, const float* g, const float* qmap1,
                    const float* qmap2, float absmax1, float absmax2, const Adam8bitHyper& h) {
  const float one_minus_b1 = 1.0f - h.beta1, one_minus_b2 = 1.0f - h.beta2;
#pragma omp simd
  for (int j = 0; j < B; ++j) {
    const float gs = g[j] * h.gnorm_scale;
    const float vj = qmap2[c2[j]] * absmax2;
    const float mj = qmap1[c1[j]] * absmax1;
    const bool ok = finite(g[j]);
    v[j] = ok ? vj * h.beta2 + (one_minus_b2 * gs) * gs : 0.f;  // this association is the 8-bit kernel's
    m[j] = ok ? mj * h.beta1 + one_minus_b1 * gs : 0.f;
  }
}

// max |x| over the block's 256 lanes as the kernel's fmaxf reduction from -FLT_MAX (NaN never raises it). All
// |x| ≥ +0, so the order of the reduction does not matter; eight partial maxima let it vectorize.
float block_absmax(const float* x) {
  constexpr int L = 8;
  float partial[L];
  for (float& a : partial) a = -FLT_MAX;
  for (int j = 0; j < B; j += L) {
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const float a = std::fabs(x[j + l]);
      partial[l] = a > partial[l] ? a : partial[l];
    }
  }
  float r = -FLT_MAX;
  for (float a : partial) r = a > r ? a : r;
  return r;
}

// §4, parameter update; lanes with a non-finite gradient keep their parameter (no weight decay either).
void update_params(float* p, const float* m, const float* v, const float* g, const Adam8bitHyper& h,
                   const Adam8bitConstants& k) {
  const bool decay = h.weight_decay > 0.f;
#pragma omp simd
  for (int j = 0; j < B; ++j) {
    float pj = p[j] + k.step_size * (m[j] / (std::sqrt(v[j]) + k.correction2 * h.eps));
    if (decay) pj = pj * k.decay;
    p[j] = finite(g[j]) ? pj : p[j];
  }
}

// §4, re-quantization: codes of m / absmax1 and v / absmax2 (division, not a reciprocal), then the sign fix of m.
template <class Quantizer>
void quantize_moments(uint8_t* c1, uint8_t* c2, const float* m, const float* v, float absmax1, float absmax2,
                      const float* qmap1, const Quantizer& quantize1, const Quantizer& quantize2) {
  for (int j = 0; j < B; ++j) {
    uint8_t q1 = quantize1(m[j] / absmax1);
    // Sign fix: a code whose entry has the wrong sign moves one step toward m (uint8 wrap-around, so an
    // all-zero block, 0/0 = NaN → code 0, becomes code 255).
    if (std::signbit(qmap1[q1]) != std::signbit(m[j])) q1 = static_cast<uint8_t>(m[j] > 0.f ? q1 + 1 : q1 - 1);
    c1[j] = q1;
    c2[j] = quantize2(v[j] / absmax2);
  }
}

// One full 256-lane block of the 8-bit update (§4), in place.
template <class Quantizer>
void adam8bit_block(float* p, uint8_t* c1, uint8_t* c2, float* absmax1, float* absmax2, const float* g,
                    const float* qmap1, const float* qmap2, const Quantizer& quantize1, const Quantizer& quantize2,
                    const Adam8bitHyper& h, const Adam8bitConstants& k) {
  float m[B], v[B];
  update_moments(m, v, c1, c2, g, qmap1, qmap2, *absmax1, *absmax2, h);
  *absmax1 = block_absmax(m);
  *absmax2 = block_absmax(v);
  update_params(p, m, v, g, h, k);
  quantize_moments(c1, c2, m, v, *absmax1, *absmax2, qmap1, quantize1, quantize2);
}

// The last block when n is not a multiple of 256: padded to 256 lanes that load g = 0, m code 128, v code 0
// (p = 0) and still count in the new absmax (§4); only the `valid` real lanes are written back.
template <class Quantizer>
void adam8bit_tail_block(float* p, uint8_t* c1, uint8_t* c2, float* absmax1, float* absmax2, const float* g,
                         const float* qmap1, const float* qmap2, const Quantizer& quantize1,
                         const Quantizer& quantize2, const Adam8bitHyper& h, const Adam8bitConstants& k, int valid) {
  float pl[B] = {}, gl[B] = {};
  uint8_t c1l[B], c2l[B];
  std::fill(c1l, c1l + B, uint8_t{128});
  std::fill(c2l, c2l + B, uint8_t{0});
  std::copy(p, p + valid, pl);
  std::copy(g, g + valid, gl);
  std::copy(c1, c1 + valid, c1l);
  std::copy(c2, c2 + valid, c2l);
  adam8bit_block(pl, c1l, c2l, absmax1, absmax2, gl, qmap1, qmap2, quantize1, quantize2, h, k);
  std::copy(pl, pl + valid, p);
  std::copy(c1l, c1l + valid, c1);
  std::copy(c2l, c2l + valid, c2);
}

template <class Quantizer>
void adam8bit_blocks(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                     const float* grad, const float* qmap1, const float* qmap2, const Quantizer& quantize1,
                     const Quantizer& quantize2, const Adam8bitHyper& h, int64_t n) {
  const Adam8bitConstants k = adam8bit_constants(h);
  const int64_t nb = (n + B - 1) / B;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t o = b * B;
    const int valid = static_cast<int>(std::min<int64_t>(B, n - o));
    if (valid == B) {
      adam8bit_block(param + o, state1 + o, state2 + o, absmax1 + b, absmax2 + b, grad + o, qmap1, qmap2, quantize1,
                     quantize2, h, k);
    } else {
      adam8bit_tail_block(param + o, state1 + o, state2 + o, absmax1 + b, absmax2 + b, grad + o, qmap1, qmap2,
                          quantize1, quantize2, h, k, valid);
    }
  }
}

}  // namespace

DBCORE_SIMD_CLONES
void adam8bit_blockwise_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             const float* grad, const float* qmap1, const float* qmap2, const Adam8bitHyper& h,
                             int64_t n) {
  const NearestCodeBuckets* buckets1 = builtin_map_buckets(qmap1);
  const NearestCodeBuckets* buckets2 = builtin_map_buckets(qmap2);
  if (buckets1 && buckets2) {
    adam8bit_blocks(param, state1, state2, absmax1, absmax2, grad, qmap1, qmap2, BucketQuantizer{buckets1},
                    BucketQuantizer{buckets2}, h, n);
  } else {
    adam8bit_blocks(param, state1, state2, absmax1, absmax2, grad, qmap1, qmap2, SearchQuantizer{qmap1},
                    SearchQuantizer{qmap2}, h, n);
  }
}

DBCORE_SIMD_CLONES
void adam32bit_step(float* param, float* m, float* v, const float* grad, const Adam8bitHyper& h, int64_t n) {
  const Adam8bitConstants k = adam8bit_constants(h);
  const float one_minus_b1 = 1.0f - h.beta1, one_minus_b2 = 1.0f - h.beta2;
  const bool decay = h.weight_decay > 0.f;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = h.gnorm_scale * grad[i];
    const float mi = m[i] * h.beta1 + one_minus_b1 * g;
    const float vi = v[i] * h.beta2 + one_minus_b2 * (g * g);  // this association is the 32-bit kernel's
    float p = param[i] + k.step_size * (mi / (std::sqrt(vi) + h.eps * k.correction2));
    if (decay) p = p * k.decay;
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

PercentileClip percentile_clipping(float* gnorm_vec, const float* grad, int64_t n, int64_t step, int percentile) {
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sq += static_cast<double>(grad[i]) * grad[i];
  const float sqf = static_cast<float>(sq);
  const int slot = static_cast<int>(step % kGnormHistory);
  gnorm_vec[slot] = 0.f;
  if (step == 1) {
    for (int i = 0; i < kGnormHistory; ++i) gnorm_vec[i] += sqf;  // the first norm fills the whole history
  } else {
    gnorm_vec[slot] += sqf;
  }
  std::array<float, kGnormHistory> sorted;
  std::copy(gnorm_vec, gnorm_vec + kGnormHistory, sorted.begin());
  std::sort(sorted.begin(), sorted.end());
  PercentileClip r;
  r.current_gnorm = std::sqrt(gnorm_vec[slot]);
  r.clip_value = std::sqrt(sorted[percentile]);
  r.gnorm_scale = r.current_gnorm > r.clip_value ? r.clip_value / r.current_gnorm : 1.0f;
  return r;
}

}  // namespace dbcore::cpu
