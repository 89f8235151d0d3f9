// AutoencoderKL forward: encoder, decoder, and diffusers' tiled mode.
#include "vae.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace dbcore {

namespace {
constexpr float kEps = 1e-6f;  // every VAE norm: resnet_eps, the attention's group_norm, conv_norm_out
constexpr float kLogvarMin = -30.f, kLogvarMax = 20.f;
}  // namespace

void VAEConfig::validate() const {
  DBCORE_CHECK(!block_out_channels.empty(), "EINVAL", "vae config: block_out_channels is empty");
  DBCORE_CHECK(norm_num_groups > 0, "EINVAL", "vae config: norm_num_groups must be positive");
  for (size_t i = 0; i < block_out_channels.size(); ++i) {
    const int c = block_out_channels[i];
    DBCORE_CHECK(c > 0 && c % norm_num_groups == 0, "EINVAL",
                 "vae config: block_out_channels[%zu] = %d is not a positive multiple of norm_num_groups %d", i, c,
                 norm_num_groups);
  }
  DBCORE_CHECK(layers_per_block > 0, "EINVAL", "vae config: layers_per_block must be positive");
  DBCORE_CHECK(in_channels > 0 && out_channels > 0 && latent_channels > 0, "EINVAL",
               "vae config: channel counts must be positive");
}

VAE::VAE(const VAEConfig& config, ops::Context ctx) :
      cfg_(config), ctx_(ctx), store_(ParamTable()), keep_(ctx.device), work_(ctx.device) {
  cfg_.validate();
  declare_params();
}

void VAE::set_gradient_checkpointing(bool) {
  throw Error("EUNSUPPORTED", "the VAE is inference-only: it has no backward to checkpoint");
}

void VAE::set_tile_size(int latent_pixels) {
  DBCORE_CHECK(latent_pixels >= 0 && latent_pixels % 4 == 0, "EINVAL",
               "vae: tile size %d must be 0 (no tiling) or a positive multiple of 4 latent pixels", latent_pixels);
  tile_size_ = latent_pixels;
}

void VAE::set_conv_workspace_limit(int64_t floats) {
  DBCORE_CHECK(floats > 0, "EINVAL", "vae: the convolution workspace limit must be positive");
  conv_workspace_limit_ = floats;
}

// ref: diffusers UNetMidBlock2D as the VAE builds it: resnets.0, Attention (one head of C channels), resnets.1.
void VAE::declare_mid(ParamTable& t, MidBlock& m, const std::string& name, int C) {
  const int G = cfg_.norm_num_groups;
  if (cfg_.mid_block_add_attention) {
    const std::string a = name + ".attentions.0";
    m.norm = declare_norm(t, a + ".group_norm", C);
    m.q = declare_linear(t, a + ".to_q", C, C);
    m.k = declare_linear(t, a + ".to_k", C, C);
    m.v = declare_linear(t, a + ".to_v", C, C);
    m.o = declare_linear(t, a + ".to_out.0", C, C);
  }
  for (int j = 0; j < 2; ++j) m.resnets[j].declare(t, name + ".resnets." + std::to_string(j), C, C, 0, G, kEps, 1.f);
}

