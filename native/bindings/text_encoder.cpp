// addon.TextEncoder: the CLIP text encoder (network_wrap.h's common methods) plus
//   forward(ids I32 (B, T), {clipSkip = 1, forBackward = false, activations = false}) → Promise<{out, activations}>
//   backward(dout F32 (B, T, C)) → Promise<void> (parameter gradients +=)
#include "model/clip_text.h"
#include "networks.h"

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

class TextEncoderWrap : public NetworkWrap<TextEncoderWrap, ClipTextModel> {
 public:
  static constexpr const char* kClassName = "TextEncoder";
  static Napi::Function define(Napi::Env env) {
    return Base::define(env, "TextEncoder",
                        {{"forward", &TextEncoderWrap::forward}, {"backward", &TextEncoderWrap::backward}});
  }

  explicit TextEncoderWrap(const Napi::CallbackInfo& info) : Base(info) {
    construct(info, [](const Napi::Object& config, const ops::Context& ctx) {
      return std::make_unique<ClipTextModel>(clip_config_from_js(config), ctx);
    });
  }

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
    const int B = int(ids.dim(0)), T = int(ids.dim(1)), C = model_->config().hidden_size;
    JsTensor out = new_js_tensor(info.Env(), DType::F32, {B, T, C});
    auto captured = std::make_shared<Captured>();
    ClipTextModel* model = model_.get();
    Staging* io = inputs_.get();
    last_shape_.clear();  // the earlier call's staged inputs go now: no backward until this call is staged
    io->begin();
    float* out_ptr = io->output(out.tensor.f32(), out.tensor.numel());
    const int32_t* ids_ptr = io->input(ids.as<int32_t>(), ids.numel());
    const Device device = model->store().device();
    auto work = io->around([=]() {
      model->forward(out_ptr, ids_ptr, B, T, clip_skip, for_backward, capture_hook(want_acts, captured, device));
    });
    auto finish = forward_result({{"out", out.object}}, captured);
    last_shape_ = for_backward ? Shape{B, T, C} : Shape{};
    if (for_backward) keep_ids_ = Napi::Persistent(info[0]);  // read again by backward()
    return queue(info.Env(), work, finish, {info[0]});
  }

  Napi::Value backward(const Napi::CallbackInfo& info) {
    check_idle();
    Tensor dout = tensor_arg(info, 0, "dout", DType::F32, 3);
    DBCORE_CHECK(!last_shape_.empty(), "ESTATE", "backward() needs a forward(ids, {forBackward: true}) first");
    check_shape(dout, last_shape_, "dout");
    last_shape_.clear();
    ClipTextModel* model = model_.get();
    model->store().grads();
    Staging* io = grads_io_.get();
    io->begin();
    const float* d = io->input(dout.f32(), dout.numel());
    return queue(
        info.Env(),
        io->around([model, d]() { model->backward(d); }),
        [](Napi::Env env) -> Napi::Value { return env.Undefined(); }, {info[0]}, [this]() { keep_ids_.Reset(); });
  }

 private:
  Shape last_shape_;  // (B, T, C) of the last forward kept for backward
  Napi::Reference<Napi::Value> keep_ids_;
};

}  // namespace

NetworkRef<ClipTextModel> text_encoder_from_js(const Napi::Value& value, const char* what) {
  TextEncoderWrap* w = TextEncoderWrap::unwrap_checked(value, what);
  return {&w->model(), w};
}

namespace {

ClassRegistration text_encoder_class("TextEncoder", &TextEncoderWrap::define);

}  // namespace
}  // namespace dbcore::js
