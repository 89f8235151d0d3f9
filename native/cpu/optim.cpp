// Compiled with -ffp-contract=off (CMakeLists.txt): every operation rounds once, in the order written,
// like torch's separate elementwise kernels.
#include "optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"

namespace dbcore::cpu {

namespace {

// The unit of work of the whole-set passes: elements [begin, begin + n) of tensor `tensor`.
constexpr int64_t kOptimChunk = 1 << 15;
struct Chunk {
  int tensor;
  int64_t begin, n;
};

std::vector<Chunk> chunks_of(const int64_t* numels, int count) {
  std::vector<Chunk> chunks;
  for (int t = 0; t < count; ++t)
    for (int64_t b = 0; b < numels[t]; b += kOptimChunk) chunks.push_back({t, b, std::min(kOptimChunk, numels[t] - b)});
  return chunks;
}

// AdamW on one range with the gradient scaled by clip_coef, then the gradient zeroed (see adamw_step's comment
// for the order of operations).
DBCORE_SIMD_CLONES
void adamw_clip_range(float* param, float* m, float* v, float* grad, const AdamWConstants& k, float clip_coef,
                      int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * clip_coef;
    const float p = param[i] * k.decay;
    const float mi = m[i] * k.b1 + k.one_minus_b1 * g;
    const float vi = v[i] * k.b2 + k.one_minus_b2 * g * g;
    const float denom = std::sqrt(vi) / k.bias_correction2_sqrt + k.eps;
    param[i] = p + k.neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
    grad[i] = 0.f;
  }
}

DBCORE_SIMD_CLONES
double sum_of_squares_range(const float* grad, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(grad[i]) * grad[i];
  return s;
}

}  // namespace

DBCORE_SIMD_CLONES
void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step,
                int64_t n) {
  const AdamWConstants k = adamw_constants(h, step);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float p = param[i] * k.decay;
    const float mi = m[i] * k.b1 + k.one_minus_b1 * g;
    const float vi = v[i] * k.b2 + k.one_minus_b2 * g * g;  // addcmul: value·t1·t2, left to right
    const float denom = std::sqrt(vi) / k.bias_correction2_sqrt + k.eps;
    param[i] = p + k.neg_step_size * mi / denom;  // addcdiv: value·t1/t2, left to right
    m[i] = mi;
    v[i] = vi;
  }
}

void adamw_clip_step_zero(const AdamWTensor* tensors, int count, float clip_coef, const AdamWHyper& h,
                          int64_t step) {
  const AdamWConstants k = adamw_constants(h, step);
  std::vector<int64_t> numels(count);
  for (int t = 0; t < count; ++t) numels[t] = tensors[t].n;
  const std::vector<Chunk> chunks = chunks_of(numels.data(), count);
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t c = 0; c < chunks.size(); ++c) {
    const AdamWTensor& t = tensors[chunks[c].tensor];
    const int64_t b = chunks[c].begin;
    adamw_clip_range(t.param + b, t.m + b, t.v + b, t.grad + b, k, clip_coef, chunks[c].n);
  }
}

double sum_of_squares(const float* grad, int64_t n) { return sum_of_squares_all(&grad, &n, 1); }

void sum_of_squares_into(double* acc, const float* x, int64_t n) { *acc += sum_of_squares(x, n); }

double sum_of_squares_all(const float* const* grads, const int64_t* numels, int count) {
  const std::vector<Chunk> chunks = chunks_of(numels, count);
  std::vector<double> sums(chunks.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t c = 0; c < chunks.size(); ++c)
    sums[c] = sum_of_squares_range(grads[chunks[c].tensor] + chunks[c].begin, chunks[c].n);
  double total = 0.0;
  for (double s : sums) total += s;
  return total;
}

DBCORE_SIMD_CLONES
static void scale_range(float* x, float s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void scale_all(float* const* grads, const int64_t* numels, int count, float s) {
  const std::vector<Chunk> chunks = chunks_of(numels, count);
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t c = 0; c < chunks.size(); ++c) scale_range(grads[chunks[c].tensor] + chunks[c].begin, s, chunks[c].n);
}

ClipResult clip_grad_norm(float* const* grads, const int64_t* numels, int count, double max_norm) {
  ClipResult r;
  r.total_norm = std::sqrt(sum_of_squares_all(grads, numels, count));
  r.coef = clip_coefficient(r.total_norm, max_norm);
  if (r.coef < 1.0) scale_all(grads, numels, count, static_cast<float>(r.coef));
  return r;
}

}  // namespace dbcore::cpu
