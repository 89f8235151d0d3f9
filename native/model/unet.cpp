// UNet2DConditionModel forward / backward as a recorded tape of layer applications.
#include "unet.h"

#include <algorithm>

namespace dbcore {

void UNetConfig::validate() const {
  const size_t nb = block_out_channels.size();
  DBCORE_CHECK(nb > 0, "EINVAL", "unet config: block_out_channels is empty");
  DBCORE_CHECK(layers_per_block.size() == nb && down_cross_attention.size() == nb && up_cross_attention.size() == nb &&
                   heads.size() == nb && transformer_layers.size() == nb,
               "EINVAL", "unet config: per-block lists must all have %zu entries (one per block_out_channels)", nb);
  for (size_t i = 0; i < nb; ++i) {
    int c = block_out_channels[i];
    DBCORE_CHECK(c > 0 && c % norm_num_groups == 0, "EINVAL",
                 "unet config: block_out_channels[%zu] = %d is not a positive multiple of norm_num_groups %d", i, c,
                 norm_num_groups);
    DBCORE_CHECK(heads[i] > 0 && c % heads[i] == 0, "EINVAL",
                 "unet config: block %zu has %d channels, not divisible into %d attention heads", i, c, heads[i]);
    DBCORE_CHECK(layers_per_block[i] > 0 && transformer_layers[i] > 0, "EINVAL",
                 "unet config: layers_per_block and transformer_layers_per_block must be positive");
  }
  DBCORE_CHECK(conv_in_kernel % 2 == 1 && conv_out_kernel % 2 == 1, "EINVAL",
               "unet config: conv_in_kernel and conv_out_kernel must be odd");
  DBCORE_CHECK(in_channels > 0 && out_channels > 0 && cross_attention_dim > 0, "EINVAL",
               "unet config: channel counts must be positive");
}

UNet::UNet(const UNetConfig& config, ops::Context ctx) :
      cfg_(config), ctx_(ctx), store_(ParamTable()), keep_(ctx.device), work_(ctx.device) {
  cfg_.validate();
  declare_params();
}

// Parameter names and order as in diffusers' state dict.
void UNet::declare_params() {
  ParamTable t;
  const auto& boc = cfg_.block_out_channels;
  const int nb = int(boc.size()), groups = cfg_.norm_num_groups;
  const float eps = cfg_.norm_eps;
  temb_dim_ = cfg_.time_embedding_dim > 0 ? cfg_.time_embedding_dim : 4 * boc[0];
  conv_in_ = declare_conv(t, "conv_in", boc[0], cfg_.in_channels, cfg_.conv_in_kernel);
  lin1_ = declare_linear(t, "time_embedding.linear_1", temb_dim_, boc[0]);
  lin2_ = declare_linear(t, "time_embedding.linear_2", temb_dim_, temb_dim_);

  auto transformer = [&](Block& b, const std::string& name, int ch, int heads, int layers) {
    b.attentions.emplace_back();
    b.attentions.back().declare(t, name, ch, heads, ch / heads, layers, cfg_.cross_attention_dim, groups,
                                cfg_.use_linear_projection);
  };
  down_.assign(nb, Block{});
  int out_ch = boc[0];
  for (int i = 0; i < nb; ++i) {
    int in_ch = out_ch;
    out_ch = boc[i];
    Block& b = down_[i];
    b.channels = out_ch;
    std::string pre = "down_blocks." + std::to_string(i);
    for (int j = 0; j < cfg_.layers_per_block[i]; ++j) {
      if (cfg_.down_cross_attention[i])
        transformer(b, pre + ".attentions." + std::to_string(j), out_ch, cfg_.heads[i], cfg_.transformer_layers[i]);
    }
    for (int j = 0; j < cfg_.layers_per_block[i]; ++j) {
      b.resnets.emplace_back();
      b.resnets.back().declare(t, pre + ".resnets." + std::to_string(j), j == 0 ? in_ch : out_ch, out_ch, temb_dim_,
                               groups, eps, 1.f);
    }
    if (i < nb - 1) b.sampler = declare_conv(t, pre + ".downsamplers.0.conv", out_ch, out_ch, 3);
  }

  const int top = boc[nb - 1];
  mid_.channels = top;
  transformer(mid_, "mid_block.attentions.0", top, cfg_.heads[nb - 1], cfg_.transformer_layers[nb - 1]);
  for (int j = 0; j < 2; ++j) {
    mid_.resnets.emplace_back();
    mid_.resnets.back().declare(t, "mid_block.resnets." + std::to_string(j), top, top, temb_dim_, groups, eps,
                                cfg_.mid_block_scale_factor);
  }

  up_.assign(nb, Block{});
  int prev_out = top;
  for (int i = 0; i < nb; ++i) {
    const int r = nb - 1 - i;  // the down block this up block mirrors
    const int out = boc[r], in = boc[std::max(r - 1, 0)];
    const int layers = cfg_.layers_per_block[r] + 1;
    Block& b = up_[i];
    b.channels = out;
    std::string pre = "up_blocks." + std::to_string(i);
    for (int j = 0; j < layers; ++j) {
      if (cfg_.up_cross_attention[i])
        transformer(b, pre + ".attentions." + std::to_string(j), out, cfg_.heads[r], cfg_.transformer_layers[r]);
    }
    for (int j = 0; j < layers; ++j) {
      int skip = j == layers - 1 ? in : out;
      int res_in = j == 0 ? prev_out : out;
      b.resnets.emplace_back();
      b.resnets.back().declare(t, pre + ".resnets." + std::to_string(j), res_in + skip, out, temb_dim_, groups, eps,
                               1.f);
    }
    if (i < nb - 1) b.sampler = declare_conv(t, pre + ".upsamplers.0.conv", out, out, 3);
    prev_out = out;
  }
  norm_out_ = declare_norm(t, "conv_norm_out", boc[0]);
  conv_out_ = declare_conv(t, "conv_out", cfg_.out_channels, boc[0], cfg_.conv_out_kernel);
  store_ = ParamStore(std::move(t), ctx_.device);
}

// temb_act = silu(linear_2(silu(linear_1(sinusoidal(t))))): every resnet applies silu to the embedding first, so
// it is computed once here (ref: diffusers TimestepEmbedding, ResnetBlock2D's nonlinearity(temb)).
void UNet::time_embedding_forward(const Run& r, const float* timesteps) {
  const int C0 = cfg_.block_out_channels[0];
  float* tproj = keep(int64_t(N_) * C0);
  ops::timestep_embedding(ctx_, tproj, timesteps, N_, C0, cfg_.flip_sin_to_cos, cfg_.freq_shift, 1.f, 10000.f);
  tproj_ = tproj;
  e1_ = keep(int64_t(N_) * temb_dim_);
  e1a_ = keep(int64_t(N_) * temb_dim_);
  temb_ = keep(int64_t(N_) * temb_dim_);
  temb_act_ = keep(int64_t(N_) * temb_dim_);
  linear_forward(r, e1_, tproj_, lin1_, N_, C0, temb_dim_);
  ops::silu_forward(ctx_, e1a_, e1_, int64_t(N_) * temb_dim_);
  linear_forward(r, temb_, e1a_, lin2_, N_, temb_dim_, temb_dim_);
  ops::silu_forward(ctx_, temb_act_, temb_, int64_t(N_) * temb_dim_);
}

void UNet::tail_forward(const Run& r, float* out, const float* h, int C, int H, int W, const ActivationHook& hook) {
  const int64_t n = int64_t(N_) * C * H * W;
  const int G = cfg_.norm_num_groups;
  tail_in_ = h;
  tail_mean_ = keep(N_ * G);
  tail_rstd_ = keep(N_ * G);
  tail_a_ = keep(n);
  ops::groupnorm_silu_forward(ctx_, tail_a_, tail_mean_, tail_rstd_, h, r.p(norm_out_.w), r.p(norm_out_.b), N_, C,
                              H * W, G, cfg_.norm_eps);
  if (hook) {  // the fused op does not keep the normalized tensor: computed again for the hook only
    Arena::Mark m = work_.mark();
    float* normalized = work_.alloc_floats(n);
    ops::groupnorm_forward(ctx_, normalized, tail_mean_, tail_rstd_, h, r.p(norm_out_.w), r.p(norm_out_.b), N_, C,
                           H * W, G, cfg_.norm_eps);
    hook("conv_norm_out", normalized, {N_, C, H, W});
    work_.release(m);
    hook("conv_act", tail_a_, {N_, C, H, W});
  }
  const int k = cfg_.conv_out_kernel;
  conv_forward(r, out, tail_a_, conv_out_, {N_, C, H, W, cfg_.out_channels, k, k, 1, k / 2});
}

void UNet::forward(float* out, const float* sample, const float* timesteps, const float* context, int N, int H,
                   int W, int S, bool for_backward, const ActivationHook& hook) {
  // A forward that fails leaves nothing for backward: its tape, sizes and inputs are those of an earlier call.
  ready_for_backward_ = false;
  const int nb = int(cfg_.block_out_channels.size()), factor = 1 << (nb - 1);
  DBCORE_CHECK(N > 0 && S > 0 && H > 0 && W > 0 && H % factor == 0 && W % factor == 0, "EINVAL",
               "unet: latent size %dx%d must be a positive multiple of %d", H, W, factor);
  N_ = N; H_ = H; W_ = W; S_ = S;
  context_ = context;
  keep_.reset();
  work_.reset();
  tape_.clear();
  skip_sizes_.clear();
  Run r{ctx_, &store_, &keep_, &work_, for_backward, checkpointing_};

  time_embedding_forward(r, timesteps);
  if (hook) hook("time_proj", tproj_, {N, cfg_.block_out_channels[0]});
  if (hook) hook("time_embedding", temb_, {N, temb_dim_});

  const float* x = sample;
  if (cfg_.center_input_sample) {  // sample = 2 · sample − 1: 2 · sample, then a bias of −1 on every channel
    const int C0 = cfg_.in_channels;
    float* c = keep(int64_t(N) * C0 * H * W);
    float* minus_one = work_.alloc_floats(C0);
    ops::upload(ctx_, minus_one, std::vector<float>(C0, -1.f).data(), C0);
    ops::axpby(ctx_, c, 2.f, sample, 0.f, sample, int64_t(N) * C0 * H * W);
    ops::add_channel_bias(ctx_, c, minus_one, N, C0, H * W);
    x = c;
  }
  int C = cfg_.block_out_channels[0], h = H, w = W;
  float* cur = keep(int64_t(N) * C * h * w);
  const int kin = cfg_.conv_in_kernel;
  conv_forward(r, cur, x, conv_in_, {N, cfg_.in_channels, H, W, C, kin, kin, 1, kin / 2});
  record({Kind::ConvIn, x, cur, cfg_.in_channels, C, H, W});
  if (hook) hook("conv_in", cur, {N, C, H, W});
  std::vector<std::pair<const float*, int>> skips;  // (tensor, channels) of each res_sample
  auto push_skip = [&](const float* t, int c) {
    record({Kind::Skip, t, nullptr, c, c, h, w, nullptr, nullptr, nullptr, int(skips.size()), c});
    skips.push_back({t, c});
    skip_sizes_.push_back(int64_t(N) * c * h * w);
  };
  push_skip(cur, C);

  auto resnet = [&](ResnetBlock& rb) {
    float* y = keep(int64_t(N) * rb.out_channels() * h * w);
    rb.forward(r, y, cur, temb_act_, N, h, w);
    record({Kind::Resnet, cur, y, C, rb.out_channels(), h, w, &rb});
    cur = y;
    C = rb.out_channels();
  };
  auto attention = [&](Transformer2D& tb) {
    float* y = keep(int64_t(N) * C * h * w);
    tb.forward(r, y, cur, context, N, h, w, S);
    record({Kind::Attention, cur, y, C, C, h, w, nullptr, &tb});
    cur = y;
  };

  for (int i = 0; i < nb; ++i) {
    Block& b = down_[i];
    int first_skip = int(skips.size());
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      resnet(b.resnets[j]);
      if (!b.attentions.empty()) attention(b.attentions[j]);
      push_skip(cur, C);
    }
    if (b.sampler.w >= 0) {  // Downsample2D: 3x3 conv, stride 2, padding 1
      cpu::Conv2dShape s{N, C, h, w, C, 3, 3, 2, 1};
      float* y = keep(int64_t(N) * C * s.OH() * s.OW());
      conv_forward(r, y, cur, b.sampler, s);
      record({Kind::Downsample, cur, y, C, C, h, w, nullptr, nullptr, &b.sampler});
      cur = y;
      h = s.OH();
      w = s.OW();
      push_skip(cur, C);
    }
    if (hook) {
      hook("down_blocks." + std::to_string(i), cur, {N, C, h, w});
      for (int k = first_skip; k < int(skips.size()); ++k)
        hook("down_blocks." + std::to_string(i) + ".res_samples." + std::to_string(k - first_skip), skips[k].first,
             {N, skips[k].second, int64_t(skip_sizes_[k] / (int64_t(N) * skips[k].second) / w) , w});
    }
  }

