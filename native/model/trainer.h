// One DreamBooth / fine-tuning step (ref: diffusers examples/dreambooth/train_dreambooth.py):
//   noise ~ N(0, I), t ~ U{0 … T-1}, noisy = add_noise(latents, noise, t), pred = unet(noisy, t, context),
//   target = noise (epsilon) or get_velocity(latents, noise, t) (v_prediction),
//   loss = mse(pred[:n], target[:n]) + prior_loss_weight · mse(pred[n:], target[n:])   (prior preservation)
//   with context = text_encoder(input_ids) when the text encoder trains, else the cached embeddings.
// accumulate() adds the gradients of loss / gradient_accumulation_steps (as accelerate scales it); apply()
// clips the global gradient norm, runs the optimizer and zeroes the gradients. With fp16 compute the loss is scaled
// (model/loss_scaler.h: GradScaler): the gradients carry the scale until apply() divides it out, and a step whose
// gradients overflowed is skipped. Where the gradients live is the GradientSink's mode (grad_sink.h): an fp32
// block, a bf16 block, or none (the fused step: accumulate() updates each range of parameters as soon as its
// gradient is complete, and apply() only reports the step's norm).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "clip_text.h"
#include "grad_sink.h"
#include "loss_scaler.h"
#include "optimizer.h"
#include "scheduler.h"
#include "unet.h"

namespace dbcore {

struct TrainerConfig {
  sched::SchedulerConfig noise_schedule;  // DDPM tables and prediction_type
  float prior_loss_weight = 1.f;
  int gradient_accumulation_steps = 1;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  OptimizerConfig optimizer;
  uint64_t seed = 0;
  int clip_skip = 1;
  bool train_text_encoder = false;
  Precision compute = Precision::F32;  // mixed_precision: matrix products in fp16 / bf16 with fp32 master weights
  LossScalerConfig loss_scale;         // used when compute is F16
  // fp32 or bf16 gradient block, or the fused step (needs gradient_accumulation_steps 1; clipping per tensor).
  GradientMode gradients = GradientMode::F32;
};

// A batch: rows [0, n_instance) are instance examples, rows [n_instance, B) class (prior) examples.
struct TrainBatch {
  const float* latents = nullptr;       // (B, C, H, W), already × the VAE's scaling factor
  int B = 0, C = 0, H = 0, W = 0;
  const float* context = nullptr;       // (B, S, D) cached text embeddings, when the text encoder is frozen
  int S = 0;
  const int32_t* input_ids = nullptr;   // (B, T) when the text encoder trains
  int T = 0;
  const float* noise = nullptr;         // optional (B, C, H, W); else drawn from the seeded generator
  const int32_t* timesteps = nullptr;   // optional (B); else drawn from the seeded generator
  int n_instance = 0;
  double lr = -1;        // fused step: the learning rate of the step this batch makes (must be given, >= 0)
  bool dry_run = false;  // the batch's gradients are discarded (nothing updated, the gradient block left zero)
};

struct StepStats {
  double loss = 0, instance_loss = 0, prior_loss = 0;
};

// What apply() did: the clipping of the unscaled gradients, whether the update was skipped (fp16: a gradient was
// inf or NaN; parameters, optimizer states and step count are then unchanged) and the loss scale the step's
// gradients carried (1 without loss scaling).
struct AppliedStep {
  cpu::ClipResult clip;
  bool skipped = false;
  float loss_scale = 1.f;
};

class Trainer {
 public:
  Trainer(UNet& unet, ClipTextModel* text_encoder, const TrainerConfig& config);
  ~Trainer();  // detaches the gradient sinks from the networks
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Forward and backward of one batch; parameter gradients +=. pred_out / dpred_out (B, C, H, W) receive the
  // UNet's prediction and d loss / d prediction (× the loss scale under fp16) when non-null.
  StepStats accumulate(const TrainBatch& batch, float* pred_out = nullptr, float* dpred_out = nullptr);
  // Fused mode: the norm of the step accumulate() made (sqrt Σ_i ||g_i||², before clipping) and the smallest
  // per-tensor clip factor; lr is not used (accumulate() took it).
  AppliedStep apply(double lr);
  // Stops (or resumes) training the text encoder (stop_text_encoder_training): its backward and updates stop.
  void set_train_text_encoder(bool on);
  // Throws EINVAL when the batch lacks what the current configuration needs (called again by accumulate()).
  void check_batch(const TrainBatch& b) const;

  Optimizer& optimizer() { return *optimizer_; }
  LossScaler& loss_scaler() { return scaler_; }
  // Bytes of the gradient blocks (0 in fused mode) and of the largest fp32 scratch beside them.
  size_t gradient_bytes() const;
  size_t gradient_scratch_bytes() const;
  // A trained parameter by its optimizer name, "unet.<name>" or "text_encoder.<name>" (throws EINVAL otherwise).
  const ParamEntry& trained_entry(const std::string& name) const;
  // Its gradient as fp32 (trained_entry(name).numel() floats); throws in fused mode, which keeps none.
  void read_gradient(const std::string& name, float* out);
  const TrainerConfig& config() const { return cfg_; }
  // Generator positions, saved with the training state so a resumed run draws the same numbers.
  uint64_t noise_offset() const { return noise_offset_; }
  uint64_t timestep_offset() const { return timestep_offset_; }
  void set_offsets(uint64_t noise, uint64_t timesteps) {
    noise_offset_ = noise;
    timestep_offset_ = timesteps;
  }

 private:
  const float* text_context(const TrainBatch& b);
  void begin_fused_step(const TrainBatch& b);
  std::vector<GradientSink*> sinks() const;
  GradientSink& sink_of(const std::string& name) const;
  double loss_and_grad(const float* pred, const float* target, float* dpred, int64_t rows_begin, int64_t rows_end,
                       int64_t per_row, float weight);

  UNet& unet_;
  ClipTextModel* te_;
  TrainerConfig cfg_;
  sched::Tables tables_;
  std::unique_ptr<Optimizer> optimizer_;
  LossScaler scaler_;
  std::unique_ptr<GradientSink> unet_sink_, te_sink_;
  FusedStep fused_;
  bool fused_done_ = false;  // a fused step ran since the last apply()
  bool te_training_ = false;
  uint64_t noise_offset_ = 0, timestep_offset_ = 0;
  // Step buffers on the networks' device (inputs are staged there when the device is not the CPU).
  DeviceBlock noise_, noisy_, pred_, velocity_, dpred_, context_, dcontext_, tsf_;
  DeviceBlock latents_in_, context_in_, noise_in_, ids_in_;
  DeviceBlock noise_host_;  // drawn noise in host memory (staged into noise_ off the CPU)
  std::vector<int32_t> t_;
};

}  // namespace dbcore
