// Dynamic loss scaling for fp16 training (ref: torch.cuda.amp.GradScaler, torch 1.13 and later; the update is
// aten's _amp_update_scale_). fp16 keeps 10 mantissa bits and a range up to 65504: small gradients would flush to
// zero, so the loss (hence every gradient) is multiplied by `scale` before backward and the gradients are divided
// by it before the optimizer uses them. A step whose gradients hold an inf or NaN (the scaled values overflowed
// fp16) is skipped and the scale backs off; after growth_interval finite steps in a row the scale grows.
//   finite step:  tracker += 1; when tracker == growth_interval: scale *= growth_factor (if that stays finite),
//                 tracker = 0
//   inf / NaN:    scale *= backoff_factor, tracker = 0, the optimizer step is skipped
// The scale is a float32, as GradScaler's tensor is; with the default factors it stays a power of two, so scaling
// and unscaling are exact.
#pragma once
#include <cmath>
#include <cstdint>

namespace dbcore {

struct LossScalerConfig {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// How the optimizer treats one step's gradients: multiply them by inv_scale before use (the norm too), and skip
// the step when skip_nonfinite is set and their norm is not finite.
struct GradUnscale {
  float inv_scale = 1.f;
  bool skip_nonfinite = false;
  bool skips(double total_norm) const { return skip_nonfinite && !std::isfinite(total_norm); }
};

// The part of a LossScaler a resumed run needs (GradScaler.state_dict's "scale" and "_growth_tracker").
struct LossScalerState {
  float scale = 1.f;
  int64_t growth_tracker = 0;
};

class LossScaler {
 public:
  LossScaler() = default;  // disabled: scale 1, nothing skipped (fp32 / bf16 training)
  explicit LossScaler(const LossScalerConfig& config);

  bool enabled() const { return enabled_; }
  // The factor d loss is multiplied by.
  float scale() const { return state_.scale; }
  // The unscaling of the gradients made with scale(): inv_scale = 1 / scale computed in double, rounded to float
  // once (GradScaler.unscale_).
  GradUnscale unscale() const;
  // After an optimizer step: backs off on a non-finite step, grows after growth_interval finite ones.
  void update(bool found_inf);

  const LossScalerState& state() const { return state_; }
  // Throws EINVAL for a scale that is not finite and positive or a tracker outside [0, growth_interval).
  void set_state(const LossScalerState& state);

 private:
  LossScalerConfig cfg_;
  bool enabled_ = false;
  LossScalerState state_;
};

}  // namespace dbcore