// Parameter names as in diffusers' AutoencoderKL state dict.
void VAE::declare_params() {
  ParamTable t;
  const auto& boc = cfg_.block_out_channels;
  const int nb = int(boc.size()), G = cfg_.norm_num_groups, L = cfg_.latent_channels, top = boc[nb - 1];
  auto resnets = [&](Level& lv, const std::string& pre, int in, int out, int n) {
    for (int j = 0; j < n; ++j) {
      lv.resnets.emplace_back();
      lv.resnets.back().declare(t, pre + ".resnets." + std::to_string(j), j == 0 ? in : out, out, 0, G, kEps, 1.f);
    }
  };

  // Encoder: DownEncoderBlock2D × nb (Downsample2D with padding 0 on all but the last), mid block, 2L outputs.
  enc_conv_in_ = declare_conv(t, "encoder.conv_in", boc[0], cfg_.in_channels, 3);
  down_.assign(nb, Level{});
  for (int i = 0; i < nb; ++i) {
    const std::string pre = "encoder.down_blocks." + std::to_string(i);
    resnets(down_[i], pre, boc[std::max(i - 1, 0)], boc[i], cfg_.layers_per_block);
    if (i < nb - 1) down_[i].sampler = declare_conv(t, pre + ".downsamplers.0.conv", boc[i], boc[i], 3);
  }
  declare_mid(t, enc_mid_, "encoder.mid_block", top);
  enc_norm_out_ = declare_norm(t, "encoder.conv_norm_out", top);
  enc_conv_out_ = declare_conv(t, "encoder.conv_out", 2 * L, top, 3);

  // Decoder: mid block, UpDecoderBlock2D × nb over the reversed channels (layers_per_block + 1 resnets each).
  dec_conv_in_ = declare_conv(t, "decoder.conv_in", top, L, 3);
  declare_mid(t, dec_mid_, "decoder.mid_block", top);
  up_.assign(nb, Level{});
  for (int i = 0; i < nb; ++i) {
    const std::string pre = "decoder.up_blocks." + std::to_string(i);
    const int in = boc[nb - std::max(i, 1)], out = boc[nb - 1 - i];  // in: the previous block's output
    resnets(up_[i], pre, in, out, cfg_.layers_per_block + 1);
    if (i < nb - 1) up_[i].sampler = declare_conv(t, pre + ".upsamplers.0.conv", out, out, 3);
  }
  dec_norm_out_ = declare_norm(t, "decoder.conv_norm_out", boc[0]);
  dec_conv_out_ = declare_conv(t, "decoder.conv_out", cfg_.out_channels, boc[0], 3);

  quant_conv_ = declare_conv(t, "quant_conv", 2 * L, 2 * L, 1);
  post_quant_conv_ = declare_conv(t, "post_quant_conv", L, L, 1);
  store_ = ParamStore(std::move(t), ctx_.device);
}

Run VAE::run() {
  Run r{ctx_, &store_, &keep_, &work_, false, false};
  r.conv_workspace_limit = conv_workspace_limit_;
  return r;
}

// Floats per image of the largest tensor either ping-pong buffer holds.
int64_t VAE::largest_encoder_activation(int H, int W) const {
  const auto& boc = cfg_.block_out_channels;
  const int nb = int(boc.size());
  int64_t most = 2 * int64_t(cfg_.latent_channels) * (H >> (nb - 1)) * (W >> (nb - 1));
  for (int i = 0; i < nb; ++i)
    most = std::max(most, int64_t(std::max(boc[std::max(i - 1, 0)], boc[i])) * (H >> i) * (W >> i));
  return most;
}

int64_t VAE::largest_decoder_activation(int h, int w) const {
  const auto& boc = cfg_.block_out_channels;
  const int nb = int(boc.size());
  int64_t most = int64_t(std::max(cfg_.latent_channels, boc[nb - 1])) * h * w;
  for (int i = 0; i < nb; ++i) {
    const int64_t hw = int64_t(h << i) * (w << i);
    most = std::max(most, int64_t(std::max(boc[nb - std::max(i, 1)], boc[nb - 1 - i])) * hw);
    if (i < nb - 1) most = std::max(most, int64_t(boc[nb - 1 - i]) * 4 * hw);  // upsampled
  }
  return most;
}

// ref: diffusers Attention with AttnProcessor2_0 as UNetMidBlock2D builds it for the VAE: heads = C /
// attention_head_dim = 1, so one head of size C over the H·W tokens; group_norm (eps 1e-6) first, q/k/v/out
// linear layers with bias, residual_connection, rescale_output_factor 1:
//   out = x + nchw(to_out(softmax(q kᵀ / √C) v)),  q, k, v = to_q/k/v(nhwc(group_norm(x))).
void VAE::attention_forward(const Run& r, const MidBlock& m, float* out, const float* x, int N, int C, int H,
                            int W) {
  const int HW = H * W, G = cfg_.norm_num_groups;
  const int64_t MC = int64_t(N) * HW * C;
  Arena::Mark mk = work_.mark();
  float* gn = work_.alloc_floats(MC);  // (N, C, HW)
  float* mean = work_.alloc_floats(int64_t(N) * G);
  float* rstd = work_.alloc_floats(int64_t(N) * G);
  float* tok = work_.alloc_floats(MC);  // (N, HW, C), then the attention output
  float *q = work_.alloc_floats(MC), *k = work_.alloc_floats(MC), *v = work_.alloc_floats(MC);
  float* lse = work_.alloc_floats(int64_t(N) * HW);
  ops::groupnorm_forward(ctx_, gn, mean, rstd, x, r.p(m.norm.w), r.p(m.norm.b), N, C, HW, G, kEps);
  ops::nchw_to_nhwc(ctx_, tok, gn, N, C, HW);
  linear_forward(r, q, tok, m.q, N * HW, C, C);
  linear_forward(r, k, tok, m.k, N * HW, C, C);
  linear_forward(r, v, tok, m.v, N * HW, C, C);
  ops::attention_forward(ctx_, tok, lse, q, k, v, N, HW, HW, 1, C, 1.0f / std::sqrt(float(C)), false);
  linear_forward(r, q, tok, m.o, N * HW, C, C);  // q is free again: (N, HW, C)
  ops::nhwc_to_nchw(ctx_, out, q, N, C, HW);
  ops::add(ctx_, out, out, x, MC);
  work_.release(mk);
}

