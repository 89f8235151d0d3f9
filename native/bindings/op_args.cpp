#include "op_args.h"

#include <cmath>
#include <limits>

namespace dbcore::js {

namespace {
Napi::Value option_value(const Napi::CallbackInfo& info, size_t index, const char* key) {
  if (index >= info.Length() || info[index].IsUndefined() || info[index].IsNull()) return info.Env().Undefined();
  DBCORE_CHECK(info[index].IsObject() && !info[index].IsArray(), "EINVAL", "argument %zu must be an options object",
               index + 1);
  return info[index].As<Napi::Object>().Get(key);
}
}  // namespace

int int_option(const Napi::CallbackInfo& info, size_t index, const char* key, int fallback, int min) {
  DBCORE_CHECK(fallback >= min || !option_value(info, index, key).IsUndefined(), "EINVAL",
               "option '%s' (an integer >= %d) is required", key, min);
  double v = number_option(info, index, key, fallback);
  DBCORE_CHECK(v == std::floor(v) && v >= min && v <= std::numeric_limits<int>::max(), "EINVAL",
               "option '%s' = %g must be an integer >= %d", key, v, min);
  return static_cast<int>(v);
}

double ranged_option(const Napi::CallbackInfo& info, size_t index, const char* key, double fallback, double lo,
                     double hi, bool hi_inclusive) {
  double v = number_option(info, index, key, fallback);
  DBCORE_CHECK(std::isfinite(v) && v >= lo && (hi_inclusive ? v <= hi : v < hi), "EINVAL",
               "option '%s' = %g is out of range: expected %g <= %s %s %g", key, v, lo, key,
               hi_inclusive ? "<=" : "<", hi);
  return v;
}

cpu::AdamWHyper adamw_hyper_option(const Napi::CallbackInfo& info, size_t index) {
  cpu::AdamWHyper h;
  h.lr = ranged_option(info, index, "lr", h.lr, 0, kHuge, true);
  h.beta1 = ranged_option(info, index, "beta1", h.beta1, 0, 1, false);
  h.beta2 = ranged_option(info, index, "beta2", h.beta2, 0, 1, false);
  h.eps = ranged_option(info, index, "eps", h.eps, 0, kHuge, true);
  h.weight_decay = ranged_option(info, index, "weightDecay", h.weight_decay, 0, kHuge, true);
  return h;
}

Tensor optional_f32_arg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (index >= info.Length() || info[index].IsNull() || info[index].IsUndefined()) return Tensor();
  return tensor_arg(info, index, what, DType::F32);
}

JsTensor grad_output(const Napi::CallbackInfo& info, size_t index, const char* key, const Shape& shape) {
  Napi::Value given = option_value(info, index, key);
  if (given.IsUndefined() || given.IsNull()) return new_js_tensor(info.Env(), DType::F32, shape);
  Tensor t = tensor_from_js(given, key);
  check_dtype(t, DType::F32, key);
  check_shape(t, shape, key);
  return {given.As<Napi::Object>(), t};
}

BackwardOutputs backward_outputs(const Napi::CallbackInfo& info, size_t index, const Shape& inp_shape,
                                 const Shape& weight_shape, const Shape& bias_shape) {
  BackwardOutputs out;
  out.object = Napi::Object::New(info.Env());
  JsTensor dweight = grad_output(info, index, "dweight", weight_shape);
  out.object.Set("dweight", dweight.object);
  out.dweight = dweight.tensor.f32();
  if (bool_option(info, index, "hasBias", true)) {
    JsTensor dbias = grad_output(info, index, "dbias", bias_shape);
    out.object.Set("dbias", dbias.object);
    out.dbias = dbias.tensor.f32();
  }
  if (bool_option(info, index, "inputGrad", true)) {
    JsTensor dinp = new_js_tensor(info.Env(), DType::F32, inp_shape);
    out.object.Set("dinp", dinp.object);
    out.dinp = dinp.tensor.f32();
  }
  return out;
}

int64_t dims_product(const Tensor& t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; ++i) p *= t.shape[i];
  return p;
}

int to_int(int64_t value, const char* what) {
  DBCORE_CHECK(value <= std::numeric_limits<int>::max(), "ESHAPE", "%s = %lld is too large (at most 2^31 - 1)", what,
               static_cast<long long>(value));
  return static_cast<int>(value);
}

}  // namespace dbcore::js
