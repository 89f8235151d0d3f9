// Common JS surface of a network object (TextEncoder, UNet, VAE): it owns the model, its parameters, gradients
// and activations, and allows one async call in flight at a time.
//   paramTable() · setParam(name, t) · getParam(name) · getGrad(name) · zeroGrad() · setGradientCheckpointing(on)
//   optimizerStep({lr, beta1, beta2, eps, weightDecay, maxGradNorm}) → Promise<{gradNorm, clipCoef, step}>:
//     clip_grad_norm_ + AdamW over the whole parameter block in place (model/optimizer.h; states made on first use)
// Derived classes add forward/backward and list their methods with `methods()`.
#pragma once
#include <napi.h>

#include <map>
#include <memory>
#include <vector>

#include "async.h"
#include "model/optimizer.h"
#include "op_args.h"
#include "js_tensor.h"
#include "param_io.h"
#include "registry.h"

namespace dbcore::js {

// Intermediate activations captured during a forward, turned into JS tensors afterwards.
using Captured = std::map<std::string, std::pair<Shape, std::vector<float>>>;
Napi::Object captured_to_js(Napi::Env env, const Captured& captured);

template <typename Derived, typename Model>
class NetworkWrap : public Napi::ObjectWrap<Derived> {
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
        Base::template method<&Base::optimizer_step>("optimizerStep"),
    };
    static std::vector<std::unique_ptr<Method>> owned;  // method pointers passed as callback data
    for (auto& [n, m] : extra) {
      owned.push_back(std::make_unique<Method>(m));
      Method dispatch = static_cast<Method>(&Base::dispatch);
      props.push_back(Napi::ObjectWrap<Derived>::InstanceMethod(n, dispatch, napi_default, owned.back().get()));
    }
    return Napi::ObjectWrap<Derived>::DefineClass(env, name, props);
  }

 protected:
  std::unique_ptr<Model> model_;
  NetworkAdamW optimizer_;
  bool busy_ = false;

  void check_idle() const { DBCORE_CHECK(!busy_, "EBUSY", "another call on this network is still running (await it)"); }

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
      return (this->*M)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }
  // Calls the derived method whose pointer is the callback data, converting C++ exceptions to JS ones.
  Napi::Value dispatch(const Napi::CallbackInfo& info) {
    Method m = *static_cast<Method*>(info.Data());
    try {
      DBCORE_CHECK(model_ != nullptr, "ESTATE", "network object is not initialized");
      return (static_cast<Derived*>(this)->*m)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
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
  Napi::Value optimizer_step(const Napi::CallbackInfo& info) {
    check_idle();
    const cpu::AdamWHyper hyper = adamw_hyper_option(info, 0);
    const double max_grad_norm = ranged_option(info, 0, "maxGradNorm", 1.0, 0, kHuge, true);  // 0: no clipping
    auto result = std::make_shared<OptimizerStepResult>();
    ParamStore* store = &model_->store();
    NetworkAdamW* optimizer = &optimizer_;
    auto work = [=]() { *result = optimizer->step(*store, hyper, max_grad_norm); };
    auto finish = [result](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("gradNorm", result->grad_norm);
      r.Set("clipCoef", result->clip_coef);
      r.Set("step", static_cast<double>(result->step));
      return r;
    };
    return queue(info.Env(), work, finish, {});
  }
};

}  // namespace dbcore::js
