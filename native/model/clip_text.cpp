// CLIPTextModel forward / backward. ref: transformers CLIPTextTransformer, CLIPEncoderLayer, CLIPAttention,
// CLIPMLP. Rows M = B·T tokens, C = hidden_size, F = intermediate_size, NH heads of size D = C / NH.
#include "clip_text.h"

#include <cmath>
#include <cstring>

namespace dbcore {

void ClipTextConfig::validate() const {
  DBCORE_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers > 0 &&
                   max_position_embeddings > 0, "EINVAL", "text encoder config: sizes must be positive");
  DBCORE_CHECK(num_attention_heads > 0 && hidden_size % num_attention_heads == 0, "EINVAL",
               "text encoder config: hidden_size %d is not divisible by num_attention_heads %d", hidden_size,
               num_attention_heads);
  DBCORE_CHECK(hidden_act == "quick_gelu" || hidden_act == "gelu", "EINVAL",
               "text encoder config: hidden_act '%s' is not supported (quick_gelu or gelu)", hidden_act.c_str());
  DBCORE_CHECK(layer_norm_eps > 0, "EINVAL", "text encoder config: layer_norm_eps must be positive");
}

ClipTextModel::ClipTextModel(const ClipTextConfig& config, ops::Context ctx)
    : cfg_(config), ctx_(ctx), store_(ParamTable()), saved_(ctx.device), scratch_(ctx.device) {
  cfg_.validate();
  declare_params();
}

void ClipTextModel::declare_params() {
  ParamTable t;
  const int64_t C = cfg_.hidden_size, F = cfg_.intermediate_size;
  tok_emb_ = t.add("text_model.embeddings.token_embedding.weight", {cfg_.vocab_size, C});
  pos_emb_ = t.add("text_model.embeddings.position_embedding.weight", {cfg_.max_position_embeddings, C});
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    std::string pre = "text_model.encoder.layers." + std::to_string(l) + ".";
    LayerParams lp;
    auto linear = [&](const std::string& name, int64_t out, int64_t in, int64_t* w, int64_t* b) {
      *w = t.add(pre + name + ".weight", {out, in});
      *b = t.add(pre + name + ".bias", {out});
    };
    linear("self_attn.k_proj", C, C, &lp.k_w, &lp.k_b);
    linear("self_attn.v_proj", C, C, &lp.v_w, &lp.v_b);
    linear("self_attn.q_proj", C, C, &lp.q_w, &lp.q_b);
    linear("self_attn.out_proj", C, C, &lp.o_w, &lp.o_b);
    lp.ln1_w = t.add(pre + "layer_norm1.weight", {C});
    lp.ln1_b = t.add(pre + "layer_norm1.bias", {C});
    linear("mlp.fc1", F, C, &lp.fc1_w, &lp.fc1_b);
    linear("mlp.fc2", C, F, &lp.fc2_w, &lp.fc2_b);
    lp.ln2_w = t.add(pre + "layer_norm2.weight", {C});
    lp.ln2_b = t.add(pre + "layer_norm2.bias", {C});
    layers_.push_back(lp);
  }
  final_ln_w_ = t.add("text_model.final_layer_norm.weight", {C});
  final_ln_b_ = t.add("text_model.final_layer_norm.bias", {C});
  store_ = ParamStore(std::move(t), ctx_.device);
}

ClipTextModel::LayerActs ClipTextModel::alloc_acts(Arena& arena) const {
  const int64_t MC = int64_t(B_) * T_ * cfg_.hidden_size, MF = int64_t(B_) * T_ * cfg_.intermediate_size;
  const int64_t m = int64_t(B_) * T_;
  LayerActs a;
  a.ln1 = arena.alloc_floats(MC);
  a.mean1 = arena.alloc_floats(m);
  a.rstd1 = arena.alloc_floats(m);
  a.q = arena.alloc_floats(MC);
  a.k = arena.alloc_floats(MC);
  a.v = arena.alloc_floats(MC);
  a.attn = arena.alloc_floats(MC);
  a.lse = arena.alloc_floats(m * cfg_.num_attention_heads);
  a.x1 = arena.alloc_floats(MC);
  a.ln2 = arena.alloc_floats(MC);
  a.mean2 = arena.alloc_floats(m);
  a.rstd2 = arena.alloc_floats(m);
  a.fc1 = arena.alloc_floats(MF);
  a.act = arena.alloc_floats(MF);
  return a;
}

