#include "network_wrap.h"

#include <algorithm>

namespace dbcore::js {

Napi::Object captured_to_js(Napi::Env env, const Captured& captured) {
  Napi::Object acts = Napi::Object::New(env);
  for (const auto& [name, sv] : captured) {
    JsTensor t = new_js_tensor(env, DType::F32, sv.first);
    std::copy(sv.second.begin(), sv.second.end(), t.tensor.f32());
    acts.Set(name, t.object);
  }
  return acts;
}

ActivationHook capture_hook(bool wanted, const std::shared_ptr<Captured>& captured) {
  if (!wanted) return nullptr;
  return [captured](const std::string& name, const float* data, const Shape& shape) {
    (*captured)[name] = {shape, std::vector<float>(data, data + shape_numel(shape))};
  };
}

std::function<Napi::Value(Napi::Env)> forward_result(const std::vector<std::pair<std::string, Napi::Object>>& outputs,
                                                     const std::shared_ptr<Captured>& captured) {
  auto refs = std::make_shared<std::vector<std::pair<std::string, Napi::ObjectReference>>>();
  for (const auto& [name, obj] : outputs) refs->emplace_back(name, Napi::Persistent(obj));
  return [refs, captured](Napi::Env env) -> Napi::Value {
    Napi::Object r = Napi::Object::New(env);
    for (auto& [name, ref] : *refs) r.Set(name, ref.Value());
    r.Set("activations", captured_to_js(env, *captured));
    return r;
  };
}

}  // namespace dbcore::js