// resnets.0 → attention → resnets.1 (x and y are the ping-pong buffers; the result ends in x).
void VAE::mid_forward(const Run& r, MidBlock& m, float*& x, float*& y, int N, int C, int H, int W) {
  m.resnets[0].forward(r, y, x, nullptr, N, H, W);
  std::swap(x, y);
  if (m.norm.w >= 0) {
    attention_forward(r, m, y, x, N, C, H, W);
    std::swap(x, y);
  }
  m.resnets[1].forward(r, y, x, nullptr, N, H, W);
  std::swap(x, y);
}

// out (N, OC, H, W) = conv(silu(group_norm(x (N, C, H, W)))); tmp holds silu(group_norm(x)); out may alias x.
void VAE::tail_forward(const Run& r, float* out, float* x, float* tmp, const WB& norm, const WB& conv, int N, int C,
                       int H, int W, int OC) {
  const int G = cfg_.norm_num_groups;
  Arena::Mark mk = work_.mark();
  float* mean = work_.alloc_floats(int64_t(N) * G);
  float* rstd = work_.alloc_floats(int64_t(N) * G);
  ops::groupnorm_silu_forward(ctx_, tmp, mean, rstd, x, r.p(norm.w), r.p(norm.b), N, C, H * W, G, kEps);
  conv_forward(r, out, tmp, conv, {N, C, H, W, OC, 3, 3, 1, 1});
  work_.release(mk);
}

// moments (N, 2L, H/f, W/f) = quant_conv(encoder(image)). ref: diffusers Encoder.forward.
void VAE::encode_whole(float* moments, const float* image, int N, int H, int W, const ActivationHook& hook) {
  const Run r = run();
  const auto& boc = cfg_.block_out_channels;
  Arena::Mark km = keep_.mark();
  const int64_t big = int64_t(N) * largest_encoder_activation(H, W);
  float *x = keep_.alloc_floats(big), *y = keep_.alloc_floats(big);
  int C = boc[0], h = H, w = W;
  conv_forward(r, x, image, enc_conv_in_, {N, cfg_.in_channels, H, W, C, 3, 3, 1, 1});
  for (size_t i = 0; i < down_.size(); ++i) {
    for (ResnetBlock& rb : down_[i].resnets) {
      rb.forward(r, y, x, nullptr, N, h, w);
      std::swap(x, y);
      C = rb.out_channels();
    }
    if (down_[i].sampler.w >= 0) {  // Downsample2D, padding 0: F.pad(x, (0, 1, 0, 1)), then 3x3 stride 2
      Arena::Mark m = work_.mark();
      float* padded = work_.alloc_floats(int64_t(N) * C * (h + 1) * (w + 1));  // (N, C, h + 1, w + 1)
      ops::crop_pad2d(ctx_, padded, x, N, C, h, w, 0, 0, h + 1, w + 1);
      const cpu::Conv2dShape s{N, C, h + 1, w + 1, C, 3, 3, 2, 0};
      conv_forward(r, y, padded, down_[i].sampler, s);
      std::swap(x, y);
      h = s.OH();
      w = s.OW();
      work_.release(m);
    }
    if (hook) hook("encoder.down_blocks." + std::to_string(i), x, {N, C, h, w});
  }
  mid_forward(r, enc_mid_, x, y, N, C, h, w);
  if (hook) hook("encoder.mid_block", x, {N, C, h, w});
  const int L2 = 2 * cfg_.latent_channels;
  tail_forward(r, x, x, y, enc_norm_out_, enc_conv_out_, N, C, h, w, L2);
  conv_forward(r, moments, x, quant_conv_, {N, L2, h, w, L2, 1, 1, 1, 0});
  if (hook) hook("quant_conv", moments, {N, L2, h, w});
  keep_.release(km);
}