  resnet(mid_.resnets[0]);
  attention(mid_.attentions[0]);
  resnet(mid_.resnets[1]);
  if (hook) hook("mid_block", cur, {N, C, h, w});

  for (int i = 0; i < nb; ++i) {
    Block& b = up_[i];
    for (size_t j = 0; j < b.resnets.size(); ++j) {
      auto [skip, cs] = skips.back();
      int k = int(skips.size()) - 1;
      skips.pop_back();
      float* cat = keep(int64_t(N) * (C + cs) * h * w);
      ops::concat_channels_forward(ctx_, cat, cur, skip, N, C, cs, h * w);
      record({Kind::Concat, cur, cat, C, C + cs, h, w, nullptr, nullptr, nullptr, k, cs});
      cur = cat;
      C += cs;
      resnet(b.resnets[j]);
      if (!b.attentions.empty()) attention(b.attentions[j]);
    }
    if (b.sampler.w >= 0) {  // Upsample2D: nearest 2x, then 3x3 conv
      float* u = keep(int64_t(N) * C * 4 * h * w);
      ops::upsample_nearest2x_forward(ctx_, u, cur, N, C, h, w);
      float* y = keep(int64_t(N) * C * 4 * h * w);
      conv_forward(r, y, u, b.sampler, {N, C, 2 * h, 2 * w, C, 3, 3, 1, 1});
      record({Kind::Upsample, u, y, C, C, h, w, nullptr, nullptr, &b.sampler});
      cur = y;
      h *= 2;
      w *= 2;
    }
    if (hook) hook("up_blocks." + std::to_string(i), cur, {N, C, h, w});
  }
  tail_forward(r, out, cur, C, h, w, hook);
  ready_for_backward_ = for_backward;
}

