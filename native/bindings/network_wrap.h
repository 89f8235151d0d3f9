// Common JS surface of a network object (TextEncoder, UNet, VAE): it owns the model, its parameters, gradients
// and activations, and allows one async call in flight at a time.
//   paramTable() · setParam(name, t) · getParam(name) · getGrad(name) · zeroGrad() · setGradientCheckpointing(on)
// Derived classes add their forward/backward by passing them to Base::define.
#pragma once
#include <napi.h>

#include <map>
#include <memory>
#include <type_traits>
#include <vector>

#include "async.h"
#include "model/run.h"
#include "js_tensor.h"
#include "param_io.h"
#include "registry.h"
#include "staging.h"

namespace dbcore::js {

// Intermediate activations captured during a forward, turned into JS tensors afterwards.
using Captured = std::map<std::string, std::pair<Shape, std::vector<float>>>;
Napi::Object captured_to_js(Napi::Env env, const Captured& captured);
// A hook that copies every activation (on `device`) into `captured` (null when not wanted).
ActivationHook capture_hook(bool wanted, const std::shared_ptr<Captured>& captured, Device device);
// The backend of a network from its constructor's options argument {device: 'cpu' | 'cuda'} (default cpu).
ops::Context context_from_js(const Napi::CallbackInfo& info, size_t index);
// The `finish` of an async forward: {name: output, …, activations} built on the main thread.
std::function<Napi::Value(Napi::Env)> forward_result(const std::vector<std::pair<std::string, Napi::Object>>& outputs,
                                                     const std::shared_ptr<Captured>& captured);

// What another native object (the Trainer) needs of a network object it uses: marking it busy while it works.
class NetworkHandle {
 public:
  virtual ~NetworkHandle() = default;
  bool busy() const { return busy_; }
  void set_busy(bool busy) { busy_ = busy; }
  void check_idle() const { DBCORE_CHECK(!busy_, "EBUSY", "another call on this network is still running (await it)"); }
  // Objects that hold the model (a Trainer) keep it from being disposed while they exist.
  void acquire() { ++users_; }
  void release() { --users_; }

 protected:
  bool busy_ = false;
  int users_ = 0;
};

// A config field that is a list of numbers (T = int, float) or booleans (T = bool); `what` names the config.
template <typename T>
std::vector<T> list_field(const Napi::Object& o, const char* key, const char* what) {
  Napi::Value v = o.Get(key);
  DBCORE_CHECK(v.IsArray(), "EINVAL", "%s.%s must be an array", what, key);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<T> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if constexpr (std::is_same_v<T, bool>) {
      DBCORE_CHECK(e.IsBoolean(), "EINVAL", "%s.%s[%u] must be a boolean", what, key, i);
      out.push_back(e.As<Napi::Boolean>().Value());
    } else {
      DBCORE_CHECK(e.IsNumber(), "EINVAL", "%s.%s[%u] must be a number", what, key, i);
      out.push_back(T(e.As<Napi::Number>().DoubleValue()));
    }
  }
  return out;
}

template <typename Derived, typename Model>
class NetworkWrap : public Napi::ObjectWrap<Derived>, public NetworkHandle {
 public:
  using Base = NetworkWrap<Derived, Model>;
  using Method = Napi::Value (Derived::*)(const Napi::CallbackInfo&);

