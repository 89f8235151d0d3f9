#include "param_io.h"

#include <vector>

#include "core/half.h"
#include "js_tensor.h"

namespace dbcore::js {

Napi::Array param_table_to_js(Napi::Env env, const ParamTable& table) {
  Napi::Array arr = Napi::Array::New(env, table.entries().size());
  uint32_t i = 0;
  for (const ParamEntry& e : table.entries()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", e.name);
    Napi::Array shape = Napi::Array::New(env, e.shape.size());
    for (size_t d = 0; d < e.shape.size(); ++d) shape.Set(uint32_t(d), Napi::Number::New(env, double(e.shape[d])));
    o.Set("shape", shape);
    arr.Set(i++, o);
  }
  return arr;
}

void set_param_from_js(ParamStore& store, const std::string& name, const Napi::Value& value) {
  const ParamEntry& e = store.table().at(name);
  Tensor t = tensor_from_js(value, name.c_str());
  DBCORE_CHECK(t.numel() == e.numel() && t.shape == e.shape, "ESHAPE", "parameter '%s': expected shape %s, got %s",
               name.c_str(), shape_string(e.shape).c_str(), shape_string(t.shape).c_str());
  const int64_t n = e.numel();
  if (t.dtype == DType::F32) {
    store.write(e, t.as<float>());
    return;
  }
  DBCORE_CHECK(t.dtype == DType::F16 || t.dtype == DType::BF16, "EDTYPE",
               "parameter '%s': dtype %s is not a floating-point type", name.c_str(), dtype_name(t.dtype));
  std::vector<float> widened(static_cast<size_t>(n));
  const uint16_t* src = t.as<uint16_t>();
  for (int64_t i = 0; i < n; ++i) widened[i] = t.dtype == DType::F16 ? half_to_float(src[i]) : bf16_to_float(src[i]);
  store.write(e, widened.data());
}

Napi::Object param_to_js(Napi::Env env, ParamStore& store, const std::string& name, bool grad) {
  const ParamEntry& e = store.table().at(name);
  DBCORE_CHECK(!grad || store.has_grads(), "ESTATE", "no gradients yet for '%s' (run backward first)", name.c_str());
  JsTensor out = new_js_tensor(env, DType::F32, e.shape);
  store.read(e, out.tensor.f32(), grad);
  return out.object;
}

}  // namespace dbcore::js