void UNet::tail_backward(const Run& r, float* dh, const float* dout) {
  const int C = cfg_.block_out_channels[0], k = cfg_.conv_out_kernel, G = cfg_.norm_num_groups;
  const int64_t n = int64_t(N_) * C * H_ * W_;
  Arena::Mark m = work_.mark();
  float* da = work_.alloc_floats(n);
  conv_backward(r, da, dout, tail_a_, conv_out_, {N_, C, H_, W_, cfg_.out_channels, k, k, 1, k / 2});
  ops::groupnorm_silu_backward(ctx_, dh, r.g(norm_out_.w), r.g(norm_out_.b), da, tail_in_, r.p(norm_out_.w),
                               r.p(norm_out_.b), tail_mean_, tail_rstd_, N_, C, H_ * W_, G);
  work_.release(m);
}

void UNet::time_embedding_backward(const Run& r) {
  const int C0 = cfg_.block_out_channels[0];
  const int64_t n = int64_t(N_) * temb_dim_;
  Arena::Mark m = work_.mark();
  float* dtemb = work_.alloc_floats(n);
  float* de1a = work_.alloc_floats(n);
  // temb_act_ now holds d loss / d temb_act (accumulated by every resnet): see backward().
  ops::silu_backward(ctx_, dtemb, temb_act_, temb_, n);
  linear_backward(r, de1a, dtemb, e1a_, lin2_, N_, temb_dim_, temb_dim_);
  ops::silu_backward(ctx_, de1a, de1a, e1_, n);
  linear_backward(r, nullptr, de1a, tproj_, lin1_, N_, C0, temb_dim_);
  work_.release(m);
}

