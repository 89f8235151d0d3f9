// AutoencoderKL, Stable Diffusion's VAE, forward only (ref: diffusers AutoencoderKL with vae.py's Encoder / Decoder,
// DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D). encode: image → posterior mean and log-variance;
// decode: latents → image. Optional tiled mode: overlapping tiles blended linearly, exactly as diffusers'
// tiled_encode / tiled_decode, so the working set is bounded by the tile size rather than the image size.
// Dimension letters: N batch, C channels, H W image size, h w latent size (H / f, f = 2^(levels − 1)), L latent
// channels. Inference only: activations live in two ping-pong buffers of the largest layer plus the work arena.
#pragma once
#include <vector>

#include "blocks.h"
#include "run.h"  // ActivationHook

namespace dbcore {

// diffusers' AutoencoderKL config with its defaults resolved (ts/engine/vae-config.ts).
struct VAEConfig {
  int in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int> block_out_channels;
  int layers_per_block = 2;
  int norm_num_groups = 32;
  bool mid_block_add_attention = true;
  void validate() const;
};

class VAE {
 public:
  // 2^24 floats (64 MB): the im2col workspace of a 3x3 convolution over 512 channels at 64 x 64 (SD 1.5's VAE on a
  // 512 x 512 image) still runs in one band; larger ones run in bands of rows.
  static constexpr int64_t kDefaultConvWorkspace = int64_t(1) << 24;

  VAE(const VAEConfig& config, ops::Context ctx);
  const VAEConfig& config() const { return cfg_; }
  ParamStore& store() { return store_; }
  // Image pixels per latent pixel (8 for SD).
  int scale_factor() const { return 1 << (int(cfg_.block_out_channels.size()) - 1); }
  [[noreturn]] void set_gradient_checkpointing(bool);  // throws: the VAE has no backward
  size_t activation_bytes() const { return keep_.high_water() + work_.high_water(); }
  // Tile edge in latent pixels (a positive multiple of 4), or 0 for no tiling. An input that fits in one tile
  // runs untiled, as in diffusers.
  void set_tile_size(int latent_pixels);
  // Whether a call on latents of h x w (or the image they encode) runs tiled.
  bool is_tiled(int h, int w) const { return tile_size_ > 0 && (h > tile_size_ || w > tile_size_); }
  // See Run::conv_workspace_limit (floats, > 0).
  void set_conv_workspace_limit(int64_t floats);

  // mean, logvar (N, L, H/f, W/f) from image (N, in_channels, H, W); logvar clamped to [-30, 20] (ref:
  // DiagonalGaussianDistribution). H and W must be multiples of f. The hook sees encoder.down_blocks.{i},
  // encoder.mid_block and quant_conv (the moments, before the clamp); not in tiled mode.
  void encode(float* mean, float* logvar, const float* image, int N, int H, int W,
              const ActivationHook& hook = nullptr);
  // out (N, out_channels, h·f, w·f) = decoder(post_quant_conv(latents (N, L, h, w))). The hook sees
  // decoder.mid_block and decoder.up_blocks.{i}; not in tiled mode.
  void decode(float* out, const float* latents, int N, int h, int w, const ActivationHook& hook = nullptr);

 private:
  struct MidBlock {
    ResnetBlock resnets[2];
    WB norm, q, k, v, o;  // the attention (absent when mid_block_add_attention is false: norm.w = -1)
  };
  struct Level {
    std::vector<ResnetBlock> resnets;
    WB sampler;  // downsamplers.0.conv / upsamplers.0.conv (w = -1 when absent)
  };
  // (N, C, H, W) tile buffers of one row of tiles, kept for blending with the next row.
  struct Tile {
    std::vector<float> data;
    int h = 0, w = 0;
  };

  void declare_params();
  void declare_mid(ParamTable& t, MidBlock& m, const std::string& name, int C);
  Run run();
  void encode_whole(float* moments, const float* image, int N, int H, int W, const ActivationHook& hook);
  void decode_whole(float* out, const float* latents, int N, int h, int w, const ActivationHook& hook);
  void mid_forward(const Run& r, MidBlock& m, float*& x, float*& y, int N, int C, int H, int W);
  void attention_forward(const Run& r, const MidBlock& m, float* out, const float* x, int N, int C, int H, int W);
  void tail_forward(const Run& r, float* out, float* x, float* tmp, const WB& norm, const WB& conv, int N, int C,
                    int H, int W, int OC);
  int64_t largest_encoder_activation(int H, int W) const;
  int64_t largest_decoder_activation(int h, int w) const;
  // Runs `tile_fn(dst (N, C, th·num/den, tw·num/den), i, j, th, tw)` on every tile (origin i, j and size th x tw
  // in input pixels; dst is host memory, where tiles are blended) and assembles the (N, C, H·num/den, W·num/den)
  // result in `out` (on out_device) like diffusers' tiled_encode / tiled_decode.
  template <typename TileFn>
  void tiled(float* out, Device out_device, int N, int C, int H, int W, int tile_in, int num, int den, TileFn tile_fn);

  VAEConfig cfg_;
  ops::Context ctx_;
  ParamStore store_;
  WB enc_conv_in_, enc_norm_out_, enc_conv_out_, quant_conv_, post_quant_conv_, dec_conv_in_, dec_norm_out_,
      dec_conv_out_;
  std::vector<Level> down_, up_;
  MidBlock enc_mid_, dec_mid_;
  int tile_size_ = 0;
  int64_t conv_workspace_limit_ = kDefaultConvWorkspace;
  Arena keep_, work_;  // keep_: ping-pong activations; work_: temporaries (mark / release)
};

}  // namespace dbcore
