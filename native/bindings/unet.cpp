// addon.UNet: UNet2DConditionModel (network_wrap.h's common methods) plus
//   forward(sample F32 (N, C, H, W), timesteps F32|I32 (N), context F32 (N, S, D), {forBackward, activations})
//     → Promise<{out, activations}>
//   backward(dout F32 (N, out, H, W), {inputGrads = true}) → Promise<{dsample, dcontext}> (parameter gradients +=)
// The config is the resolved one of ts/engine/unet-config.ts (per-block lists, heads resolved).
#include "model/unet.h"
#include "networks.h"

namespace dbcore::js {
namespace {

UNetConfig unet_config_from_js(const Napi::Object& o) {
  const char* w = "unet config";
  UNetConfig c;
  c.in_channels = int(require_number(o, "in_channels", w));
  c.out_channels = int(require_number(o, "out_channels", w));
  c.block_out_channels = list_field<int>(o, "block_out_channels", w);
  c.layers_per_block = list_field<int>(o, "layers_per_block", w);
  c.down_cross_attention = list_field<bool>(o, "down_cross_attention", w);
  c.up_cross_attention = list_field<bool>(o, "up_cross_attention", w);
  c.heads = list_field<int>(o, "heads", w);
  c.transformer_layers = list_field<int>(o, "transformer_layers", w);
  c.cross_attention_dim = int(require_number(o, "cross_attention_dim", w));
  c.use_linear_projection = get_bool(o, "use_linear_projection", false, w);
  c.norm_num_groups = int(require_number(o, "norm_num_groups", w));
  c.norm_eps = float(get_number(o, "norm_eps", 1e-5, w));
  c.flip_sin_to_cos = get_bool(o, "flip_sin_to_cos", true, w);
  c.freq_shift = float(get_number(o, "freq_shift", 0, w));
  c.mid_block_scale_factor = float(get_number(o, "mid_block_scale_factor", 1, w));
  c.conv_in_kernel = int(get_number(o, "conv_in_kernel", 3, w));
  c.conv_out_kernel = int(get_number(o, "conv_out_kernel", 3, w));
  c.time_embedding_dim = int(get_number(o, "time_embedding_dim", 0, w));
  c.center_input_sample = get_bool(o, "center_input_sample", false, w);
  return c;
}

class UNetWrap : public NetworkWrap<UNetWrap, UNet> {
 public:
  static constexpr const char* kClassName = "UNet";
  static Napi::Function define(Napi::Env env) {
    return Base::define(env, "UNet", {{"forward", &UNetWrap::forward}, {"backward", &UNetWrap::backward}});
  }

  explicit UNetWrap(const Napi::CallbackInfo& info) : Base(info) {
    construct(info, [](const Napi::Object& config, const ops::Context& ctx) {
      return std::make_unique<UNet>(unet_config_from_js(config), ctx);
    });
  }

