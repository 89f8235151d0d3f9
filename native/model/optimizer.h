// Whole-network fp32 AdamW with global gradient-norm clipping, in place on a ParamStore's parameter and gradient
// blocks: what a training step runs after backward (ref: diffusers train_dreambooth.py,
// `clip_grad_norm_(params, max_norm)` then `torch.optim.AdamW.step()`).
// Because parameters and gradients are each one contiguous block, one AdamW pass over the whole block is the same
// elementwise math as torch's per-tensor loop. m and v mirror the parameter block (allocated on the first step).
// Accumulation: param, m, v updated in place (=); gradients scaled in place by the clip coefficient.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/optim.h"
#include "params.h"

namespace dbcore {

struct OptimizerStepResult {
  double grad_norm;  // global L2 norm of all gradients before clipping
  double clip_coef;  // factor the gradients were scaled by (1 when clipping is off or not needed)
  int64_t step;      // updates done so far, this one included
};

class NetworkAdamW {
 public:
  // One clip + AdamW update of every parameter of `store`; max_grad_norm <= 0 skips the clipping (the norm is still
  // reported). The store must be the one this optimizer was first used with (its size is checked).
  OptimizerStepResult step(ParamStore& store, const cpu::AdamWHyper& hyper, double max_grad_norm);
  int64_t steps() const { return step_; }

 private:
  std::vector<float> m_, v_;
  int64_t step_ = 0;
};

}  // namespace dbcore
