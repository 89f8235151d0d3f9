#include "blocks.h"

#include <cmath>

namespace dbcore {

namespace {
// Runs a block's forward on a copy of `inputs` and returns what its backward needs: every saved activation while
// training without checkpointing; otherwise only the inputs (the activations' memory is released: with
// checkpointing backward recomputes them, at inference nothing needs them).
template <typename Saved, typename Compute>
Saved run_and_keep(const Run& r, const Saved& inputs, Compute compute) {
  Saved s = inputs;
  Arena::Mark m = r.work->mark();
  compute(s);
  if (r.training && !r.checkpointing) return s;
  r.work->release(m);
  return inputs;
}
}  // namespace

// ---- ResnetBlock -----------------------------------------------------------------------------------------

void ResnetBlock::declare(ParamTable& t, const std::string& name, int in, int out, int temb_channels, int groups,
                          float eps, float output_scale_factor) {
  in_ = in;
  out_ = out;
  temb_ = temb_channels;
  groups_ = groups;
  eps_ = eps;
  scale_ = output_scale_factor;
  range_.begin = t.total();
  norm1_ = declare_norm(t, name + ".norm1", in);
  conv1_ = declare_conv(t, name + ".conv1", out, in, 3);
  if (temb_channels > 0) temb_proj_ = declare_linear(t, name + ".time_emb_proj", out, temb_channels);
  norm2_ = declare_norm(t, name + ".norm2", out);
  conv2_ = declare_conv(t, name + ".conv2", out, out, 3);
  if (in != out) shortcut_ = declare_conv(t, name + ".conv_shortcut", out, in, 1);
  range_.end = t.total();
}

void ResnetBlock::compute(const Run& r, float* out, Saved& s) {
  const int HW = H_ * W_;
  const int64_t n_in = int64_t(N_) * in_ * HW, n_out = int64_t(N_) * out_ * HW;
  Arena& a = r.acts_arena();
  s.mean1 = a.alloc_floats(N_ * groups_);
  s.rstd1 = a.alloc_floats(N_ * groups_);
  s.a1 = a.alloc_floats(n_in);
  s.h1 = a.alloc_floats(n_out);
  s.mean2 = a.alloc_floats(N_ * groups_);
  s.rstd2 = a.alloc_floats(N_ * groups_);
  s.a2 = a.alloc_floats(n_out);

  ops::groupnorm_silu_forward(r.ctx, s.a1, s.mean1, s.rstd1, s.x, r.p(norm1_.w), r.p(norm1_.b), N_, in_, HW, groups_,
                              eps_);
  conv_forward(r, s.h1, s.a1, conv1_, conv_shape(in_, out_, 3));
  if (temb_ > 0 && s.temb_act) {
    Arena::Mark m = r.work->mark();
    float* t = r.work->alloc_floats(int64_t(N_) * out_);  // (N, out)
    linear_forward(r, t, s.temb_act, temb_proj_, N_, temb_, out_);
    ops::add_channel_bias(r.ctx, s.h1, t, N_, out_, HW);
    r.work->release(m);
  }
  ops::groupnorm_silu_forward(r.ctx, s.a2, s.mean2, s.rstd2, s.h1, r.p(norm2_.w), r.p(norm2_.b), N_, out_, HW, groups_,
                              eps_);
  conv_forward(r, out, s.a2, conv2_, conv_shape(out_, out_, 3));
  if (shortcut_.w >= 0) {
    Arena::Mark m = r.work->mark();
    float* sc = r.work->alloc_floats(n_out);
    conv_forward(r, sc, s.x, shortcut_, conv_shape(in_, out_, 1));
    ops::add(r.ctx, out, out, sc, n_out);
    r.work->release(m);
  } else {
    ops::add(r.ctx, out, out, s.x, n_out);
  }
  if (scale_ != 1.f) ops::scale_inplace(r.ctx, out, 1.f / scale_, n_out);
}

void ResnetBlock::forward(const Run& r, float* out, const float* x, const float* temb_act, int N, int H, int W) {
  N_ = N;
  H_ = H;
  W_ = W;
  Saved inputs;
  inputs.x = x;
  inputs.temb_act = temb_act;
  saved_ = run_and_keep(r, inputs, [&](Saved& s) { compute(r, out, s); });
}

void ResnetBlock::backward(const Run& r, float* dx, float* dtemb_act, const float* dout) {
  const int HW = H_ * W_;
  const int64_t n_in = int64_t(N_) * in_ * HW, n_out = int64_t(N_) * out_ * HW;
  Arena::Mark m = r.work->mark();
  Saved s = saved_;
  if (r.checkpointing) {  // recompute this block's activations from its input
    float* y = r.work->alloc_floats(n_out);
    compute(r, y, s);
  }
  // out = (shortcut + conv2(...)) / scale: both branches see dout / scale.
  const float* d = dout;
  if (scale_ != 1.f) {
    float* ds = r.work->alloc_floats(n_out);
    ops::axpby(r.ctx, ds, 1.f / scale_, dout, 0.f, dout, n_out);
    d = ds;
  }
  float* dh = r.work->alloc_floats(n_out);  // first the gradient of a2, then (in place) of h1
  float* da1 = r.work->alloc_floats(n_in);
  conv_backward(r, dh, d, s.a2, conv2_, conv_shape(out_, out_, 3));
  ops::groupnorm_silu_backward(r.ctx, dh, r.g(norm2_.w), r.g(norm2_.b), dh, s.h1, r.p(norm2_.w), r.p(norm2_.b),
                               s.mean2, s.rstd2, N_, out_, HW, groups_);
  if (temb_ > 0 && s.temb_act) {
    float* dt = r.work->alloc_floats(int64_t(N_) * out_);
    ops::sum_over_hw(r.ctx, dt, dh, N_, out_, HW);
    float* dtemb = r.work->alloc_floats(int64_t(N_) * temb_);
    linear_backward(r, dtemb, dt, s.temb_act, temb_proj_, N_, temb_, out_);
    if (dtemb_act) ops::add_inplace(r.ctx, dtemb_act, dtemb, int64_t(N_) * temb_);
  }
  conv_backward(r, da1, dh, s.a1, conv1_, conv_shape(in_, out_, 3));
  ops::groupnorm_silu_backward(r.ctx, dx, r.g(norm1_.w), r.g(norm1_.b), da1, s.x, r.p(norm1_.w), r.p(norm1_.b),
                               s.mean1, s.rstd1, N_, in_, HW, groups_);
  if (shortcut_.w >= 0) {
    float* dsc = r.work->alloc_floats(n_in);
    conv_backward(r, dsc, d, s.x, shortcut_, conv_shape(in_, out_, 1));
    ops::add_inplace(r.ctx, dx, dsc, n_in);
  } else {
    ops::add_inplace(r.ctx, dx, d, n_in);
  }
  r.work->release(m);
}

// ---- Transformer2D ---------------------------------------------------------------------------------------

void Transformer2D::declare(ParamTable& t, const std::string& name, int channels, int heads, int head_dim,
                            int layers, int cross_dim, int groups, bool linear_projection) {
  C_ = channels;
  heads_ = heads;
  head_dim_ = head_dim;
  inner_ = heads * head_dim;
  cross_ = cross_dim > 0 ? cross_dim : inner_;
  groups_ = groups;
  range_.begin = t.total();
  norm_ = declare_norm(t, name + ".norm", C_);
  auto proj = [&](const std::string& n, int out, int in) {
    return linear_projection ? declare_linear(t, n, out, in) : declare_conv(t, n, out, in, 1);
  };
  proj_in_ = proj(name + ".proj_in", inner_, C_);
  blocks_.clear();
  for (int l = 0; l < layers; ++l) {
    std::string b = name + ".transformer_blocks." + std::to_string(l);
    BlockParams bp;
    bp.norm1 = declare_norm(t, b + ".norm1", inner_);
    bp.q1 = declare_linear(t, b + ".attn1.to_q", inner_, inner_, false);
    bp.k1 = declare_linear(t, b + ".attn1.to_k", inner_, inner_, false);
    bp.v1 = declare_linear(t, b + ".attn1.to_v", inner_, inner_, false);
    bp.o1 = declare_linear(t, b + ".attn1.to_out.0", inner_, inner_);
    bp.norm2 = declare_norm(t, b + ".norm2", inner_);
    bp.q2 = declare_linear(t, b + ".attn2.to_q", inner_, inner_, false);
    bp.k2 = declare_linear(t, b + ".attn2.to_k", inner_, cross_, false);
    bp.v2 = declare_linear(t, b + ".attn2.to_v", inner_, cross_, false);
    bp.o2 = declare_linear(t, b + ".attn2.to_out.0", inner_, inner_);
    bp.norm3 = declare_norm(t, b + ".norm3", inner_);
    bp.ff1 = declare_linear(t, b + ".ff.net.0.proj", 8 * inner_, inner_);  // GEGLU: 2 × (4·inner)
    bp.ff2 = declare_linear(t, b + ".ff.net.2", inner_, 4 * inner_);
    blocks_.push_back(bp);
  }
  proj_out_ = proj(name + ".proj_out", C_, inner_);
  range_.end = t.total();
}

// h1 = h + attn1(norm1(h)); h2 = h1 + attn2(norm2(h1), context); y = h2 + ff(norm3(h2)).
void Transformer2D::block_forward(const Run& r, const BlockParams& bp, float* y, BlockSaved& b,
                                  const float* context) {
  const int m = M(), C = inner_, HW = H_ * W_, ms = N_ * S_;
  const int64_t MC = int64_t(m) * C, MS = int64_t(ms) * C, MF = int64_t(m) * 4 * C;
  const float scale = 1.0f / std::sqrt(float(head_dim_));
  Arena& a = r.acts_arena();
  auto alloc = [&](int64_t n) { return a.alloc_floats(n); };
  b.l1 = alloc(MC); b.mean1 = alloc(m); b.rstd1 = alloc(m);
  b.q1 = alloc(MC); b.k1 = alloc(MC); b.v1 = alloc(MC); b.a1 = alloc(MC); b.lse1 = alloc(int64_t(m) * heads_);
  b.h1 = alloc(MC);
  b.l2 = alloc(MC); b.mean2 = alloc(m); b.rstd2 = alloc(m);
  b.q2 = alloc(MC); b.k2 = alloc(MS); b.v2 = alloc(MS); b.a2 = alloc(MC); b.lse2 = alloc(int64_t(m) * heads_);
  b.h2 = alloc(MC);
  b.l3 = alloc(MC); b.mean3 = alloc(m); b.rstd3 = alloc(m);
  b.f = alloc(2 * MF); b.gg = alloc(MF);

  ops::layernorm_forward(r.ctx, b.l1, b.mean1, b.rstd1, b.h, r.p(bp.norm1.w), r.p(bp.norm1.b), m, C, 1e-5f);
  linear_forward(r, b.q1, b.l1, bp.q1, m, C, C);
  linear_forward(r, b.k1, b.l1, bp.k1, m, C, C);
  linear_forward(r, b.v1, b.l1, bp.v1, m, C, C);
  ops::attention_forward(r.ctx, b.a1, b.lse1, b.q1, b.k1, b.v1, N_, HW, HW, heads_, head_dim_, scale, false);
  linear_forward(r, b.h1, b.a1, bp.o1, m, C, C);
  ops::add(r.ctx, b.h1, b.h1, b.h, MC);

  ops::layernorm_forward(r.ctx, b.l2, b.mean2, b.rstd2, b.h1, r.p(bp.norm2.w), r.p(bp.norm2.b), m, C, 1e-5f);
  linear_forward(r, b.q2, b.l2, bp.q2, m, C, C);
  linear_forward(r, b.k2, context, bp.k2, ms, cross_, C);
  linear_forward(r, b.v2, context, bp.v2, ms, cross_, C);
  ops::attention_forward(r.ctx, b.a2, b.lse2, b.q2, b.k2, b.v2, N_, HW, S_, heads_, head_dim_, scale, false);
  linear_forward(r, b.h2, b.a2, bp.o2, m, C, C);
  ops::add(r.ctx, b.h2, b.h2, b.h1, MC);

  ops::layernorm_forward(r.ctx, b.l3, b.mean3, b.rstd3, b.h2, r.p(bp.norm3.w), r.p(bp.norm3.b), m, C, 1e-5f);
  linear_forward(r, b.f, b.l3, bp.ff1, m, C, 8 * C);
  ops::geglu_forward(r.ctx, b.gg, b.f, m, 4 * C);
  linear_forward(r, y, b.gg, bp.ff2, m, 4 * C, C);
  ops::add(r.ctx, y, y, b.h2, MC);
}

void Transformer2D::block_backward(const Run& r, const BlockParams& bp, float* dh, float* dcontext,
                                   const float* dy, const BlockSaved& b, const float* context) {
  const int m = M(), C = inner_, HW = H_ * W_, ms = N_ * S_;
  const int64_t MC = int64_t(m) * C, MS = int64_t(ms) * C, MF = int64_t(m) * 4 * C;
  const float scale = 1.0f / std::sqrt(float(head_dim_));
  Arena::Mark mk = r.work->mark();
  auto alloc = [&](int64_t n) { return r.work->alloc_floats(n); };
  float *dgg = alloc(MF), *df = alloc(2 * MF), *dl = alloc(MC), *dh2 = alloc(MC), *dh1 = alloc(MC);
  float *da = alloc(MC), *dq = alloc(MC), *dk = alloc(MC), *dv = alloc(MC);
  float *dks = alloc(MS), *dvs = alloc(MS), *dctx = alloc(int64_t(ms) * cross_), *tmp = alloc(MC);

  // Feed-forward: y = h2 + ff2(geglu(ff1(norm3(h2)))).
  linear_backward(r, dgg, dy, b.gg, bp.ff2, m, 4 * C, C);
  ops::geglu_backward(r.ctx, df, dgg, b.f, m, 4 * C);
  linear_backward(r, dl, df, b.l3, bp.ff1, m, C, 8 * C);
  ops::layernorm_backward(r.ctx, dh2, r.g(bp.norm3.w), r.g(bp.norm3.b), dl, b.h2, r.p(bp.norm3.w), b.mean3, b.rstd3,
                          m, C);
  ops::add_inplace(r.ctx, dh2, dy, MC);

  // Cross-attention: h2 = h1 + o2(attn(q2(norm2(h1)), k2(ctx), v2(ctx))).
  linear_backward(r, da, dh2, b.a2, bp.o2, m, C, C);
  ops::attention_backward(r.ctx, dq, dks, dvs, da, b.q2, b.k2, b.v2, b.a2, b.lse2, N_, HW, S_, heads_, head_dim_,
                          scale, false);
  linear_backward(r, dl, dq, b.l2, bp.q2, m, C, C);
  linear_backward(r, dctx, dks, context, bp.k2, ms, cross_, C);
  if (dcontext) ops::add_inplace(r.ctx, dcontext, dctx, int64_t(ms) * cross_);
  linear_backward(r, dctx, dvs, context, bp.v2, ms, cross_, C);
  if (dcontext) ops::add_inplace(r.ctx, dcontext, dctx, int64_t(ms) * cross_);
  ops::layernorm_backward(r.ctx, dh1, r.g(bp.norm2.w), r.g(bp.norm2.b), dl, b.h1, r.p(bp.norm2.w), b.mean2, b.rstd2,
                          m, C);
  ops::add_inplace(r.ctx, dh1, dh2, MC);

  // Self-attention: h1 = h + o1(attn(q1, k1, v1 of norm1(h))).
  linear_backward(r, da, dh1, b.a1, bp.o1, m, C, C);
  ops::attention_backward(r.ctx, dq, dk, dv, da, b.q1, b.k1, b.v1, b.a1, b.lse1, N_, HW, HW, heads_, head_dim_,
                          scale, false);
  linear_backward(r, dl, dq, b.l1, bp.q1, m, C, C);
  linear_backward(r, tmp, dk, b.l1, bp.k1, m, C, C);
  ops::add_inplace(r.ctx, dl, tmp, MC);
  linear_backward(r, tmp, dv, b.l1, bp.v1, m, C, C);
  ops::add_inplace(r.ctx, dl, tmp, MC);
  ops::layernorm_backward(r.ctx, dh, r.g(bp.norm1.w), r.g(bp.norm1.b), dl, b.h, r.p(bp.norm1.w), b.mean1, b.rstd1,
                          m, C);
  ops::add_inplace(r.ctx, dh, dh1, MC);
  r.work->release(mk);
}

// out = x + nchw(proj_out(blocks(proj_in(nhwc(groupnorm(x)))))).
void Transformer2D::compute(const Run& r, float* out, Saved& s) {
  const int m = M(), HW = H_ * W_;
  Arena& a = r.acts_arena();
  s.gn = a.alloc_floats(int64_t(m) * C_);
  s.mean = a.alloc_floats(N_ * groups_);
  s.rstd = a.alloc_floats(N_ * groups_);
  s.tok = a.alloc_floats(int64_t(m) * C_);
  s.h0 = a.alloc_floats(int64_t(m) * inner_);
  // GroupNorm eps is fixed at 1e-6 in diffusers' Transformer2DModel.
  ops::groupnorm_forward(r.ctx, s.gn, s.mean, s.rstd, s.x, r.p(norm_.w), r.p(norm_.b), N_, C_, HW, groups_, 1e-6f);
  ops::nchw_to_nhwc(r.ctx, s.tok, s.gn, N_, C_, HW);
  linear_forward(r, s.h0, s.tok, proj_in_, m, C_, inner_);
  s.blocks.assign(blocks_.size(), BlockSaved{});
  const float* h = s.h0;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    s.blocks[l].h = h;
    float* y = a.alloc_floats(int64_t(m) * inner_);
    block_forward(r, blocks_[l], y, s.blocks[l], s.context);
    h = y;
  }
  s.h_last = h;
  s.proj = a.alloc_floats(int64_t(m) * C_);
  linear_forward(r, s.proj, h, proj_out_, m, inner_, C_);
  ops::nhwc_to_nchw(r.ctx, out, s.proj, N_, C_, HW);
  ops::add(r.ctx, out, out, s.x, int64_t(m) * C_);
}