// y = x1 + fc2(act(fc1(ln2(x1)))), x1 = x + out_proj(attn(q, k, v of ln1(x))).
void ClipTextModel::layer_forward(const LayerParams& lp, float* y, const float* x, LayerActs& a) {
  const int m = M(), C = cfg_.hidden_size, F = cfg_.intermediate_size, NH = cfg_.num_attention_heads;
  const int D = C / NH;
  const float eps = cfg_.layer_norm_eps;
  ops::layernorm_forward(ctx_, a.ln1, a.mean1, a.rstd1, x, p(lp.ln1_w), p(lp.ln1_b), m, C, eps);
  ops::linear_forward(ctx_, a.q, a.ln1, p(lp.q_w), p(lp.q_b), m, C, C);
  ops::linear_forward(ctx_, a.k, a.ln1, p(lp.k_w), p(lp.k_b), m, C, C);
  ops::linear_forward(ctx_, a.v, a.ln1, p(lp.v_w), p(lp.v_b), m, C, C);
  ops::attention_forward(ctx_, a.attn, a.lse, a.q, a.k, a.v, B_, T_, T_, NH, D, 1.0f / std::sqrt(float(D)), true);
  ops::linear_forward(ctx_, a.x1, a.attn, p(lp.o_w), p(lp.o_b), m, C, C);
  ops::add(ctx_, a.x1, a.x1, x, int64_t(m) * C);
  ops::layernorm_forward(ctx_, a.ln2, a.mean2, a.rstd2, a.x1, p(lp.ln2_w), p(lp.ln2_b), m, C, eps);
  ops::linear_forward(ctx_, a.fc1, a.ln2, p(lp.fc1_w), p(lp.fc1_b), m, C, F);
  if (cfg_.hidden_act == "gelu")
    ops::gelu_forward(ctx_, a.act, a.fc1, int64_t(m) * F);
  else
    ops::quick_gelu_forward(ctx_, a.act, a.fc1, int64_t(m) * F);
  ops::linear_forward(ctx_, y, a.act, p(lp.fc2_w), p(lp.fc2_b), m, F, C);
  ops::add(ctx_, y, y, a.x1, int64_t(m) * C);
}

// dx = d loss / d x given dy = d loss / d y; parameter gradients +=. Temporaries come from scratch_.
void ClipTextModel::layer_backward(const LayerParams& lp, float* dx, const float* dy, const float* x,
                                   const LayerActs& a) {
  const int m = M(), C = cfg_.hidden_size, F = cfg_.intermediate_size, NH = cfg_.num_attention_heads;
  const int D = C / NH;
  const int64_t MC = int64_t(m) * C;
  float* dact = scratch_.alloc_floats(int64_t(m) * F);
  float* dfc1 = scratch_.alloc_floats(int64_t(m) * F);
  float* dx1 = scratch_.alloc_floats(MC);
  float* dtmp = scratch_.alloc_floats(MC);
  float* dln = scratch_.alloc_floats(MC);
  float *dq = scratch_.alloc_floats(MC), *dk = scratch_.alloc_floats(MC), *dv = scratch_.alloc_floats(MC);

  // MLP branch: y = x1 + fc2(act(fc1(ln2(x1)))).
  ops::linear_backward(ctx_, dact, g(lp.fc2_w), g(lp.fc2_b), dy, a.act, p(lp.fc2_w), m, F, C);
  if (cfg_.hidden_act == "gelu")
    ops::gelu_backward(ctx_, dfc1, dact, a.fc1, int64_t(m) * F);
  else
    ops::quick_gelu_backward(ctx_, dfc1, dact, a.fc1, int64_t(m) * F);
  ops::linear_backward(ctx_, dln, g(lp.fc1_w), g(lp.fc1_b), dfc1, a.ln2, p(lp.fc1_w), m, C, F);
  ops::layernorm_backward(ctx_, dx1, g(lp.ln2_w), g(lp.ln2_b), dln, a.x1, p(lp.ln2_w), a.mean2, a.rstd2, m, C);
  ops::add_inplace(ctx_, dx1, dy, MC);  // residual

  // Attention branch: x1 = x + out_proj(attention(q, k, v)).
  ops::linear_backward(ctx_, dtmp, g(lp.o_w), g(lp.o_b), dx1, a.attn, p(lp.o_w), m, C, C);
  ops::attention_backward(ctx_, dq, dk, dv, dtmp, a.q, a.k, a.v, a.attn, a.lse, B_, T_, T_, NH, D,
                          1.0f / std::sqrt(float(D)), true);
  ops::linear_backward(ctx_, dln, g(lp.q_w), g(lp.q_b), dq, a.ln1, p(lp.q_w), m, C, C);
  ops::linear_backward(ctx_, dtmp, g(lp.k_w), g(lp.k_b), dk, a.ln1, p(lp.k_w), m, C, C);
  ops::add_inplace(ctx_, dln, dtmp, MC);
  ops::linear_backward(ctx_, dtmp, g(lp.v_w), g(lp.v_b), dv, a.ln1, p(lp.v_w), m, C, C);
  ops::add_inplace(ctx_, dln, dtmp, MC);
  ops::layernorm_backward(ctx_, dx, g(lp.ln1_w), g(lp.ln1_b), dln, x, p(lp.ln1_w), a.mean1, a.rstd1, m, C);
  ops::add_inplace(ctx_, dx, dx1, MC);  // residual
}