// dx = d loss / d (step input) from dy = d loss / d (step output).
void UNet::step_backward(const Run& r, const Step& s, float* dx, const float* dy, std::vector<float*>& dskips) {
  const int HW = s.h_in * s.w_in;
  switch (s.kind) {
    case Kind::Resnet: s.resnet->backward(r, dx, dtemb_act_accum_, dy); break;
    case Kind::Attention: s.attention->backward(r, dx, dcontext_, dy); break;
    case Kind::Downsample:
      conv_backward(r, dx, dy, s.in, *s.conv, {N_, s.c_in, s.h_in, s.w_in, s.c_out, 3, 3, 2, 1});
      break;
    case Kind::Upsample: {
      Arena::Mark m = work_.mark();
      float* du = work_.alloc_floats(int64_t(N_) * s.c_in * 4 * HW);
      conv_backward(r, du, dy, s.in, *s.conv, {N_, s.c_in, 2 * s.h_in, 2 * s.w_in, s.c_out, 3, 3, 1, 1});
      ops::upsample_nearest2x_backward(ctx_, dx, du, N_, s.c_in, s.h_in, s.w_in);
      work_.release(m);
      break;
    }
    case Kind::Concat:
      ops::concat_channels_backward(ctx_, dx, dskips[s.skip], dy, N_, s.c_in, s.c_skip, HW);
      break;
    case Kind::ConvIn:
    case Kind::Skip: break;  // handled by backward()
  }
}

