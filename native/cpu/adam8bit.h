// bitsandbytes-compatible 8-bit blockwise Adam / AdamW (bnb.optim.Adam8bit / AdamW8bit, CUDA kernel
// semantics of bitsandbytes 95f9af3; spec: test/fixtures/adam8bit/SPEC.md, cited as §n below).
// n = elements of one parameter, B = block size (256 for the optimizer state), nb = ceil(n / B).
// State of one parameter (bitsandbytes' flat state-dict layout, §7), all plain buffers:
//   8-bit  (n ≥ 4096): state1, state2 uint8[n] codes of m and v; absmax1, absmax2 float[nb]; qmap1, qmap2 float[256]
//   32-bit (n < 4096 or optim_bits 32): state1 = m, state2 = v as float[n]
//   optional (legacy percentile clipping, §8): gnorm_vec float[100] of squared gradient norms
// Accumulation: everything is updated in place (=). Arithmetic is IEEE float32 with one rounding per
// operation in the order written (file compiled with -ffp-contract=off), which makes it bit-exact to the
// spec's vectors.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace dbcore::cpu {

constexpr int kAdam8bitBlockSize = 256;   // csrc/ops.cu BLOCKSIZE_2STATE
constexpr int64_t kMin8bitSize = 4096;    // Optimizer2State min_8bit_size: smaller tensors keep float32 state
constexpr int kGnormHistory = 100;        // gnorm_vec length (percentile clipping)

// create_dynamic_map(signed=True) (qmap1, for m) and create_dynamic_map(signed=False) (qmap2, for v), §1,
// bit for bit as bitsandbytes builds them with torch ≥ 2.0 (FMA linspace). Sorted ascending.
extern const float kDynamicMapSigned[256];
extern const float kDynamicMapUnsigned[256];

// Index of the entry of the sorted 256-entry `code` nearest to x (bnb dQuantize<0>): ties go to the
// even index, NaN gives 0, values beyond the ends clamp. Host and device (native/cuda/adam8bit.cu).
// Binary search from pivot 127 with steps 64 … 1, remembering the last entries passed on either side, then a
// midpoint test against that neighbour (ref: csrc/kernels.cu dQuantize<0>). Written with selects instead of
// branches: the direction is data-dependent and would be mispredicted half the time.
DBCORE_HOST_DEVICE inline uint8_t quantize_nearest(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  for (int step = 64; step > 0; step >>= 1) {
    const bool up = x > code[pivot];
    lower_pivot = up ? pivot : lower_pivot;
    upper_pivot = up ? upper_pivot : pivot;
    pivot += up ? step : -step;
  }
  const float val = code[pivot];
  const bool above = x > val;
  const int neighbour = above ? upper_pivot : lower_pivot;
  const float midpoint = (code[neighbour] + val) * 0.5f;
  const bool take_neighbour = above ? x > midpoint : x < midpoint;
  return static_cast<uint8_t>(take_neighbour ? neighbour : pivot);
}

// CPU-only equivalent of quantize_nearest for the two built-in maps, a few independent loads instead of nine
// dependent ones. Over sorted, distinct entries (§1) the search returns the number of thresholds t[k] ≤ x:
// t[k] is the float midpoint (code[k] + code[k+1]) * 0.5f when k is odd and the next float above it when k is even
// (an exact midpoint goes to the even index, §2); NaN gives 0. Floats are split into buckets by sign, exponent and
// the top kMantissaBits mantissa bits (magnitudes below 2^-25 share the first bucket, those ≥ 2 (and ±inf) the
// last); a bucket holds at most two thresholds, so the count is the count at the bucket's lowest value plus two
// comparisons. test/native/adam8bit-quantize.test.ts compares it with quantize_nearest on both sides of every
// threshold, which proves equality for every float because both functions are non-decreasing in x.
struct NearestCodeBuckets {
  static constexpr int kMantissaBits = 6;
  static constexpr uint32_t kLowestExponent = 102;  // biased exponent of 2^-25, below the smallest threshold
  static constexpr int kMagnitudeBuckets = (128 - static_cast<int>(kLowestExponent)) * (1 << kMantissaBits) + 1;

  float threshold[257];                       // t[0..254], then two NaNs: comparisons that are never true
  uint8_t first_code[2 * kMagnitudeBuckets];  // the code of each bucket's lowest value; positive buckets first

  static int bucket(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    int i = static_cast<int>((bits & 0x7fffffffu) >> (23 - kMantissaBits)) -
            static_cast<int>(kLowestExponent << kMantissaBits);
    i = i < 0 ? 0 : (i >= kMagnitudeBuckets ? kMagnitudeBuckets - 1 : i);
    return (bits >> 31) ? kMagnitudeBuckets + i : i;
  }
  uint8_t nearest(float x) const {
    const int first = first_code[bucket(x)];
    const int code = first + (x >= threshold[first]) + (x >= threshold[first + 1]);
    return static_cast<uint8_t>(x == x ? code : 0);  // +NaN falls in the last positive bucket
  }
};
// The buckets of `code` when it is kDynamicMapSigned or kDynamicMapUnsigned bit for bit, else nullptr (a map
// loaded from a state dict may differ, §1: use quantize_nearest then). Built once, on first use.
const NearestCodeBuckets* builtin_map_buckets(const float* code);

// quantize_blockwise (§2): per block of `blocksize` elements absmax = max|x| and codes of x·(1/absmax).
void quantize_blockwise(uint8_t* codes, float* absmax, const float* x, const float* code, int64_t n,
                        int blocksize);
// dequantize_blockwise: out = code[codes] · absmax[block].
void dequantize_blockwise(float* out, const uint8_t* codes, const float* absmax, const float* code, int64_t n,
                          int blocksize);

struct Adam8bitHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;  // decoupled (AdamW style); AdamW8bit's default is 1e-2
  float gnorm_scale = 1.f;   // multiplies the gradient (percentile clipping, §8)
  int64_t step = 1;          // the step count after increment (1 on the first update)
};

// The step-dependent constants of both kernels (§4), computed on the host: powf(b, t) = (float)pow((double)b, t).
struct Adam8bitConstants {
  float correction1, correction2, step_size, decay;
};
inline Adam8bitConstants adam8bit_constants(const Adam8bitHyper& h) {
  Adam8bitConstants c;
  const double t = static_cast<double>(h.step);
  c.correction1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(h.beta1), t));
  c.correction2 = std::sqrt(1.0f - static_cast<float>(std::pow(static_cast<double>(h.beta2), t)));
  c.step_size = (-h.lr * c.correction2) / c.correction1;
  c.decay = 1.0f - h.lr * h.weight_decay;
  return c;
}

// One update of an 8-bit parameter (§4, kOptimizerStatic8bit2StateBlockwise), block size 256.
void adam8bit_blockwise_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             const float* grad, const float* qmap1, const float* qmap2, const Adam8bitHyper& h,
                             int64_t n);

// One update of a parameter with float32 state (§5, kOptimizer32bit2State).
void adam32bit_step(float* param, float* m, float* v, const float* grad, const Adam8bitHyper& h, int64_t n);

// Legacy percentile clipping (§8): records Σg² in gnorm_vec for `step` and returns gnorm_scale.
struct PercentileClip {
  float gnorm_scale, current_gnorm, clip_value;
};
PercentileClip percentile_clipping(float* gnorm_vec, const float* grad, int64_t n, int64_t step, int percentile);

}  // namespace dbcore::cpu