void ClipTextModel::forward(float* out, const int32_t* ids, int B, int T, int clip_skip, bool for_backward,
                            const ActivationHook& hook) {
  ids_ = nullptr;  // set again when this forward completes: one that fails leaves nothing for backward
  DBCORE_CHECK(B > 0 && T > 0 && T <= cfg_.max_position_embeddings, "EINVAL",
               "text encoder: %d tokens per prompt (1..%d allowed)", T, cfg_.max_position_embeddings);
  DBCORE_CHECK(clip_skip >= 1 && clip_skip <= cfg_.num_hidden_layers, "EINVAL",
               "text encoder: clip_skip %d out of range 1..%d", clip_skip, cfg_.num_hidden_layers);
  const int C = cfg_.hidden_size;
  B_ = B;
  T_ = T;
  layers_run_ = cfg_.num_hidden_layers - (clip_skip - 1);
  const int64_t MC = int64_t(M()) * C;
  saved_.reset();
  scratch_.reset();

  // Embeddings: token rows plus position rows 0..T-1 for every prompt.
  hidden_.assign(layers_run_ + 1, nullptr);
  for (int l = 0; l <= layers_run_; ++l) hidden_[l] = saved_.alloc_floats(MC);
  ops::embedding_forward(ctx_, hidden_[0], ids, p(tok_emb_), M(), C, cfg_.vocab_size);
  for (int b = 0; b < B; ++b)
    ops::add_inplace(ctx_, hidden_[0] + int64_t(b) * T * C, p(pos_emb_), int64_t(T) * C);
  if (hook) hook("embeddings", hidden_[0], {B, T, C});

  const bool keep = for_backward && !checkpointing_;
  acts_.clear();
  for (int l = 0; l < layers_run_; ++l) {
    LayerActs a = alloc_acts(keep ? saved_ : scratch_);
    layer_forward(layers_[l], hidden_[l + 1], hidden_[l], a);
    if (keep) acts_.push_back(a);
    else scratch_.reset();
    if (hook) hook("encoder.layers." + std::to_string(l), hidden_[l + 1], {B, T, C});
  }
  final_mean_ = saved_.alloc_floats(M());
  final_rstd_ = saved_.alloc_floats(M());
  ops::layernorm_forward(ctx_, out, final_mean_, final_rstd_, hidden_[layers_run_], p(final_ln_w_),
                         p(final_ln_b_), M(), C, cfg_.layer_norm_eps);
  if (for_backward) ids_ = ids;
}

void ClipTextModel::backward(const float* dout) {
  DBCORE_CHECK(ids_ != nullptr, "ESTATE", "text encoder: backward() without a forward(for_backward=true)");
  const int C = cfg_.hidden_size;
  const int64_t MC = int64_t(M()) * C;
  scratch_.reset();
  if (!sink_) store_.grads();
  float* dh = saved_.alloc_floats(MC);
  float* dh_prev = saved_.alloc_floats(MC);
  begin_params(final_ln_w_, final_ln_b_ + C);
  ops::layernorm_backward(ctx_, dh, g(final_ln_w_), g(final_ln_b_), dout, hidden_[layers_run_], p(final_ln_w_),
                          final_mean_, final_rstd_, M(), C);
  end_params();
  for (int l = layers_run_ - 1; l >= 0; --l) {
    scratch_.reset();
    const LayerParams& lp = layers_[l];
    begin_params(lp.k_w, lp.ln2_b + C);  // k_proj is declared first, layer_norm2 last
    LayerActs a;
    if (checkpointing_) {  // recompute this layer's activations from its saved input
      a = alloc_acts(scratch_);
      float* y = scratch_.alloc_floats(MC);
      layer_forward(layers_[l], y, hidden_[l], a);
    } else {
      a = acts_[l];
    }
    layer_backward(lp, dh_prev, dh, hidden_[l], a);
    end_params();
    std::swap(dh, dh_prev);
  }
  // Embeddings: token rows accumulate per id, position rows sum over the batch.
  begin_params(tok_emb_, pos_emb_ + int64_t(cfg_.max_position_embeddings) * C);
  ops::embedding_backward(ctx_, g(tok_emb_), dh, ids_, M(), C);
  for (int b = 0; b < B_; ++b) ops::add_inplace(ctx_, g(pos_emb_), dh + int64_t(b) * T_ * C, int64_t(T_) * C);
  end_params();
  ids_ = nullptr;
}

}  // namespace dbcore
