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

}  // namespace dbcore::js
