// The optimizer over a set of parameter tensors: global gradient-norm clipping (torch clip_grad_norm_) and
// AdamW, either fp32 (torch.optim.AdamW) or bitsandbytes-compatible 8-bit (bnb.optim.AdamW8bit: blockwise
// uint8 states for tensors of ≥ 4096 elements, float32 states below). States are allocated once, at creation, on
// the device of the parameters (the CPU runs fp32 AdamW as one fused pass; CUDA runs the per-tensor kernels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/memory.h"
#include "core/tensor.h"
#include "cpu/adam8bit.h"
#include "cpu/optim.h"
#include "loss_scaler.h"
#include "square_sums.h"

namespace dbcore {

struct OptimizerConfig {
  enum class Kind { AdamW, AdamW8bit } kind = Kind::AdamW;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

// One parameter tensor the optimizer updates in place, with its gradient.
struct OptimizedTensor {
  std::string name;
  float* param;
  float* grad;
  int64_t n;
};

// A named state buffer, for saving and resuming (names "<param>.state1", ".state2", ".absmax1", …, as
// bitsandbytes' state dict; fp32 AdamW uses "<param>.exp_avg" / ".exp_avg_sq" as torch does).
struct StateBuffer {
  std::string name;
  DType dtype;
  Shape shape;
  void* data;  // on `device`
  Device device;
};

class Optimizer {
 public:
  // Parameters and gradients of `tensors` live on `device`.
  Optimizer(const OptimizerConfig& config, std::vector<OptimizedTensor> tensors, Device device = Device::CPU);

  // One optimizer step over the tensors whose `active` flag is set: clip_grad_norm_ (the gradients scaled so
  // their global L2 norm is at most max_norm; max_norm <= 0: measure only), the update with learning rate lr
  // (the step count advances), then every gradient zeroed. Returns the norm before clipping and the factor applied.
  // fp32 AdamW on the CPU does the three in one pass (cpu::adamw_clip_step_zero); otherwise the gradients are
  // scaled, each tensor updated, then zeroed.
  // `unscale` (loss scaling): the gradients are used × inv_scale (folded into the clipping factor; the norm is that
  // of the unscaled gradients); when it skips the norm, only the zeroing happens and the factor reported is 0.
  cpu::ClipResult apply(double max_norm, double lr, const GradUnscale& unscale = {});
  // Tensors whose name starts with `prefix` stop (or resume) being clipped and updated.
  void set_active(const std::string& prefix, bool active);

  // Per-tensor updates from gradients held elsewhere (grad_sink.h: the fused step, bf16 gradients): begin_step()
  // advances the step count once per step; update() runs that step on elements [begin, begin + n) of tensor i from
  // grad (n floats, overwritten), scaled by clip_coef first as apply() does. begin: a multiple of
  // cpu::kAdam8bitBlockSize. Element for element the same math as apply().
  void begin_step() { ++steps_; }
  void update(size_t i, float* grad, int64_t begin, int64_t n, float clip_coef, double lr);
  size_t size() const { return tensors_.size(); }
  const OptimizedTensor& tensor(size_t i) const { return tensors_[i]; }
  bool active(size_t i) const { return states_[i].active; }
  // One slot on the optimizer's device for the global norm of gradients held elsewhere (apply_bf16_gradients),
  // allocated once; apply() uses it too on CUDA.
  SquareSums& norm_sum() { return norm_sum_; }

  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }
  std::vector<StateBuffer> state_buffers();
  size_t state_bytes() const;

 private:
  struct State {
    DeviceBlock m, v;                 // fp32 states (AdamW, or 8-bit's small tensors)
    DeviceBlock code1, code2;         // 8-bit states (uint8)
    DeviceBlock absmax1, absmax2;     // fp32, one per block of 8-bit states
    bool eight_bit = false;
    bool active = true;
  };
  void step_fused(float grad_coef, double lr);  // fp32 AdamW: gradients × grad_coef, update and zero in one pass
  // The update of elements [begin, begin + n) of tensor i from grad (n floats, already scaled), on the device.
  void step_range(size_t i, const float* grad, int64_t begin, int64_t n, double lr);
  void zero_grads(bool all);                     // every gradient, or those the fused pass did not zero
  // Σ ||g_i||² over the given gradients (one synchronization on CUDA).
  double sum_of_squares(const std::vector<float*>& grads, const std::vector<int64_t>& numels);
  cpu::Adam8bitHyper hyper8(double lr) const;
  OptimizerConfig cfg_;
  std::vector<OptimizedTensor> tensors_;
  Device device_;
  DeviceBlock qmap1_, qmap2_;  // bitsandbytes' dynamic maps on the device (8-bit)
  SquareSums norm_sum_;
  std::vector<State> states_;
  int64_t steps_ = 0;
};

}  // namespace dbcore
