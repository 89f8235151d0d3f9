// Where a network's parameter gradients live during backward (issue #7's memory plan). Layer code asks for a
// gradient pointer with Run::g(offset); the sink answers it. Backward walks the network in ranges — a contiguous
// run of the parameter table (a ResnetBlock, a Transformer2D, a sampler conv, the loose layers, a text-encoder
// layer) whose gradients are complete when its backward is done — and brackets each with begin() / end().
//   F32:   the ParamStore's fp32 gradient block; begin/end do nothing (today's behaviour, bit for bit).
//   BF16:  a bf16 gradient block (2 bytes/param). A range's fp32 gradients go to a zeroed scratch from the work
//          arena; end() adds them into the block (round to nearest even) and releases the scratch.
//   Fused: no gradient block. end() hands the range's fp32 gradients to the optimizer at once (the per-tensor math
//          of Optimizer::apply: bit-identical to it with clipping off and no accumulation); with max_norm > 0 each
//          tensor is clipped on its own norm. Tensors without a gradient in a step (text-encoder layers past
//          clip_skip) are not updated, as torch skips parameters whose grad is None. Under fp16 loss scaling a
//          tensor whose gradient overflowed is left as it is (FusedStep).
// Accumulation: gradients += within a range (the layer kernels' rule); the bf16 block += across ranges and steps.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "optimizer.h"
#include "params.h"
#include "square_sums.h"

namespace dbcore {

// Parameters [begin, end) of a table (float offsets): those declared between two reads of ParamTable::total().
struct ParamRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

enum class GradientMode { F32, BF16, Fused };

// What one fused step does with the gradients as they complete.
struct FusedStep {
  double lr = 0;
  double max_norm = 0;   // > 0: each tensor clipped to this norm
  bool discard = false;  // a dry run: gradients dropped, nothing updated
  // fp16 loss scaling: the gradients carry 1 / inv_scale; with skip_nonfinite a tensor whose scaled gradient
  // overflowed keeps its value (found_inf is set and the step's scale backs off). Parameters updated earlier in
  // the backward pass cannot be taken back, so an overflowed fused step is a partial step, not a skipped one.
  float inv_scale = 1.f;
  bool skip_nonfinite = false;
  bool found_inf = false;
  double sum_sq = 0;     // Σ ||g_i||² over the tensors updated so far (unscaled, before clipping)
  double min_coef = 1;   // the smallest per-tensor clip factor applied
};

class GradientSink {
 public:
  // The network's parameters are optimizer tensors [first_tensor, first_tensor + table size) (fused and bf16).
  GradientSink(GradientMode mode, ParamStore& store, Optimizer* optimizer, size_t first_tensor);
  GradientMode mode() const { return mode_; }
  Device device() const { return store_.device(); }
  const ParamTable& table() const { return store_.table(); }

  // The gradient of the parameter at `offset`: in the fp32 block, or (BF16, Fused) in the open range's scratch.
  float* grad(int64_t offset);
  // Opens a range: BF16 and Fused take a zeroed scratch of range.size() floats from `work` (released by end()).
  void begin(Arena& work, const ParamRange& range);
  // Closes the open range: BF16 adds the scratch into the block; Fused updates the range's tensors per `step_`.
  void end();
  // Fused: the step the next ranges belong to (the caller advances the optimizer's step count once per step).
  void set_step(FusedStep* step) { step_ = step; }

  // BF16: the block (2 bytes per parameter, zeroed at creation, on the store's device).
  uint16_t* bf16_block() { return bf16_.as<uint16_t>(); }
  // BF16: where the optimizer converts a chunk of gradients to fp32 (allocated with the block).
  float* convert_buffer() { return convert_.as<float>(); }
  // Bytes of the gradient block this mode keeps: the fp32 block, the bf16 block (2 per parameter), or none.
  size_t block_bytes() const;
  // Fp32 scratch beside the block (bytes): the largest range's scratch so far (taken from the work arena, so also
  // part of the network's activation_bytes()) and, for BF16, the conversion buffer. 0 in F32 mode.
  size_t scratch_bytes() const { return std::max(size_t(scratch_high_water_) * 4, convert_.bytes()); }
  void zero();  // the block = 0 (F32, BF16)

 private:
  void update_fused_range();
  GradientMode mode_;
  ParamStore& store_;
  Optimizer* optimizer_;
  size_t first_tensor_;
  DeviceBlock bf16_, convert_;
  SquareSums tensor_sums_;  // Fused: one slot per table entry, for the per-tensor norms of a range
  // The open range (open_ false between ranges).
  bool open_ = false;
  ParamRange range_;
  float* scratch_ = nullptr;
  Arena* arena_ = nullptr;
  Arena::Mark mark_{};
  int64_t scratch_high_water_ = 0;
  FusedStep* step_ = nullptr;
};

// One optimizer step over bf16 gradient blocks: clip_grad_norm_ over every active tensor (the norm summed from the
// bf16 values in double), the update of each tensor in chunks converted to fp32, then the blocks zeroed. `sinks`
// hold the optimizer's tensors in order. Returns the norm before clipping and the factor applied.
cpu::ClipResult apply_bf16_gradients(Optimizer& optimizer, const std::vector<GradientSink*>& sinks, double max_norm,
                                     double lr, const GradUnscale& unscale = {});

}  // namespace dbcore
