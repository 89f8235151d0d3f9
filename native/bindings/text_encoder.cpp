// addon.TextEncoder: the CLIP text encoder as a JS object owning its parameters, gradients and activations.
//   new TextEncoder(config.json object) · paramTable() · setParam(name, t) · getParam(name) · getGrad(name)
//   zeroGrad() · setGradientCheckpointing(on) · forward(ids, {clipSkip, forBackward, activations}) → Promise
//   backward(dout) → Promise. One call in flight at a time.
#include <map>
#include <memory>

#include "async.h"
#include "js_tensor.h"
#include "model/clip_text.h"
#include "param_io.h"
#include "registry.h"

namespace dbcore::js {
namespace {

ClipTextConfig clip_config_from_js(const Napi::Object& o) {
  const char* w = "text encoder config";
  ClipTextConfig c;
  c.vocab_size = int(require_number(o, "vocab_size", w));
  c.hidden_size = int(require_number(o, "hidden_size", w));
  c.intermediate_size = int(require_number(o, "intermediate_size", w));
  c.num_hidden_layers = int(require_number(o, "num_hidden_layers", w));
  c.num_attention_heads = int(require_number(o, "num_attention_heads", w));
  c.max_position_embeddings = int(get_number(o, "max_position_embeddings", c.max_position_embeddings, w));
  c.hidden_act = get_string(o, "hidden_act", c.hidden_act, w);
  c.layer_norm_eps = float(get_number(o, "layer_norm_eps", c.layer_norm_eps, w));
  return c;
}

using Captured = std::map<std::string, std::pair<Shape, std::vector<float>>>;

class TextEncoderWrap : public Napi::ObjectWrap<TextEncoderWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "TextEncoder",
                       {InstanceMethod("paramTable", &TextEncoderWrap::guard<&TextEncoderWrap::param_table>),
                        InstanceMethod("setParam", &TextEncoderWrap::guard<&TextEncoderWrap::set_param>),
                        InstanceMethod("getParam", &TextEncoderWrap::guard<&TextEncoderWrap::get_param>),
                        InstanceMethod("getGrad", &TextEncoderWrap::guard<&TextEncoderWrap::get_grad>),
                        InstanceMethod("zeroGrad", &TextEncoderWrap::guard<&TextEncoderWrap::zero_grad>),
                        InstanceMethod("setGradientCheckpointing",
                                       &TextEncoderWrap::guard<&TextEncoderWrap::set_checkpointing>),
                        InstanceMethod("forward", &TextEncoderWrap::guard<&TextEncoderWrap::forward>),
                        InstanceMethod("backward", &TextEncoderWrap::guard<&TextEncoderWrap::backward>)});
  }

  explicit TextEncoderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TextEncoderWrap>(info) {
    try {
      model_ = std::make_unique<ClipTextModel>(clip_config_from_js(object_arg(info, 0, "config")), ops::Context{});
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }

 private:
  template <Napi::Value (TextEncoderWrap::*Method)(const Napi::CallbackInfo&)>
  Napi::Value guard(const Napi::CallbackInfo& info) {
    try {
      return (this->*Method)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }

  void check_idle() const {
    DBCORE_CHECK(!busy_, "EBUSY", "TextEncoder: another call is still running (await it first)");
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

  // forward(ids I32 (B, T), {clipSkip = 1, forBackward = false, activations = false}) → {out, activations}
  Napi::Value forward(const Napi::CallbackInfo& info) {
    check_idle();
    Tensor ids = tensor_arg(info, 0, "ids", DType::I32, 2);
    Napi::Object opts = object_arg(info, 1, "options", true);
    int clip_skip = int(get_number(opts, "clipSkip", 1, "options"));
    bool for_backward = get_bool(opts, "forBackward", false, "options");
    bool want_acts = get_bool(opts, "activations", false, "options");
    const int vocab = model_->config().vocab_size;
    for (int64_t i = 0; i < ids.numel(); ++i)
      DBCORE_CHECK(ids.as<int32_t>()[i] >= 0 && ids.as<int32_t>()[i] < vocab, "EINVAL",
                   "ids[%lld] = %d is outside the vocabulary (0..%d)", (long long)i, ids.as<int32_t>()[i], vocab - 1);
    int B = int(ids.dim(0)), T = int(ids.dim(1)), C = model_->config().hidden_size;
    JsTensor out = new_js_tensor(info.Env(), DType::F32, {B, T, C});
    auto captured = std::make_shared<Captured>();
    ClipTextModel* model = model_.get();
    float* out_ptr = out.tensor.f32();
    const int32_t* ids_ptr = ids.as<int32_t>();
    auto work = [=]() {
      ActivationHook hook;
      if (want_acts)
        hook = [captured](const std::string& name, const float* data, const Shape& shape) {
          (*captured)[name] = {shape, std::vector<float>(data, data + shape_numel(shape))};
        };
      model->forward(out_ptr, ids_ptr, B, T, clip_skip, for_backward, hook);
    };
    auto out_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(out.object));
    auto finish = [captured, out_ref](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("out", out_ref->Value());
      Napi::Object acts = Napi::Object::New(env);
      for (auto& [name, sv] : *captured) {
        JsTensor t = new_js_tensor(env, DType::F32, sv.first);
        std::copy(sv.second.begin(), sv.second.end(), t.tensor.f32());
        acts.Set(name, t.object);
      }
      r.Set("activations", acts);
      return r;
    };
    busy_ = true;
    last_shape_ = for_backward ? Shape{B, T, C} : Shape{};
    if (for_backward) keep_ids_ = Napi::Persistent(info[0]);  // read again by backward()
    return run_async(info.Env(), work, finish, {info[0], Value()}, [this]() { busy_ = false; });
  }

  // backward(dout F32 (B, T, C)) → Promise<void>; gradients accumulate (+=).
  Napi::Value backward(const Napi::CallbackInfo& info) {
    check_idle();
    Tensor dout = tensor_arg(info, 0, "dout", DType::F32, 3);
    DBCORE_CHECK(!last_shape_.empty(), "ESTATE", "backward() needs a forward(ids, {forBackward: true}) first");
    check_shape(dout, last_shape_, "dout");
    ClipTextModel* model = model_.get();
    model->store().grads();  // allocated here, before the work starts
    const float* d = dout.f32();
    busy_ = true;
    last_shape_.clear();
    auto cleanup = [this]() {
      busy_ = false;
      keep_ids_.Reset();
    };
    return run_async(info.Env(), [model, d]() { model->backward(d); },
                     [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {info[0], Value()}, cleanup);
  }

  std::unique_ptr<ClipTextModel> model_;
  bool busy_ = false;
  Shape last_shape_;  // (B, T, C) of the last forward kept for backward
  Napi::Reference<Napi::Value> keep_ids_;
};

ClassRegistration text_encoder_class("TextEncoder", &TextEncoderWrap::define);

}  // namespace
}  // namespace dbcore::js
