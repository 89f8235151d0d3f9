// Argument helpers shared by the kernel test exports (ops_<family>.cpp): integer options, optional tensors, and
// parameter-gradient outputs that either start at zero or accumulate into a caller's tensor.
#pragma once
#include <napi.h>

#include "cpu/optim.h"
#include "js_tensor.h"

namespace dbcore::js {

// Integer option `key` of the options object at `index` (fallback when absent; a fallback below `min` makes the
// option required); throws EINVAL below `min`.
int int_option(const Napi::CallbackInfo& info, size_t index, const char* key, int fallback, int min);

// Number option `key` (fallback when absent), checked to lie in [lo, hi] (or [lo, hi) unless hi_inclusive).
double ranged_option(const Napi::CallbackInfo& info, size_t index, const char* key, double fallback, double lo,
                     double hi, bool hi_inclusive);
constexpr double kHuge = 1e30;  // "no upper bound" for ranged_option

// AdamW hyper-parameters {lr, beta1, beta2, eps, weightDecay} of the options object at `index`, range-checked;
// absent keys keep cpu::AdamWHyper's defaults (torch's).
cpu::AdamWHyper adamw_hyper_option(const Napi::CallbackInfo& info, size_t index);

// An F32 tensor argument that may be null or undefined (then the result has data == nullptr).
Tensor optional_f32_arg(const Napi::CallbackInfo& info, size_t index, const char* what);

// A parameter gradient of `shape`: the F32 tensor the caller passed as option `key` (backward adds into it, its
// shape is checked) or a new zero-filled tensor.
JsTensor grad_output(const Napi::CallbackInfo& info, size_t index, const char* key, const Shape& shape);

// The result of a layer's backward export, {dinp?, dweight, dbias?}, and the pointers the kernel writes
// (null for a gradient not asked for). Options at `index`: hasBias (default true), inputGrad (default true),
// dweight / dbias (tensors to accumulate into, see grad_output).
struct BackwardOutputs {
  Napi::Object object;
  float* dinp = nullptr;
  float* dweight = nullptr;
  float* dbias = nullptr;
};
BackwardOutputs backward_outputs(const Napi::CallbackInfo& info, size_t index, const Shape& inp_shape,
                                 const Shape& weight_shape, const Shape& bias_shape);

// Product of the dimensions [from, to) of t.
int64_t dims_product(const Tensor& t, int from, int to);

// Narrows a dimension to int for the kernels, naming `what` when it does not fit.
int to_int(int64_t value, const char* what);

}  // namespace dbcore::js