  Napi::Value forward(const Napi::CallbackInfo& info) {
    check_idle();
    const UNetConfig& cfg = model_->config();
    Tensor sample = tensor_arg(info, 0, "sample", DType::F32, 4);
    DBCORE_CHECK(info.Length() > 1, "EINVAL", "forward(sample, timesteps, context, options?)");
    Tensor t = tensor_from_js(info[1], "timesteps");
    Tensor context = tensor_arg(info, 2, "context", DType::F32, 3);
    Napi::Object opts = object_arg(info, 3, "options", true);
    const bool for_backward = get_bool(opts, "forBackward", false, "options");
    const bool want_acts = get_bool(opts, "activations", false, "options");
    const int N = int(sample.dim(0)), H = int(sample.dim(2)), W = int(sample.dim(3)), S = int(context.dim(1));
    DBCORE_CHECK(sample.dim(1) == cfg.in_channels, "ESHAPE", "sample: expected %d channels, got %s", cfg.in_channels,
                 sample.describe().c_str());
    check_shape(context, {N, S, cfg.cross_attention_dim}, "context");
    DBCORE_CHECK(t.ndim() == 1 && t.dim(0) == N && (t.dtype == DType::F32 || t.dtype == DType::I32), "ESHAPE",
                 "timesteps: expected F32 or I32 [%d], got %s", N, t.describe().c_str());
    auto timesteps = std::make_shared<std::vector<float>>(N);
    for (int i = 0; i < N; ++i)
      (*timesteps)[i] = t.dtype == DType::F32 ? t.as<float>()[i] : float(t.as<int32_t>()[i]);

    JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, cfg.out_channels, H, W});
    auto captured = std::make_shared<Captured>();
    UNet* model = model_.get();
    Staging* io = inputs_.get();
    last_out_shape_.clear();  // the earlier call's staged inputs go now: no backward until this call is staged
    io->begin();
    float* out_ptr = io->output(out.tensor.f32(), out.tensor.numel());
    const float* sample_ptr = io->input(sample.f32(), sample.numel());
    const float* context_ptr = io->input(context.f32(), context.numel());
    const float* timesteps_ptr = io->input(timesteps->data(), N);
    const Device device = model->store().device();
    auto work = io->around([=]() {
      ActivationHook hook = capture_hook(want_acts, captured, device);
      model->forward(out_ptr, sample_ptr, timesteps_ptr, context_ptr, N, H, W, S, for_backward, hook);
      (void)timesteps;  // the host copy lives until the work is done
    });
    auto finish = forward_result({{"out", out.object}}, captured);
    if (for_backward) {
      last_out_shape_ = {N, cfg.out_channels, H, W};
      sample_shape_ = sample.shape;
      context_shape_ = context.shape;
      kept_inputs_.clear();  // sample and context are read again by backward()
      kept_inputs_.push_back(Napi::Persistent(info[0]));
      kept_inputs_.push_back(Napi::Persistent(info[2]));
    }
    return queue(info.Env(), work, finish, {info[0], info[1], info[2]});
  }

  Napi::Value backward(const Napi::CallbackInfo& info) {
    check_idle();
    Tensor dout = tensor_arg(info, 0, "dout", DType::F32, 4);
    DBCORE_CHECK(!last_out_shape_.empty(), "ESTATE", "backward() needs a forward(..., {forBackward: true}) first");
    check_shape(dout, last_out_shape_, "dout");
    Napi::Object opts = object_arg(info, 1, "options", true);
    const bool input_grads = get_bool(opts, "inputGrads", true, "options");
    last_out_shape_.clear();
    JsTensor dsample = new_js_tensor(info.Env(), DType::F32, input_grads ? sample_shape_ : Shape{0});
    JsTensor dcontext = new_js_tensor(info.Env(), DType::F32, input_grads ? context_shape_ : Shape{0});
    UNet* model = model_.get();
    model->store().grads();
    Staging* io = grads_io_.get();
    io->begin();
    const float* d = io->input(dout.f32(), dout.numel());
    float* ds = input_grads ? io->output(dsample.tensor.f32(), dsample.tensor.numel()) : nullptr;
    float* dc = input_grads ? io->output(dcontext.tensor.f32(), dcontext.tensor.numel()) : nullptr;
    auto ds_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(dsample.object));
    auto dc_ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(dcontext.object));
    auto finish = [ds_ref, dc_ref, input_grads](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      if (input_grads) {
        r.Set("dsample", ds_ref->Value());
        r.Set("dcontext", dc_ref->Value());
      }
      return r;
    };
    return queue(
        info.Env(),
        io->around([model, d, ds, dc]() { model->backward(ds, dc, d); }),
        finish, {info[0]},
        [this]() { kept_inputs_.clear(); });
  }

 private:
  Shape last_out_shape_, sample_shape_, context_shape_;
  std::vector<Napi::Reference<Napi::Value>> kept_inputs_;
};

}  // namespace

NetworkRef<UNet> unet_from_js(const Napi::Value& value, const char* what) {
  UNetWrap* w = UNetWrap::unwrap_checked(value, what);
  return {&w->model(), w};
}

namespace {

ClassRegistration unet_class("UNet", &UNetWrap::define);

}  // namespace
}  // namespace dbcore::js