void Transformer2D::forward(const Run& r, float* out, const float* x, const float* context, int N, int H, int W,
                            int S) {
  N_ = N;
  H_ = H;
  W_ = W;
  S_ = S;
  Saved inputs;
  inputs.x = x;
  inputs.context = context;
  saved_ = run_and_keep(r, inputs, [&](Saved& s) { compute(r, out, s); });
}

void Transformer2D::backward(const Run& r, float* dx, float* dcontext, const float* dout) {
  const int m = M(), HW = H_ * W_;
  Arena::Mark mk = r.work->mark();
  Saved s = saved_;
  if (r.checkpointing) compute(r, r.work->alloc_floats(int64_t(m) * C_), s);
  float* dproj = r.work->alloc_floats(int64_t(m) * C_);
  float* dh = r.work->alloc_floats(int64_t(m) * inner_);
  float* dh_prev = r.work->alloc_floats(int64_t(m) * inner_);
  ops::nchw_to_nhwc(r.ctx, dproj, dout, N_, C_, HW);
  linear_backward(r, dh, dproj, s.h_last, proj_out_, m, inner_, C_);
  for (int l = int(blocks_.size()) - 1; l >= 0; --l) {
    block_backward(r, blocks_[l], dh_prev, dcontext, dh, s.blocks[l], s.context);
    std::swap(dh, dh_prev);
  }
  float* dtok = dproj;  // reuse: (M, C)
  linear_backward(r, dtok, dh, s.tok, proj_in_, m, C_, inner_);
  float* dgn = r.work->alloc_floats(int64_t(m) * C_);
  ops::nhwc_to_nchw(r.ctx, dgn, dtok, N_, C_, HW);
  ops::groupnorm_backward(r.ctx, dx, r.g(norm_.w), r.g(norm_.b), dgn, s.x, r.p(norm_.w), s.mean, s.rstd, N_, C_, HW,
                          groups_);
  ops::add_inplace(r.ctx, dx, dout, int64_t(m) * C_);  // residual
  r.work->release(mk);
}

}  // namespace dbcore
