#include "loss_scaler.h"

#include "core/error.h"

namespace dbcore {

namespace {
bool positive_float(double x) { return std::isfinite(float(x)) && float(x) > 0.f; }
}  // namespace

LossScaler::LossScaler(const LossScalerConfig& config) : cfg_(config), enabled_(true) {
  DBCORE_CHECK(positive_float(cfg_.init_scale), "EINVAL", "loss scale: init_scale = %g must be finite and > 0",
               cfg_.init_scale);
  DBCORE_CHECK(cfg_.growth_factor > 1.0 && std::isfinite(cfg_.growth_factor), "EINVAL",
               "loss scale: growth_factor = %g must be > 1", cfg_.growth_factor);
  DBCORE_CHECK(cfg_.backoff_factor > 0.0 && cfg_.backoff_factor < 1.0, "EINVAL",
               "loss scale: backoff_factor = %g must be in (0, 1)", cfg_.backoff_factor);
  DBCORE_CHECK(cfg_.growth_interval >= 1, "EINVAL", "loss scale: growth_interval = %lld must be >= 1",
               (long long)cfg_.growth_interval);
  state_.scale = float(cfg_.init_scale);
}

GradUnscale LossScaler::unscale() const {
  if (!enabled_) return {};
  return {float(1.0 / double(state_.scale)), true};
}

void LossScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    state_.scale = float(double(state_.scale) * cfg_.backoff_factor);
    state_.growth_tracker = 0;
    return;
  }
  if (++state_.growth_tracker < cfg_.growth_interval) return;
  const float grown = float(double(state_.scale) * cfg_.growth_factor);
  if (std::isfinite(grown)) state_.scale = grown;
  state_.growth_tracker = 0;
}

void LossScaler::set_state(const LossScalerState& state) {
  DBCORE_CHECK(positive_float(state.scale), "EINVAL", "loss scale %g must be finite and > 0", double(state.scale));
  const int64_t interval = enabled_ ? cfg_.growth_interval : 1;
  DBCORE_CHECK(state.growth_tracker >= 0 && state.growth_tracker < interval, "EINVAL",
               "loss scale growth tracker %lld must be in [0, %lld)", (long long)state.growth_tracker,
               (long long)interval);
  DBCORE_CHECK(enabled_ || state.scale == 1.f, "EINVAL",
               "loss scale %g given to a trainer without loss scaling (mixed_precision is not fp16)",
               double(state.scale));
  state_ = state;
}

}  // namespace dbcore
