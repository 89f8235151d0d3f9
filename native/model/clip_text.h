// CLIPTextModel (ref: transformers CLIPTextModel; openai/CLIP's text tower): token + position embeddings,
// pre-LN transformer layers with causal self-attention and an MLP (quick_gelu or gelu), final LayerNorm.
// Forward and backward; optional gradient checkpointing (each layer keeps only its input and recomputes the
// rest in backward, giving bit-identical gradients on the CPU).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/arena.h"
#include "ops/ops.h"
#include "params.h"
#include "run.h"  // ActivationHook: "embeddings", "encoder.layers.{i}"

namespace dbcore {

struct ClipTextConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // quick_gelu (SD 1.x) or gelu (SD 2.x OpenCLIP)
  float layer_norm_eps = 1e-5f;
  void validate() const;  // throws EINVAL naming the field
};


class ClipTextModel {
 public:
  ClipTextModel(const ClipTextConfig& config, ops::Context ctx);

  const ClipTextConfig& config() const { return cfg_; }
  ParamStore& store() { return store_; }
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  void set_compute_precision(Precision p) { ctx_.precision = p; }
  // Where backward puts parameter gradients (grad_sink.h); null: the store's fp32 block.
  void set_gradient_sink(GradientSink* sink) { sink_ = sink; }
  size_t activation_bytes() const { return saved_.high_water() + scratch_.high_water(); }

  // out (B, T, C): final_layer_norm of the hidden state after the first num_hidden_layers - (clip_skip - 1)
  // layers (clip_skip as the web UIs define it: 1 = last layer). ids (B, T), T <= max_position_embeddings.
  // With `for_backward`, keeps what backward() needs (ids must stay alive until then).
  void forward(float* out, const int32_t* ids, int B, int T, int clip_skip, bool for_backward,
               const ActivationHook& hook = nullptr);
  // Accumulates parameter gradients (+=) for d loss / d out (B, T, C) of the last forward(for_backward=true).
  void backward(const float* dout);

 private:
  struct LayerParams {  // offsets into the parameter block
    int64_t ln1_w, ln1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  struct LayerActs {  // what one layer's backward needs; M = B·T rows, C hidden, F intermediate
    float *ln1, *mean1, *rstd1;     // (M, C), (M), (M)
    float *q, *k, *v, *attn, *lse;  // (M, C) ×4, (B, NH, T)
    float *x1;                      // (M, C) residual after attention
    float *ln2, *mean2, *rstd2;     // (M, C), (M), (M)
    float *fc1, *act;               // (M, F) ×2
  };

  void declare_params();
  LayerActs alloc_acts(Arena& arena) const;
  void layer_forward(const LayerParams& lp, float* y, const float* x, LayerActs& a);
  void layer_backward(const LayerParams& lp, float* dx, const float* dy, const float* x, const LayerActs& a);
  float* p(int64_t offset) { return store_.param(offset); }
  float* g(int64_t offset) { return sink_ ? sink_->grad(offset) : store_.grad(offset); }
  // Brackets the backward of parameters [first, end) (grad_sink.h); temporaries come after the scratch.
  void begin_params(int64_t first, int64_t end) {
    if (sink_) sink_->begin(scratch_, {first, end});
  }
  void end_params() {
    if (sink_) sink_->end();
  }
  int M() const { return B_ * T_; }

  ClipTextConfig cfg_;
  ops::Context ctx_;
  ParamStore store_;
  std::vector<LayerParams> layers_;
  int64_t tok_emb_ = 0, pos_emb_ = 0, final_ln_w_ = 0, final_ln_b_ = 0;
  bool checkpointing_ = false;
  GradientSink* sink_ = nullptr;

  // State of the last forward(for_backward = true).
  Arena saved_, scratch_;
  int B_ = 0, T_ = 0, layers_run_ = 0;
  const int32_t* ids_ = nullptr;
  std::vector<float*> hidden_;  // hidden_[l] = input of layer l (B·T, C); hidden_[layers_run_] = last output
  std::vector<LayerActs> acts_;  // per layer, empty with checkpointing
  float *final_mean_ = nullptr, *final_rstd_ = nullptr;
};

}  // namespace dbcore
