// UNet2DConditionModel, the SD 1.x / 2.x family (ref: diffusers UNet2DConditionModel with CrossAttnDownBlock2D,
// DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D). Forward and backward, gradient
// checkpointing per resnet / transformer block.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "blocks.h"

namespace dbcore {

// The config after diffusers' defaults and quirks are resolved (per-block lists; heads = diffusers'
// `num_attention_heads or attention_head_dim`, reversed for the up path).
struct UNetConfig {
  int in_channels = 4, out_channels = 4;
  std::vector<int> block_out_channels;
  std::vector<int> layers_per_block;          // per down block
  std::vector<bool> down_cross_attention;     // CrossAttnDownBlock2D (true) or DownBlock2D
  std::vector<bool> up_cross_attention;       // CrossAttnUpBlock2D (true) or UpBlock2D
  std::vector<int> heads;                     // per down block (the up path uses them reversed)
  std::vector<int> transformer_layers;        // per down block
  int cross_attention_dim = 768;
  bool use_linear_projection = false;
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool flip_sin_to_cos = true;
  float freq_shift = 0.f;
  float mid_block_scale_factor = 1.f;
  int conv_in_kernel = 3, conv_out_kernel = 3;
  int time_embedding_dim = 0;  // 0: 4 × block_out_channels[0]
  bool center_input_sample = false;
  void validate() const;
};


class UNet {
 public:
  UNet(const UNetConfig& config, ops::Context ctx);
  const UNetConfig& config() const { return cfg_; }
  ParamStore& store() { return store_; }
  const ops::Context& context() const { return ctx_; }
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  void set_compute_precision(Precision p) { ctx_.precision = p; }
  // Where backward puts parameter gradients (grad_sink.h); null: the store's fp32 block.
  void set_gradient_sink(GradientSink* sink) { sink_ = sink; }
  // Most activation and workspace memory any forward/backward so far has used (the arenas' high-water marks).
  size_t activation_bytes() const { return keep_.high_water() + work_.high_water(); }

  // out (N, out_channels, H, W) = unet(sample (N, in_channels, H, W), timesteps (N), context (N, S, cross_dim)).
  // H and W must be divisible by 2^(number of down-sampling blocks). With for_backward, keeps what backward needs.
  void forward(float* out, const float* sample, const float* timesteps, const float* context, int N, int H, int W,
               int S, bool for_backward, const ActivationHook& hook = nullptr);
  // Parameter gradients +=; dsample (N, in, H, W) and dcontext (N, S, cross) are written unless null.
  void backward(float* dsample, float* dcontext, const float* dout);

 private:
  struct Block {
    std::vector<ResnetBlock> resnets;
    std::vector<Transformer2D> attentions;  // empty for blocks without cross-attention
    WB sampler;                             // Downsample2D / Upsample2D conv (w = -1 when absent)
    int channels = 0;
  };
  // One recorded layer application; backward walks the tape in reverse.
  enum class Kind { ConvIn, Resnet, Attention, Downsample, Upsample, Concat, Skip };
  struct Step {
    Kind kind;
    const float* in;
    float* out;
    int c_in, c_out, h_in, w_in;  // input channels / spatial size; output channels
    ResnetBlock* resnet = nullptr;
    Transformer2D* attention = nullptr;
    const WB* conv = nullptr;
    int skip = -1, c_skip = 0;    // Concat / Skip: which skip tensor, its channels
  };

  void declare_params();
  float* keep(int64_t n) { return keep_.alloc_floats(n); }
  void record(const Step& s) { tape_.push_back(s); }
  void time_embedding_forward(const Run& r, const float* timesteps);
  void time_embedding_backward(const Run& r);
  void tail_forward(const Run& r, float* out, const float* h, int C, int H, int W, const ActivationHook& hook);
  void tail_backward(const Run& r, float* dh, const float* dout);
  void step_backward(const Run& r, const Step& s, float* dx, const float* dy, std::vector<float*>& dskips);
  ParamRange step_params(const Step& s) const;  // the parameters a step's backward completes (empty: none)

  UNetConfig cfg_;
  ops::Context ctx_;
  ParamStore store_;
  WB conv_in_, lin1_, lin2_, norm_out_, conv_out_;
  std::vector<Block> down_, up_;
  Block mid_;
  int temb_dim_ = 0;
  bool checkpointing_ = false;
  GradientSink* sink_ = nullptr;

  // State of the last forward(for_backward = true).
  Arena keep_, work_;
  std::vector<Step> tape_;
  std::vector<int64_t> skip_sizes_;
  int N_ = 0, H_ = 0, W_ = 0, S_ = 0;
  const float *context_ = nullptr, *tproj_ = nullptr;
  float *e1_ = nullptr, *e1a_ = nullptr, *temb_ = nullptr, *temb_act_ = nullptr;
  const float* tail_in_ = nullptr;
  float *tail_mean_ = nullptr, *tail_rstd_ = nullptr, *tail_a_ = nullptr;
  bool ready_for_backward_ = false;
  float* dtemb_act_accum_ = nullptr;  // during backward: d loss / d temb_act, summed over resnets
  float* dcontext_ = nullptr;         // during backward: d loss / d context (caller's buffer) or null
};

}  // namespace dbcore
