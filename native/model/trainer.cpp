#include "trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/rng.h"
#include "cpu/elementwise.h"

namespace dbcore {

namespace {
// Timesteps come from a stream of their own so that their positions do not depend on the noise's size.
constexpr uint64_t kTimestepStream = 0x7f4a7c159e3779b9ull;

// The fp32 gradient pointers only where the gradients live in the store's fp32 block (null otherwise).
std::vector<OptimizedTensor> trained_tensors(ParamStore& store, const std::string& prefix, bool fp32_block) {
  std::vector<OptimizedTensor> out;
  for (const ParamEntry& e : store.table().entries())
    out.push_back({prefix + e.name, store.param(e.offset), fp32_block ? store.grad(e.offset) : nullptr, e.numel()});
  return out;
}

// `block` holding at least n elements of T on `device` (reallocated only to grow).
template <typename T>
T* ensure(DeviceBlock& block, Device device, int64_t n) {
  const size_t bytes = size_t(std::max<int64_t>(n, 1)) * sizeof(T);
  if (block.bytes() < bytes || block.device() != device) block = DeviceBlock(device, bytes);
  return block.as<T>();
}

// Host input `host` (n elements) where the networks run: itself on the CPU, else a copy in `block`.
template <typename T>
const T* staged(DeviceBlock& block, Device device, const T* host, int64_t n) {
  if (device == Device::CPU || !host) return host;
  T* d = ensure<T>(block, device, n);
  copy_bytes(device, d, Device::CPU, host, size_t(n) * sizeof(T));
  return d;
}

void check_gradient_mode(const TrainerConfig& c) {
  if (c.gradients != GradientMode::Fused) return;
  DBCORE_CHECK(c.gradient_accumulation_steps == 1, "EINVAL",
               "fused_optimizer_step needs gradient_accumulation_steps 1 (got %d): each parameter is updated as soon "
               "as its gradient of one batch is complete, so there is no gradient to accumulate into",
               c.gradient_accumulation_steps);
}
}  // namespace

Trainer::Trainer(UNet& unet, ClipTextModel* text_encoder, const TrainerConfig& config)
    : unet_(unet), te_(text_encoder), cfg_(config), tables_(sched::make_tables(config.noise_schedule)) {
  DBCORE_CHECK(cfg_.gradient_accumulation_steps >= 1, "EINVAL", "gradient_accumulation_steps must be >= 1");
  DBCORE_CHECK(!cfg_.train_text_encoder || te_, "EINVAL", "train_text_encoder needs a text encoder");
  check_gradient_mode(cfg_);
  const bool fp32_block = cfg_.gradients == GradientMode::F32;
  std::vector<OptimizedTensor> tensors = trained_tensors(unet_.store(), "unet.", fp32_block);
  if (cfg_.train_text_encoder) {
    auto te = trained_tensors(te_->store(), "text_encoder.", fp32_block);
    tensors.insert(tensors.end(), te.begin(), te.end());
  }
  te_training_ = cfg_.train_text_encoder;
  if (cfg_.compute == Precision::F16) scaler_ = LossScaler(cfg_.loss_scale);
  unet_.set_compute_precision(cfg_.compute);
  if (te_) te_->set_compute_precision(cfg_.compute);
  DBCORE_CHECK(!te_ || te_->store().device() == unet_.store().device(), "EINVAL",
               "the text encoder and the UNet must be on the same device");
  optimizer_ = std::make_unique<Optimizer>(cfg_.optimizer, std::move(tensors), unet_.context().device);
  unet_sink_ = std::make_unique<GradientSink>(cfg_.gradients, unet_.store(), optimizer_.get(), 0);
  unet_sink_->set_step(&fused_);
  unet_.set_gradient_sink(unet_sink_.get());
  if (cfg_.train_text_encoder) {
    te_sink_ = std::make_unique<GradientSink>(cfg_.gradients, te_->store(), optimizer_.get(),
                                              unet_.store().table().entries().size());
    te_sink_->set_step(&fused_);
    te_->set_gradient_sink(te_sink_.get());
  }
}

Trainer::~Trainer() {
  unet_.set_gradient_sink(nullptr);
  if (te_sink_) te_->set_gradient_sink(nullptr);
}

std::vector<GradientSink*> Trainer::sinks() const {
  std::vector<GradientSink*> out{unet_sink_.get()};
  if (te_sink_) out.push_back(te_sink_.get());
  return out;
}

size_t Trainer::gradient_bytes() const {
  size_t b = 0;
  for (GradientSink* s : sinks()) b += s->block_bytes();
  return b;
}

size_t Trainer::gradient_scratch_bytes() const {
  size_t b = 0;
  for (GradientSink* s : sinks()) b = std::max(b, s->scratch_bytes());
  return b;
}

namespace {
constexpr const char* kUnetPrefix = "unet.";
constexpr const char* kTePrefix = "text_encoder.";
bool has_prefix(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

GradientSink& Trainer::sink_of(const std::string& name) const {
  if (has_prefix(name, kTePrefix) && te_sink_) return *te_sink_;
  DBCORE_CHECK(has_prefix(name, kUnetPrefix), "EINVAL",
               "'%s' is not a trained parameter (expected unet.<name> or text_encoder.<name>)", name.c_str());
  return *unet_sink_;
}

const ParamEntry& Trainer::trained_entry(const std::string& name) const {
  GradientSink& sink = sink_of(name);
  return sink.table().at(name.substr(&sink == te_sink_.get() ? std::strlen(kTePrefix) : std::strlen(kUnetPrefix)));
}

void Trainer::read_gradient(const std::string& name, float* out) {
  DBCORE_CHECK(cfg_.gradients != GradientMode::Fused, "ESTATE",
               "gradient '%s': the fused optimizer step keeps no gradients", name.c_str());
  const ParamEntry& e = trained_entry(name);
  GradientSink& sink = sink_of(name);
  if (cfg_.gradients == GradientMode::F32) {
    copy_bytes(Device::CPU, out, unet_.context().device, sink.grad(e.offset), size_t(e.numel()) * 4);
  } else {
    std::vector<uint16_t> bf16(static_cast<size_t>(e.numel()));
    copy_bytes(Device::CPU, bf16.data(), sink.device(), sink.bf16_block() + e.offset, bf16.size() * 2);
    cpu::bf16_to_f32(out, bf16.data(), e.numel());
  }
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
  const Device dev = unet_.context().device;
  if (!te_training_) return staged(context_in_, dev, b.context, int64_t(b.B) * b.S * unet_.config().cross_attention_dim);
  float* context = ensure<float>(context_, dev, int64_t(b.B) * b.T * te_->config().hidden_size);
  te_->forward(context, staged(ids_in_, dev, b.input_ids, int64_t(b.B) * b.T), b.B, b.T, cfg_.clip_skip, true);
  return context;
}

// mse over rows [rows_begin, rows_end) × weight / accumulation; writes its gradient (× the loss scale) into dpred's
// rows.
double Trainer::loss_and_grad(const float* pred, const float* target, float* dpred, int64_t rows_begin,
                              int64_t rows_end, int64_t per_row, float weight) {
  if (rows_end <= rows_begin) return 0;
  const int64_t off = rows_begin * per_row, n = (rows_end - rows_begin) * per_row;
  const ops::Context& ctx = unet_.context();
  double mse = ops::mse_forward(ctx, pred + off, target + off, n);
  ops::mse_backward(ctx, dpred + off, pred + off, target + off, n,
                    weight / float(cfg_.gradient_accumulation_steps) * scaler_.scale());
  return mse;
}

// Fused mode: the optimizer's step begins before backward, which updates each range as it completes.
void Trainer::begin_fused_step(const TrainBatch& b) {
  fused_ = FusedStep{};
  fused_.discard = b.dry_run;
  if (b.dry_run) return;
  DBCORE_CHECK(b.lr >= 0 && std::isfinite(b.lr), "EINVAL",
               "fused_optimizer_step: accumulate() needs the step's learning rate (lr = %g)", b.lr);
  fused_.lr = b.lr;
  fused_.max_norm = cfg_.max_grad_norm;
  const GradUnscale unscale = scaler_.unscale();
  fused_.inv_scale = unscale.inv_scale;
  fused_.skip_nonfinite = unscale.skip_nonfinite;
  optimizer_->begin_step();
}

StepStats Trainer::accumulate(const TrainBatch& b, float* pred_out, float* dpred_out) {
  check_batch(b);
  if (cfg_.gradients == GradientMode::Fused) begin_fused_step(b);
  const int64_t per_row = int64_t(b.C) * b.H * b.W, n = per_row * b.B;
  const ops::Context& ctx = unet_.context();
  const Device dev = ctx.device;
  float* noisy = ensure<float>(noisy_, dev, n);
  float* pred = ensure<float>(pred_, dev, n);
  float* dpred = ensure<float>(dpred_, dev, n);
  t_.resize(b.B);
  const float* latents = staged(latents_in_, dev, b.latents, n);
  const float* noise = staged(noise_in_, dev, b.noise, n);
  if (!noise) {  // drawn on the host (Philox: the same numbers on every backend), then staged
    float* host = ensure<float>(noise_host_, Device::CPU, n);
    normal_fill(host, n, cfg_.seed, noise_offset_);
    noise_offset_ += uint64_t(n);
    noise = staged(noise_, dev, static_cast<const float*>(host), n);
  }
  if (b.timesteps) {
    std::copy(b.timesteps, b.timesteps + b.B, t_.begin());
  } else {
    randint_fill(t_.data(), b.B, tables_.alphas_cumprod.size(), cfg_.seed ^ kTimestepStream, timestep_offset_);
    timestep_offset_ += uint64_t(b.B);
  }
  std::vector<float> tsf(static_cast<size_t>(b.B));
  for (int i = 0; i < b.B; ++i) {
    DBCORE_CHECK(t_[i] >= 0 && size_t(t_[i]) < tables_.alphas_cumprod.size(), "EINVAL",
                 "train batch: timestep %d out of range", t_[i]);
    tsf[i] = float(t_[i]);
  }
  const float* timesteps = staged(tsf_, dev, tsf.data(), b.B);
  sched::add_noise(ctx, noisy, latents, noise, t_.data(), tables_.alphas_cumprod, b.B, per_row);
  // The target is the noise itself (epsilon) or the velocity (v_prediction).
  const float* target = noise;
  if (cfg_.noise_schedule.prediction_type == sched::Prediction::VPrediction) {
    float* velocity = ensure<float>(velocity_, dev, n);
    sched::get_velocity(ctx, velocity, latents, noise, t_.data(), tables_.alphas_cumprod, b.B, per_row);
    target = velocity;
  }

  const float* context = text_context(b);
  const int S = te_training_ ? b.T : b.S;
  unet_.forward(pred, noisy, timesteps, context, b.B, b.H, b.W, S, true);

  StepStats st;
  st.instance_loss = loss_and_grad(pred, target, dpred, 0, b.n_instance, per_row, 1.f);
  st.prior_loss = loss_and_grad(pred, target, dpred, b.n_instance, b.B, per_row, cfg_.prior_loss_weight);
  st.loss = st.instance_loss + cfg_.prior_loss_weight * st.prior_loss;
  if (pred_out) copy_bytes(Device::CPU, pred_out, dev, pred, size_t(n) * 4);
  if (dpred_out) copy_bytes(Device::CPU, dpred_out, dev, dpred, size_t(n) * 4);

  if (te_training_) {
    float* dcontext = ensure<float>(dcontext_, dev, int64_t(b.B) * S * unet_.config().cross_attention_dim);
    unet_.backward(nullptr, dcontext, dpred);
    te_->backward(dcontext);
  } else {
    unet_.backward(nullptr, nullptr, dpred);
  }
  if (b.dry_run)
    for (GradientSink* s : sinks()) s->zero();
  else
    fused_done_ = cfg_.gradients == GradientMode::Fused;
  return st;
}

AppliedStep Trainer::apply(double lr) {
  AppliedStep r;
  r.loss_scale = scaler_.scale();
  const GradUnscale unscale = scaler_.unscale();
  switch (cfg_.gradients) {
    case GradientMode::F32: r.clip = optimizer_->apply(cfg_.max_grad_norm, lr, unscale); break;
    case GradientMode::BF16: r.clip = apply_bf16_gradients(*optimizer_, sinks(), cfg_.max_grad_norm, lr, unscale); break;
    case GradientMode::Fused:
      DBCORE_CHECK(fused_done_, "ESTATE", "fused_optimizer_step: apply() without a step (call accumulate() first)");
      fused_done_ = false;
      r.clip = {std::sqrt(fused_.sum_sq), fused_.min_coef};
      r.skipped = fused_.found_inf;  // a partial step: the overflowed tensors kept their values
      scaler_.update(r.skipped);
      return r;
  }
  r.skipped = unscale.skips(r.clip.total_norm);
  scaler_.update(r.skipped);
  return r;
}

}  // namespace dbcore
