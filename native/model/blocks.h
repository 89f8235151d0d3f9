// Building blocks shared by the UNet and the VAE, each a forward/backward pair over one saved-state struct.
// Dimension letters: N batch, C channels, H W spatial (HW = H·W), M = N·HW token rows, S context tokens.
// Accumulation: parameter gradients +=; input gradients are written (=) except where a name says "accumulate".
// With run.checkpointing a block keeps only a pointer to its input and recomputes the rest in backward().
#pragma once
#include <string>
#include <vector>

#include "run.h"

namespace dbcore {

// ref: diffusers ResnetBlock2D (resnet_time_scale_shift "default", SiLU, no dropout).
// out = (shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x))) + time_emb_proj(temb_act))))) / output_scale_factor
class ResnetBlock {
 public:
  void declare(ParamTable& t, const std::string& name, int in, int out, int temb_channels, int groups, float eps,
               float output_scale_factor);
  // x (N, in, H, W) → out (N, out, H, W); temb_act (N, temb_channels) = silu(time embedding), or null.
  void forward(const Run& r, float* out, const float* x, const float* temb_act, int N, int H, int W);
  // dx (N, in, H, W) =; dtemb_act (N, temb_channels) += (ignored when null).
  void backward(const Run& r, float* dx, float* dtemb_act, const float* dout);
  int out_channels() const { return out_; }
  const ParamRange& params() const { return range_; }  // this block's parameters in the table

 private:
  struct Saved {
    const float *x = nullptr, *temb_act = nullptr;
    // a1 = silu(gn1(x)) and a2 = silu(gn2(h1)); the normalized tensors are recomputed by the fused backward.
    float *mean1 = nullptr, *rstd1 = nullptr, *a1 = nullptr, *h1 = nullptr, *mean2 = nullptr, *rstd2 = nullptr,
          *a2 = nullptr;
  };
  void compute(const Run& r, float* out, Saved& s);
  cpu::Conv2dShape conv_shape(int in, int out, int k) const { return {N_, in, H_, W_, out, k, k, 1, k / 2}; }

  int in_ = 0, out_ = 0, temb_ = 0, groups_ = 0;
  float eps_ = 1e-5f, scale_ = 1.f;
  WB norm1_, conv1_, temb_proj_, norm2_, conv2_, shortcut_;
  ParamRange range_;
  int N_ = 0, H_ = 0, W_ = 0;
  Saved saved_;
};

// ref: diffusers Transformer2DModel (continuous input) with BasicTransformerBlock (layer_norm, self-attention,
// cross-attention, GEGLU feed-forward; to_q/to_k/to_v without bias). proj_in / proj_out are 1x1 convolutions
// (use_linear_projection false) or linear layers; both act on (M, C) token rows, so one code path serves both.
class Transformer2D {
 public:
  // cross_dim = 0 makes attn2 self-attention (the VAE does not use this class; kept for only-self configs).
  void declare(ParamTable& t, const std::string& name, int channels, int heads, int head_dim, int layers,
               int cross_dim, int groups, bool linear_projection);
  // x (N, C, H, W) → out (N, C, H, W); context (N, S, cross_dim).
  void forward(const Run& r, float* out, const float* x, const float* context, int N, int H, int W, int S);
  // dx =; dcontext += (N, S, cross_dim).
  void backward(const Run& r, float* dx, float* dcontext, const float* dout);
  const ParamRange& params() const { return range_; }  // this block's parameters in the table

 private:
  struct BlockParams {
    WB norm1, q1, k1, v1, o1, norm2, q2, k2, v2, o2, norm3, ff1, ff2;
  };
  struct BlockSaved {
    const float* h;  // block input (M, C)
    float *l1, *mean1, *rstd1, *q1, *k1, *v1, *a1, *lse1, *h1;
    float *l2, *mean2, *rstd2, *q2, *k2, *v2, *a2, *lse2, *h2;
    float *l3, *mean3, *rstd3, *f, *gg;
  };
  struct Saved {
    const float *x = nullptr, *context = nullptr;
    // group-normed x, its stats, tokens (M, C), proj_in output (M, inner)
    float *gn = nullptr, *mean = nullptr, *rstd = nullptr, *tok = nullptr, *h0 = nullptr;
    std::vector<BlockSaved> blocks;
    const float* h_last = nullptr;       // last block's output (M, inner)
    float* proj = nullptr;               // proj_out output (M, C)
  };
  void compute(const Run& r, float* out, Saved& s);
  void block_forward(const Run& r, const BlockParams& bp, float* y, BlockSaved& b, const float* context);
  void block_backward(const Run& r, const BlockParams& bp, float* dh, float* dcontext, const float* dy,
                      const BlockSaved& b, const float* context);
  int M() const { return N_ * H_ * W_; }

  int C_ = 0, inner_ = 0, heads_ = 0, head_dim_ = 0, cross_ = 0, groups_ = 0;
  WB norm_, proj_in_, proj_out_;
  ParamRange range_;
  std::vector<BlockParams> blocks_;
  int N_ = 0, H_ = 0, W_ = 0, S_ = 0;
  Saved saved_;
};

}  // namespace dbcore
