// Diffusion noise schedules (training side) and samplers (inference side).
// ref: diffusers 0.40 DDPMScheduler, DDIMScheduler, PNDMScheduler (PLMS with skip_prk_steps),
//      EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler (DPM-Solver++ 2M).
//
// Precision rule: we compute in the precision diffusers computes in, so that the golden trajectories match
// to ~1e-7: betas, alphas_cumprod, sigma tables and every per-step coefficient in float32 (torch tensors),
// except where diffusers goes through numpy in float64 (timestep spacing, np.interp of sigmas, Karras sigmas,
// sigma → t). torch's CPU cumprod accumulates in double and rounds each entry to float32; so do we.
// Element-wise updates are float32 and keep torch's operation order.
// Dimension letters: B (batch of samples), M (elements per sample), n (elements of the whole latent tensor).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace dbcore::sched {

enum class BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2 };
enum class Prediction { Epsilon, VPrediction, Sample };
enum class Spacing { Leading, Linspace, Trailing };
enum class FinalSigmas { Zero, SigmaMin };
enum class VarianceType { None, FixedSmall, FixedSmallLog, FixedLarge };
enum class SolverType { Midpoint, Heun };

// Parsers for the string values of a diffusers scheduler config; each throws EINVAL naming the key, the
// value and the valid names.
BetaSchedule parse_beta_schedule(const std::string& s);
Prediction parse_prediction(const std::string& s);
Spacing parse_spacing(const std::string& s);
FinalSigmas parse_final_sigmas(const std::string& s);
VarianceType parse_variance_type(const std::string& s);
SolverType parse_solver_type(const std::string& s);

// The union of the scheduler_config.json fields the supported schedulers read, with diffusers' names.
struct SchedulerConfig {
  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  std::vector<double> trained_betas;  // non-empty: used instead of beta_start/end/schedule
  Prediction prediction_type = Prediction::Epsilon;
  int steps_offset = 0;
  bool set_alpha_to_one = true;           // DDIM, PNDM: alpha_cumprod "before" t = 0
  Spacing timestep_spacing = Spacing::Leading;
  bool clip_sample = false;               // DDIM, DDPM: clamp the predicted x0
  double clip_sample_range = 1.0;
  VarianceType variance_type = VarianceType::None;  // DDPM
  bool use_karras_sigmas = false;         // Euler, DPM-Solver++
  double sigma_min = -1, sigma_max = -1;  // Euler's Karras range (< 0: from the sigma table)
  FinalSigmas final_sigmas_type = FinalSigmas::Zero;
  int solver_order = 2;                   // DPM-Solver++: 1 or 2
  SolverType solver_type = SolverType::Midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  double lambda_min_clipped = -1.0 / 0.0;
  double eta = 0.0;                       // DDIM: 0 deterministic, 1 DDPM-like
};

struct Tables {
  std::vector<float> betas;           // (T)
  std::vector<float> alphas_cumprod;  // (T)
};
// betas and alphas_cumprod as diffusers builds them (float32; cumprod accumulated in double).
Tables make_tables(const SchedulerConfig& cfg);

// noisy[b] = sqrt(ac[t_b])·x0[b] + sqrt(1-ac[t_b])·noise[b]   (DDPMScheduler.add_noise), each (M); the tensors are
// on the context's device, the timesteps in host memory.
void add_noise(const ops::Context& ctx, float* noisy, const float* x0, const float* noise, const int32_t* timesteps,
               const std::vector<float>& alphas_cumprod, int64_t B, int64_t M);
// v[b] = sqrt(ac[t_b])·noise[b] - sqrt(1-ac[t_b])·sample[b]   (DDPMScheduler.get_velocity), each (M).
void get_velocity(const ops::Context& ctx, float* v, const float* sample, const float* noise, const int32_t* timesteps,
                  const std::vector<float>& alphas_cumprod, int64_t B, int64_t M);

// Where a stochastic step takes its Gaussian noise: Philox normal stream positions offset … offset+n-1.
struct NoiseSource {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

enum class SamplerKind { DDPM, DDIM, PNDM, Euler, EulerAncestral, DPMSolverMultistep };
// "ddpm", "ddim", "pndm", "euler", "euler_ancestral", "dpmsolver_multistep"; EINVAL lists them otherwise.
SamplerKind parse_sampler_kind(const std::string& s);

// A sampler walks timesteps()[0], [1], … : for step i the caller evaluates the model on
// scale_model_input(sample, i) and passes its output to step(prev, model_output, i, sample).
// Multistep samplers (PNDM, DPM-Solver++) keep a history and require i = 0, 1, 2, … in order after
// set_timesteps; single-step ones accept any i. Work buffers are sized on the first step and reused.
class Sampler {
 public:
  Sampler(SamplerKind kind, const SchedulerConfig& cfg);
  virtual ~Sampler() = default;

  SamplerKind kind() const { return kind_; }
  const SchedulerConfig& config() const { return cfg_; }
  const Tables& tables() const { return tables_; }

  virtual void set_timesteps(int num_inference_steps) = 0;
  const std::vector<double>& timesteps() const { return timesteps_; }
  const std::vector<float>& sigmas() const { return sigmas_; }  // empty for the alpha-parameterised samplers
  virtual double init_noise_sigma() const { return 1.0; }
  virtual bool needs_noise() const { return false; }

  // out (n) = the model input for step i; identity except for the Euler samplers.
  virtual void scale_model_input(float* out, const float* sample, int64_t n, int step_index) const;
  // prev (n) = the sample after step i. `noise` is required when needs_noise(), ignored otherwise.
  virtual void step(float* prev, const float* model_output, int step_index, const float* sample, int64_t n,
                    const NoiseSource* noise) = 0;

 protected:
  void check_step_index(int step_index) const;
  void check_ready(int num_inference_steps) const;
  float alpha_cumprod_or_final(int64_t t) const;  // ac[t], or final_alpha_cumprod for t < 0

  SamplerKind kind_;
  SchedulerConfig cfg_;
  Tables tables_;
  int num_inference_steps_ = 0;
  std::vector<double> timesteps_;
  std::vector<float> sigmas_;
};

std::unique_ptr<Sampler> make_sampler(SamplerKind kind, const SchedulerConfig& cfg);

}  // namespace dbcore::sched
