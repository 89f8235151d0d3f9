// addon.VAE: AutoencoderKL, forward only (network_wrap.h's common methods; setGradientCheckpointing throws) plus
//   encode(image F32 (N, in, H, W), {activations, tileSize, convWorkspaceLimit}) → Promise<{mean, logvar,
//     activations}>, mean and logvar (N, L, H/f, W/f), logvar clamped to [-30, 20]
//   decode(latents F32 (N, L, h, w), {activations, tileSize, convWorkspaceLimit}) → Promise<{out, activations}>,
//     out (N, out, h·f, w·f)
// tileSize: tile edge in latent pixels (a multiple of 4; 0 or absent: untiled); convWorkspaceLimit: floats of im2col
// workspace per convolution (default 2^24). Activations are not available for a call that runs tiled.
// The config is the resolved one of ts/engine/vae-config.ts.
#include <cmath>

#include "model/vae.h"
#include "network_wrap.h"

namespace dbcore::js {
namespace {

VAEConfig vae_config_from_js(const Napi::Object& o) {
  const char* w = "vae config";
  VAEConfig c;
  c.in_channels = int(require_number(o, "in_channels", w));
  c.out_channels = int(require_number(o, "out_channels", w));
  c.latent_channels = int(require_number(o, "latent_channels", w));
  c.block_out_channels = list_field<int>(o, "block_out_channels", w);
  c.layers_per_block = int(require_number(o, "layers_per_block", w));
  c.norm_num_groups = int(require_number(o, "norm_num_groups", w));
  c.mid_block_add_attention = get_bool(o, "mid_block_add_attention", true, w);
  return c;
}

class VAEWrap : public NetworkWrap<VAEWrap, VAE> {
 public:
  static Napi::Function define(Napi::Env env) {
    return Base::define(env, "VAE", {{"encode", &VAEWrap::encode}, {"decode", &VAEWrap::decode}});
  }

  explicit VAEWrap(const Napi::CallbackInfo& info) : Base(info) {
    construct(info, [](const Napi::Object& config, const ops::Context& ctx) {
      return std::make_unique<VAE>(vae_config_from_js(config), ctx);
    });
  }

  Napi::Value encode(const Napi::CallbackInfo& info) {
    check_idle();
    const VAEConfig& cfg = model_->config();
    const int f = model_->scale_factor();
    Tensor image = tensor_arg(info, 0, "image", DType::F32, 4);
    DBCORE_CHECK(image.dim(1) == cfg.in_channels, "ESHAPE", "image: expected (N, %d, H, W), got %s",
                 cfg.in_channels, image.describe().c_str());
    const int N = int(image.dim(0)), H = int(image.dim(2)), W = int(image.dim(3));
    DBCORE_CHECK(N > 0 && H > 0 && W > 0 && H % f == 0 && W % f == 0, "ESHAPE",
                 "image: height and width must be positive multiples of %d, got %s", f, image.describe().c_str());
    const bool want_acts = call_options(info, 1, H / f, W / f);
    const Shape latent_shape{N, cfg.latent_channels, H / f, W / f};
    JsTensor mean = new_js_tensor(info.Env(), DType::F32, latent_shape);
    JsTensor logvar = new_js_tensor(info.Env(), DType::F32, latent_shape);
    auto captured = std::make_shared<Captured>();
    VAE* model = model_.get();
    Staging* io = inputs_.get();
    io->begin();
    float* mean_ptr = io->output(mean.tensor.f32(), mean.tensor.numel());
    float* logvar_ptr = io->output(logvar.tensor.f32(), logvar.tensor.numel());
    const float* image_ptr = io->input(image.f32(), image.numel());
    const Device device = model->store().device();
    auto work = io->around([=]() {
      model->encode(mean_ptr, logvar_ptr, image_ptr, N, H, W, capture_hook(want_acts, captured, device));
    });
    auto finish = forward_result({{"mean", mean.object}, {"logvar", logvar.object}}, captured);
    return queue(info.Env(), work, finish, {info[0]});
  }

  Napi::Value decode(const Napi::CallbackInfo& info) {
    check_idle();
    const VAEConfig& cfg = model_->config();
    const int f = model_->scale_factor();
    Tensor latents = tensor_arg(info, 0, "latents", DType::F32, 4);
    DBCORE_CHECK(latents.dim(1) == cfg.latent_channels, "ESHAPE", "latents: expected (N, %d, h, w), got %s",
                 cfg.latent_channels, latents.describe().c_str());
    const int N = int(latents.dim(0)), h = int(latents.dim(2)), w = int(latents.dim(3));
    DBCORE_CHECK(N > 0 && h > 0 && w > 0, "ESHAPE", "latents: every dimension must be positive, got %s",
                 latents.describe().c_str());
    const bool want_acts = call_options(info, 1, h, w);
    JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, cfg.out_channels, int64_t(h) * f, int64_t(w) * f});
    auto captured = std::make_shared<Captured>();
    VAE* model = model_.get();
    Staging* io = inputs_.get();
    io->begin();
    float* out_ptr = io->output(out.tensor.f32(), out.tensor.numel());
    const float* latents_ptr = io->input(latents.f32(), latents.numel());
    const Device device = model->store().device();
    auto work = io->around([=]() { model->decode(out_ptr, latents_ptr, N, h, w, capture_hook(want_acts, captured, device)); });
    auto finish = forward_result({{"out", out.object}}, captured);
    return queue(info.Env(), work, finish, {info[0]});
  }

 private:
  // Applies {tileSize, convWorkspaceLimit} for this call (latent size h x w); returns whether activations are
  // wanted, which a tiled call cannot give.
  bool call_options(const Napi::CallbackInfo& info, size_t index, int h, int w) {
    Napi::Object opts = object_arg(info, index, "options", true);
    const double tile = get_number(opts, "tileSize", 0, "options");
    DBCORE_CHECK(tile >= 0 && tile <= 1 << 20 && tile == std::floor(tile) && int(tile) % 4 == 0, "EINVAL",
                 "options.tileSize = %g must be 0 (untiled) or a positive multiple of 4 (latent pixels)", tile);
    const double limit = get_number(opts, "convWorkspaceLimit", double(VAE::kDefaultConvWorkspace), "options");
    DBCORE_CHECK(limit >= 1 && limit == std::floor(limit), "EINVAL",
                 "options.convWorkspaceLimit = %g must be a positive integer (floats)", limit);
    const bool want_acts = get_bool(opts, "activations", false, "options");
    model_->set_tile_size(int(tile));
    model_->set_conv_workspace_limit(int64_t(limit));
    DBCORE_CHECK(!(want_acts && model_->is_tiled(h, w)), "EINVAL",
                 "options.activations: intermediate activations are not available when the call runs tiled "
                 "(latent %dx%d > tileSize %d)", h, w, int(tile));
    return want_acts;
  }
};

ClassRegistration vae_class("VAE", &VAEWrap::define);

}  // namespace
}  // namespace dbcore::js
