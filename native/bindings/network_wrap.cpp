#include "network_wrap.h"

#include <algorithm>

#ifdef DBCORE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

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

ActivationHook capture_hook(bool wanted, const std::shared_ptr<Captured>& captured, Device device) {
  if (!wanted) return nullptr;
  return [captured, device](const std::string& name, const float* data, const Shape& shape) {
    std::vector<float> host(size_t(shape_numel(shape)));
    copy_bytes(Device::CPU, host.data(), device, data, host.size() * 4);
    (*captured)[name] = {shape, std::move(host)};
  };
}

ops::Context context_from_js(const Napi::CallbackInfo& info, size_t index) {
  Napi::Object opts = object_arg(info, index, "options", true);
  const std::string device = get_string(opts, "device", "cpu", "options");
  DBCORE_CHECK(device == "cpu" || device == "cuda", "EINVAL", "options.device must be 'cpu' or 'cuda', got '%s'",
               device.c_str());
  ops::Context ctx;
  ctx.device = device == "cuda" ? Device::CUDA : Device::CPU;
#ifdef DBCORE_WITH_CUDA
  if (ctx.device == Device::CUDA) {
    const cuda::DeviceInfo gpu = cuda::query_device(0);
    DBCORE_CHECK(gpu.available, "EUNSUPPORTED", "options.device 'cuda': %s", gpu.reason.c_str());
  }
#else
  DBCORE_CHECK(ctx.device == Device::CPU, "EUNSUPPORTED",
               "options.device 'cuda': this build of dbcore has no CUDA backend (built without nvcc)");
#endif
  return ctx;
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