// out (N, out_channels, h·f, w·f) = decoder(post_quant_conv(latents)). ref: diffusers Decoder.forward.
void VAE::decode_whole(float* out, const float* latents, int N, int h, int w, const ActivationHook& hook) {
  const Run r = run();
  const int L = cfg_.latent_channels;
  Arena::Mark km = keep_.mark();
  const int64_t big = int64_t(N) * largest_decoder_activation(h, w);
  float *x = keep_.alloc_floats(big), *y = keep_.alloc_floats(big);
  int C = cfg_.block_out_channels.back();
  conv_forward(r, y, latents, post_quant_conv_, {N, L, h, w, L, 1, 1, 1, 0});
  conv_forward(r, x, y, dec_conv_in_, {N, L, h, w, C, 3, 3, 1, 1});
  mid_forward(r, dec_mid_, x, y, N, C, h, w);
  if (hook) hook("decoder.mid_block", x, {N, C, h, w});
  for (size_t i = 0; i < up_.size(); ++i) {
    for (ResnetBlock& rb : up_[i].resnets) {
      rb.forward(r, y, x, nullptr, N, h, w);
      std::swap(x, y);
      C = rb.out_channels();
    }
    if (up_[i].sampler.w >= 0) {  // Upsample2D: nearest 2x, then 3x3 conv
      ops::upsample_nearest2x_forward(ctx_, y, x, N, C, h, w);
      h *= 2;
      w *= 2;
      conv_forward(r, x, y, up_[i].sampler, {N, C, h, w, C, 3, 3, 1, 1});
    }
    if (hook) hook("decoder.up_blocks." + std::to_string(i), x, {N, C, h, w});
  }
  tail_forward(r, out, x, y, dec_norm_out_, dec_conv_out_, N, C, h, w, cfg_.out_channels);
  keep_.release(km);
}

// ref: diffusers AutoencoderKL.tiled_encode / tiled_decode with tile_overlap_factor 0.25. Tiles of tile_in input
// pixels start every overlap_in = ⌊0.75·tile_in⌋ pixels (edge tiles are smaller); each tile's output (scaled by
// num/den) is blended in place with the tile above and then the tile to its left over blend = ⌊0.25·tile_out⌋
// rows / columns, b[y] = a[−e + y]·(1 − y/e) + b[y]·(y/e) with e = min(blend, both extents), and its top-left
// row_limit × row_limit corner (row_limit = tile_out − blend) is its part of the result. Blending reads the
// already-blended neighbours, so the previous row of tiles is kept.
template <typename TileFn>
void VAE::tiled(float* out, Device out_device, int N, int C, int H, int W, int tile_in, int num, int den, TileFn tile_fn) {
  const int overlap_in = tile_in * 3 / 4;  // tile_in is a multiple of 4 (8 for the image side)
  const int tile_out = tile_in * num / den, blend = tile_out / 4, row_limit = tile_out - blend;
  const int OH = H * num / den, OW = W * num / den;
  const int64_t plane = int64_t(OH) * OW;
  auto weights = [](int y, int e) {  // (1 − y/e, y/e) as diffusers' Python floats, applied in float32
    return std::pair<float, float>(float(1.0 - double(y) / e), float(double(y) / e));
  };
  std::vector<Tile> above, row;
  for (int i = 0; i < H; i += overlap_in) {
    row.clear();
    for (int j = 0; j < W; j += overlap_in) {
      Tile t;
      const int th = std::min(tile_in, H - i), tw = std::min(tile_in, W - j);
      t.h = th * num / den;
      t.w = tw * num / den;
      t.data.resize(size_t(N) * C * t.h * t.w);
      tile_fn(t.data.data(), i, j, th, tw);
      const int64_t tp = int64_t(t.h) * t.w;
      if (i > 0) {  // blend_v with the tile above (same width)
        const Tile& a = above[row.size()];
        const int e = std::min({a.h, t.h, blend});
        for (int64_t p = 0; p < int64_t(N) * C; ++p)
          for (int y = 0; y < e; ++y) {
            auto [wa, wb] = weights(y, e);
            const float* ar = a.data.data() + (p * a.h + (a.h - e + y)) * a.w;
            float* br = t.data.data() + (p * t.h + y) * t.w;
            for (int x = 0; x < t.w; ++x) br[x] = ar[x] * wa + br[x] * wb;
          }
      }
      if (j > 0) {  // blend_h with the tile to the left (same height)
        const Tile& a = row.back();
        const int e = std::min({a.w, t.w, blend});
        for (int64_t p = 0; p < int64_t(N) * C; ++p)
          for (int y = 0; y < t.h; ++y) {
            const float* ar = a.data.data() + (p * a.h + y) * a.w + (a.w - e);
            float* br = t.data.data() + (p * t.h + y) * t.w;
            for (int x = 0; x < e; ++x) {
              auto [wa, wb] = weights(x, e);
              br[x] = ar[x] * wa + br[x] * wb;
            }
          }
      }
      // The top-left corner goes to the result at (i, j)·num/den = (tile row, tile column)·row_limit.
      const int oy = i * num / den, ox = j * num / den;
      const int ch = std::min(row_limit, t.h), cw = std::min(row_limit, t.w);
      for (int64_t p = 0; p < int64_t(N) * C; ++p)
        for (int y = 0; y < ch; ++y)
          copy_bytes(out_device, out + p * plane + int64_t(oy + y) * OW + ox, Device::CPU,
                     t.data.data() + p * tp + int64_t(y) * t.w, size_t(cw) * 4);
      row.push_back(std::move(t));
    }
    std::swap(above, row);
  }
}