// Each layer's parameters are declared contiguously (a conv: weight, then its bias of c_out).
ParamRange UNet::step_params(const Step& s) const {
  switch (s.kind) {
    case Kind::Resnet: return s.resnet->params();
    case Kind::Attention: return s.attention->params();
    case Kind::Downsample:
    case Kind::Upsample: return {s.conv->w, s.conv->b + s.c_out};
    case Kind::ConvIn: return {conv_in_.w, conv_in_.b + s.c_out};
    case Kind::Concat:
    case Kind::Skip: break;
  }
  return {};
}

void UNet::backward(float* dsample, float* dcontext, const float* dout) {
  DBCORE_CHECK(ready_for_backward_, "ESTATE", "unet: backward() needs a forward(..., for_backward = true) first");
  ready_for_backward_ = false;
  Run r{ctx_, &store_, &keep_, &work_, true, checkpointing_};
  r.sink = sink_;
  if (!sink_) store_.grads();
  work_.reset();

  // Gradient buffers: two ping-pong buffers of the largest activation, one per skip tensor, and the time
  // embedding's accumulator, which reuses temb_act_ (silu(temb) is recomputable from temb).
  int64_t largest = 0;
  for (const Step& s : tape_) largest = std::max(largest, int64_t(N_) * std::max(s.c_in, s.c_out) * 4 * s.h_in * s.w_in);
  float* buf[2] = {work_.alloc_floats(largest), work_.alloc_floats(largest)};
  std::vector<float*> dskips;
  for (int64_t n : skip_sizes_) dskips.push_back(work_.alloc_floats(n));
  dtemb_act_accum_ = work_.alloc_floats(int64_t(N_) * temb_dim_);
  ops::fill_zero(ctx_, dtemb_act_accum_, int64_t(N_) * temb_dim_);
  dcontext_ = dcontext;
  if (dcontext_) ops::fill_zero(ctx_, dcontext_, int64_t(N_) * S_ * cfg_.cross_attention_dim);

  int cur = 0;
  r.begin_params({norm_out_.w, conv_out_.b + cfg_.out_channels});
  tail_backward(r, buf[cur], dout);
  r.end_params();
  for (auto it = tape_.rbegin(); it != tape_.rend(); ++it) {
    const Step& s = *it;
    const ParamRange params = step_params(s);
    if (params.size() > 0) r.begin_params(params);
    if (s.kind == Kind::Skip) {  // the skip tensor's gradient joins the main path where it was produced
      ops::add_inplace(ctx_, buf[cur], dskips[s.skip], int64_t(N_) * s.c_in * s.h_in * s.w_in);
    } else if (s.kind == Kind::ConvIn) {
      const int k = cfg_.conv_in_kernel;
      conv_backward(r, dsample, buf[cur], s.in, conv_in_, {N_, s.c_in, s.h_in, s.w_in, s.c_out, k, k, 1, k / 2});
    } else {
      step_backward(r, s, buf[1 - cur], buf[cur], dskips);
      cur = 1 - cur;
    }
    if (params.size() > 0) r.end_params();
  }
  if (dsample && cfg_.center_input_sample) ops::scale_inplace(ctx_, dsample, 2.f, int64_t(N_) * cfg_.in_channels * H_ * W_);
  // Time embedding: d temb_act accumulated by every resnet → linear_2, linear_1.
  ops::copy(ctx_, temb_act_, dtemb_act_accum_, int64_t(N_) * temb_dim_);
  r.begin_params({lin1_.w, lin2_.b + temb_dim_});
  time_embedding_backward(r);
  r.end_params();
  dcontext_ = nullptr;
}

}  // namespace dbcore