  explicit NetworkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}

  static Napi::Function define(Napi::Env env, const char* name,
                               std::vector<std::pair<const char*, Method>> extra) {
    std::vector<typename Napi::ObjectWrap<Derived>::PropertyDescriptor> props = {
        Base::template method<&Base::param_table>("paramTable"),
        Base::template method<&Base::set_param>("setParam"),
        Base::template method<&Base::get_param>("getParam"),
        Base::template method<&Base::get_grad>("getGrad"),
        Base::template method<&Base::zero_grad>("zeroGrad"),
        Base::template method<&Base::set_checkpointing>("setGradientCheckpointing"),
        Base::template method<&Base::dispose>("dispose"),
        Base::template method<&Base::activation_bytes>("activationBytes"),
    };
    static std::vector<std::unique_ptr<Method>> owned;  // method pointers passed as callback data
    for (auto& [n, m] : extra) {
      owned.push_back(std::make_unique<Method>(m));
      Method dispatch = static_cast<Method>(&Base::dispatch);
      props.push_back(Napi::ObjectWrap<Derived>::InstanceMethod(n, dispatch, napi_default, owned.back().get()));
    }
    Napi::Function ctor = Napi::ObjectWrap<Derived>::DefineClass(env, name, props);
    constructor() = Napi::Persistent(ctor);
    constructor().SuppressDestruct();
    return ctor;
  }

  // The wrapper behind a JS value, checked to be an instance of this class (never a blind unwrap).
  static Derived* unwrap_checked(const Napi::Value& value, const char* what) {
    DBCORE_CHECK(value.IsObject() && !constructor().IsEmpty() && value.As<Napi::Object>().InstanceOf(constructor().Value()),
                 "EINVAL", "%s must be a %s object", what, Derived::kClassName);
    Derived* d = Napi::ObjectWrap<Derived>::Unwrap(value.As<Napi::Object>());
    DBCORE_CHECK(d && d->model_, "ESTATE", "%s is not initialized", what);
    return d;
  }
  Model& model() { return *model_; }

  std::unique_ptr<Model> model_;

 protected:
  // The constructor's work: the backend from (config, {device}), the model from make(config, context), and the
  // staging of its calls on that device. Throws JS errors.
  template <typename Make>
  void construct(const Napi::CallbackInfo& info, Make make) {
    try {
      const ops::Context ctx = context_from_js(info, 1);
      model_ = make(object_arg(info, 0, "config"), ctx);
      inputs_ = std::make_unique<Staging>(ctx.device);
      grads_io_ = std::make_unique<Staging>(ctx.device);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }
  // A call's inputs and outputs (a forward's inputs stay staged until its backward), and a backward's.
  std::unique_ptr<Staging> inputs_, grads_io_;

  static Napi::FunctionReference& constructor() {
    static Napi::FunctionReference ref;
    return ref;
  }

  // Queues `work`; busy until it settles. `keep` lists the JS values whose memory the work uses.
  Napi::Promise queue(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                      std::vector<Napi::Value> keep, std::function<void()> after = nullptr) {
    keep.push_back(this->Value());
    busy_ = true;
    return run_async(env, std::move(work), std::move(finish), keep, [this, after]() {
      busy_ = false;
      if (after) after();
    });
  }

 private:
  template <Napi::Value (Base::*M)(const Napi::CallbackInfo&)>
  static typename Napi::ObjectWrap<Derived>::PropertyDescriptor method(const char* name) {
    return Napi::ObjectWrap<Derived>::InstanceMethod(name, &Base::guarded<M>);
  }
  template <Napi::Value (Base::*M)(const Napi::CallbackInfo&)>
  Napi::Value guarded(const Napi::CallbackInfo& info) {
    try {
      check_alive();
      return (this->*M)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }
  // Calls the derived method whose pointer is the callback data, converting C++ exceptions to JS ones.
  Napi::Value dispatch(const Napi::CallbackInfo& info) {
    Method m = *static_cast<Method*>(info.Data());
    try {
      check_alive();
      return (static_cast<Derived*>(this)->*m)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }

  void check_alive() const { DBCORE_CHECK(model_ != nullptr, "ESTATE", "this network was disposed"); }

  // activationBytes(): the most activation and workspace memory a call has used so far (arena high-water marks).
  Napi::Value activation_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(model_->activation_bytes()));
  }

  // dispose(): frees the weights, gradients and activations now; later calls throw.
  Napi::Value dispose(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(users_ == 0, "EBUSY", "this network is in use by a Trainer and cannot be disposed");
    model_.reset();
    return info.Env().Undefined();
  }

  std::string name_arg(const Napi::CallbackInfo& info) {
    DBCORE_CHECK(info.Length() > 0 && info[0].IsString(), "EINVAL", "expected a parameter name");
    return info[0].As<Napi::String>().Utf8Value();
  }
  Napi::Value param_table(const Napi::CallbackInfo& info) {
    return param_table_to_js(info.Env(), model_->store().table());
  }
  Napi::Value set_param(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 1, "EINVAL", "setParam(name, tensor)");
    set_param_from_js(model_->store(), name_arg(info), info[1]);
    return info.Env().Undefined();
  }
  Napi::Value get_param(const Napi::CallbackInfo& info) {
    check_idle();
    return param_to_js(info.Env(), model_->store(), name_arg(info), false);
  }
  Napi::Value get_grad(const Napi::CallbackInfo& info) {
    check_idle();
    return param_to_js(info.Env(), model_->store(), name_arg(info), true);
  }
  Napi::Value zero_grad(const Napi::CallbackInfo& info) {
    check_idle();
    model_->store().zero_grads();
    return info.Env().Undefined();
  }
  Napi::Value set_checkpointing(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 0 && info[0].IsBoolean(), "EINVAL", "setGradientCheckpointing(boolean)");
    model_->set_gradient_checkpointing(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
  }
};

}  // namespace dbcore::js
