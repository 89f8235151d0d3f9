#include "trainer.h"

#include <algorithm>
#include <cstring>

#include "core/rng.h"
#include "cpu/loss.h"

namespace dbcore {

namespace {
// Timesteps come from a stream of their own so that their positions do not depend on the noise's size.
constexpr uint64_t kTimestepStream = 0x7f4a7c159e3779b9ull;

std::vector<OptimizedTensor> trained_tensors(ParamStore& store, const std::string& prefix) {
  std::vector<OptimizedTensor> out;
  for (const ParamEntry& e : store.table().entries())
    out.push_back({prefix + e.name, store.param(e.offset), store.grad(e.offset), e.numel()});
  return out;
}
}  // namespace

Trainer::Trainer(UNet& unet, ClipTextModel* text_encoder, const TrainerConfig& config)
    : unet_(unet), te_(text_encoder), cfg_(config), tables_(sched::make_tables(config.noise_schedule)) {
  DBCORE_CHECK(cfg_.gradient_accumulation_steps >= 1, "EINVAL", "gradient_accumulation_steps must be >= 1");
  DBCORE_CHECK(!cfg_.train_text_encoder || te_, "EINVAL", "train_text_encoder needs a text encoder");
  std::vector<OptimizedTensor> tensors = trained_tensors(unet_.store(), "unet.");
  if (cfg_.train_text_encoder) {
    auto te = trained_tensors(te_->store(), "text_encoder.");
    tensors.insert(tensors.end(), te.begin(), te.end());
  }
  te_training_ = cfg_.train_text_encoder;
  if (cfg_.compute == Precision::F16) scaler_ = LossScaler(cfg_.loss_scale);
  unet_.set_compute_precision(cfg_.compute);
  if (te_) te_->set_compute_precision(cfg_.compute);
  optimizer_ = std::make_unique<Optimizer>(cfg_.optimizer, std::move(tensors));
}

void Trainer::set_train_text_encoder(bool on) {
  DBCORE_CHECK(!on || cfg_.train_text_encoder, "EINVAL", "the text encoder was not set up for training");
  te_training_ = on;
  optimizer_->set_active("text_encoder.", on);
}

void Trainer::check_batch(const TrainBatch& b) const {
  const UNetConfig& u = unet_.config();
  DBCORE_CHECK(b.latents && b.B > 0 && b.C == u.in_channels, "EINVAL", "train batch: latents must be (B, %d, H, W)",
               u.in_channels);
  DBCORE_CHECK(b.n_instance >= 0 && b.n_instance <= b.B, "EINVAL", "train batch: %d instance rows of %d",
               b.n_instance, b.B);
  if (te_training_)
    DBCORE_CHECK(b.input_ids && b.T > 0, "EINVAL", "train batch: input_ids are needed while the text encoder trains");
  else
    DBCORE_CHECK(b.context && b.S > 0, "EINVAL", "train batch: context (text embeddings) is needed");
}

const float* Trainer::text_context(const TrainBatch& b) {
  if (!te_training_) return b.context;
  context_.resize(size_t(b.B) * b.T * te_->config().hidden_size);
  te_->forward(context_.data(), b.input_ids, b.B, b.T, cfg_.clip_skip, true);
  return context_.data();
}

// mse over rows [rows_begin, rows_end) × weight / accumulation; writes its gradient (× the loss scale) into dpred's
// rows.
double Trainer::loss_and_grad(const float* pred, const float* target, float* dpred, int64_t rows_begin,
                              int64_t rows_end, int64_t per_row, float weight) {
  if (rows_end <= rows_begin) return 0;
  const int64_t off = rows_begin * per_row, n = (rows_end - rows_begin) * per_row;
  double mse = cpu::mse_forward(pred + off, target + off, n);
  cpu::mse_backward(dpred + off, pred + off, target + off, n,
                    weight / float(cfg_.gradient_accumulation_steps) * scaler_.scale());
  return mse;
}

StepStats Trainer::accumulate(const TrainBatch& b, float* pred_out, float* dpred_out) {
  check_batch(b);
  const int64_t per_row = int64_t(b.C) * b.H * b.W, n = per_row * b.B;
  noise_.resize(n);
  noisy_.resize(n);
  pred_.resize(n);
  dpred_.resize(n);
  t_.resize(b.B);
  tsf_.resize(b.B);
  const float* noise = b.noise;
  if (!noise) {
    normal_fill(noise_.data(), n, cfg_.seed, noise_offset_);
    noise_offset_ += uint64_t(n);
    noise = noise_.data();
  }
  if (b.timesteps) {
    std::copy(b.timesteps, b.timesteps + b.B, t_.begin());
  } else {
    randint_fill(t_.data(), b.B, tables_.alphas_cumprod.size(), cfg_.seed ^ kTimestepStream, timestep_offset_);
    timestep_offset_ += uint64_t(b.B);
  }
  for (int i = 0; i < b.B; ++i) {
    DBCORE_CHECK(t_[i] >= 0 && size_t(t_[i]) < tables_.alphas_cumprod.size(), "EINVAL",
                 "train batch: timestep %d out of range", t_[i]);
    tsf_[i] = float(t_[i]);
  }
  sched::add_noise(noisy_.data(), b.latents, noise, t_.data(), tables_.alphas_cumprod, b.B, per_row);
  // The target is the noise itself (epsilon) or the velocity (v_prediction).
  const float* target = noise;
  if (cfg_.noise_schedule.prediction_type == sched::Prediction::VPrediction) {
    velocity_.resize(n);
    sched::get_velocity(velocity_.data(), b.latents, noise, t_.data(), tables_.alphas_cumprod, b.B, per_row);
    target = velocity_.data();
  }

  const float* context = text_context(b);
  const int S = te_training_ ? b.T : b.S;
  unet_.forward(pred_.data(), noisy_.data(), tsf_.data(), context, b.B, b.H, b.W, S, true);

  StepStats st;
  st.instance_loss = loss_and_grad(pred_.data(), target, dpred_.data(), 0, b.n_instance, per_row, 1.f);
  st.prior_loss = loss_and_grad(pred_.data(), target, dpred_.data(), b.n_instance, b.B, per_row,
                                cfg_.prior_loss_weight);
  st.loss = st.instance_loss + cfg_.prior_loss_weight * st.prior_loss;
  if (pred_out) std::copy(pred_.begin(), pred_.end(), pred_out);
  if (dpred_out) std::copy(dpred_.begin(), dpred_.end(), dpred_out);

  if (te_training_) {
    dcontext_.resize(size_t(b.B) * S * unet_.config().cross_attention_dim);
    unet_.backward(nullptr, dcontext_.data(), dpred_.data());
    te_->backward(dcontext_.data());
  } else {
    unet_.backward(nullptr, nullptr, dpred_.data());
  }
  return st;
}

AppliedStep Trainer::apply(double lr) {
  const GradUnscale unscale = scaler_.unscale();
  AppliedStep r;
  r.loss_scale = scaler_.scale();
  r.clip = optimizer_->apply(cfg_.max_grad_norm, lr, unscale);
  r.skipped = unscale.skips(r.clip.total_norm);
  scaler_.update(r.skipped);
  return r;
}

}  // namespace dbcore