void VAE::encode(float* mean, float* logvar, const float* image, int N, int H, int W, const ActivationHook& hook) {
  const int f = scale_factor(), L = cfg_.latent_channels;
  DBCORE_CHECK(N > 0 && H > 0 && W > 0 && H % f == 0 && W % f == 0, "EINVAL",
               "vae encode: image size %dx%d must be a positive multiple of %d", H, W, f);
  const int h = H / f, w = W / f;
  const bool tiling = is_tiled(h, w);
  DBCORE_CHECK(!(tiling && hook), "EINVAL", "vae encode: activations are not available in tiled mode");
  keep_.reset();
  work_.reset();
  // The moments (N, 2L, h, w) come to host memory, where they are split and clamped.
  std::vector<float> moments(size_t(N) * 2 * L * h * w);
  if (!tiling) {
    DeviceBlock m(ctx_.device, moments.size() * 4);
    encode_whole(m.as<float>(), image, N, H, W, hook);
    ops::download(ctx_, moments.data(), m.as<float>(), int64_t(moments.size()));
  } else {
    const int C = cfg_.in_channels;
    tiled(moments.data(), Device::CPU, N, 2 * L, H, W, tile_size_ * f, 1, f, [&](float* dst, int i, int j, int th, int tw) {
      DeviceBlock window(ctx_.device, size_t(N) * C * th * tw * 4);
      DeviceBlock tile(ctx_.device, size_t(N) * 2 * L * (th / f) * (tw / f) * 4);
      ops::crop_pad2d(ctx_, window.as<float>(), image, N, C, H, W, i, j, th, tw);
      encode_whole(tile.as<float>(), window.as<float>(), N, th, tw, nullptr);
      ops::download(ctx_, dst, tile.as<float>(), int64_t(tile.bytes() / 4));
    });
  }
  // DiagonalGaussianDistribution: mean, logvar = chunk(moments, 2, dim=1); logvar clamped.
  const int64_t half = int64_t(L) * h * w;
  std::vector<float> lv(static_cast<size_t>(half));
  for (int n = 0; n < N; ++n) {
    const float* mo = moments.data() + n * 2 * half;
    ops::upload(ctx_, mean + n * half, mo, half);
    for (int64_t k = 0; k < half; ++k) lv[k] = std::clamp(mo[half + k], kLogvarMin, kLogvarMax);
    ops::upload(ctx_, logvar + n * half, lv.data(), half);
  }
}

void VAE::decode(float* out, const float* latents, int N, int h, int w, const ActivationHook& hook) {
  DBCORE_CHECK(N > 0 && h > 0 && w > 0, "EINVAL", "vae decode: latent size %dx%d must be positive", h, w);
  const bool tiling = is_tiled(h, w);
  DBCORE_CHECK(!(tiling && hook), "EINVAL", "vae decode: activations are not available in tiled mode");
  keep_.reset();
  work_.reset();
  if (!tiling) {
    decode_whole(out, latents, N, h, w, hook);
    return;
  }
  const int L = cfg_.latent_channels, f = scale_factor();
  tiled(out, ctx_.device, N, cfg_.out_channels, h, w, tile_size_, f, 1, [&](float* dst, int i, int j, int th, int tw) {
    DeviceBlock window(ctx_.device, size_t(N) * L * th * tw * 4);
    DeviceBlock tile(ctx_.device, size_t(N) * cfg_.out_channels * th * f * tw * f * 4);
    ops::crop_pad2d(ctx_, window.as<float>(), latents, N, L, h, w, i, j, th, tw);
    decode_whole(tile.as<float>(), window.as<float>(), N, th, tw, nullptr);
    ops::download(ctx_, dst, tile.as<float>(), int64_t(tile.bytes() / 4));
  });
}

}  // namespace dbcore
