// The inference samplers: timestep/sigma schedules and one update per step.
// ref: diffusers DDPMScheduler.step, DDIMScheduler.step (Song et al. 2020, eq. 12), PNDMScheduler.step_plms
// (Liu et al. 2022, linear multistep), EulerDiscreteScheduler / EulerAncestralDiscreteScheduler (Karras et al.
// 2022, alg. 2; k-diffusion's ancestral split), DPMSolverMultistepScheduler (Lu et al. 2022, DPM-Solver++ 2M).
// Precision: see scheduler.h. Scalars marked "float64" follow numpy; everything else is float32 like torch.
// Element-wise loops run over n, the elements of the whole latent tensor.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "model/scheduler.h"

namespace dbcore::sched {

namespace {

// ---- numpy-style schedule helpers (float64) ------------------------------------------------------------

// np.linspace(start, stop, num): i·step + start, last entry exactly stop.
std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> y(num, start);
  if (num < 2) return y;
  const double step = (stop - start) / (num - 1);
  for (int i = 0; i < num; ++i) y[i] = i * step + start;
  y[num - 1] = stop;
  return y;
}

// np.arange(start, 0, -step) for start, step > 0 (numpy fills start + i·delta with delta = a[1] - a[0]).
std::vector<double> np_arange_down(double start, double step) {
  const int64_t len = static_cast<int64_t>(std::ceil(start / step));
  const double delta = (start - step) - start;
  std::vector<double> y(std::max<int64_t>(len, 0));
  for (int64_t i = 0; i < len; ++i) y[i] = start + i * delta;
  return y;
}

// np.round: half to even (the default rounding mode).
double np_round(double x) { return std::nearbyint(x); }

// Descending timesteps of DDPM / DDIM / PNDM / Euler for the three spacings (Lin et al. 2023, table 2).
// `round_linspace` false keeps linspace's fractional values rounded to float32 (Euler).
std::vector<double> spaced_timesteps(Spacing spacing, int T, int n, int steps_offset, bool round_linspace) {
  std::vector<double> ts;
  switch (spacing) {
    case Spacing::Leading: {
      const int ratio = T / n;
      for (int i = n - 1; i >= 0; --i) ts.push_back(double(i) * ratio + steps_offset);
      break;
    }
    case Spacing::Linspace:
      for (double v : np_linspace(0, T - 1, n))
        ts.insert(ts.begin(), round_linspace ? np_round(v) : double(static_cast<float>(v)));
      break;
    case Spacing::Trailing:
      for (double v : np_arange_down(T, double(T) / n)) ts.push_back(np_round(v) - 1);
      break;
  }
  return ts;
}

void check_timestep_range(const std::vector<double>& ts, int T, const char* sampler) {
  for (double t : ts)
    DBCORE_CHECK(t >= 0 && t <= T - 1, "EINVAL",
                 "%s: timestep %g falls outside [0, %d]; lower steps_offset or change timestep_spacing", sampler,
                 t, T - 1);
}

// σ(t) = sqrt((1 - ᾱ_t) / ᾱ_t) for every training timestep, float32.
std::vector<float> sigma_table(const std::vector<float>& ac) {
  std::vector<float> s(ac.size());
  for (size_t i = 0; i < ac.size(); ++i) s[i] = std::sqrt((1.0f - ac[i]) / ac[i]);
  return s;
}

// np.interp(x, arange(T), fp) in float64.
double np_interp(double x, const std::vector<float>& fp) {
  const int T = static_cast<int>(fp.size());
  if (x <= 0) return fp[0];
  if (x >= T - 1) return fp[T - 1];
  const int j = static_cast<int>(std::floor(x));
  if (x == j) return fp[j];
  const double slope = double(fp[j + 1]) - double(fp[j]);
  return slope * (x - j) + fp[j];
}

// Karras et al. 2022, eq. 5 with ρ = 7, float64.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  const double rho = 7.0, min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
  std::vector<double> s;
  for (double r : np_linspace(0, 1, n)) s.push_back(std::pow(max_inv + r * (min_inv - max_inv), rho));
  return s;
}

// Fractional timestep whose log σ interpolates `sigma` linearly in the table (diffusers' _sigma_to_t).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  const int T = static_cast<int>(log_sigmas.size());
  int low = 0;  // the last index with log_sigmas[i] <= log_sigma (0 when none), at most T - 2
  for (int i = 0; i < T; ++i)
    if (log_sigma - log_sigmas[i] >= 0) low = i;
  low = std::min(low, T - 2);
  const double lo = log_sigmas[low], hi = log_sigmas[low + 1];
  const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1 - w) * low + w * (low + 1);
}

std::vector<float> log_of(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = std::log(x[i]);
  return y;
}

// ---- shared per-element pieces -------------------------------------------------------------------------

// Predicted x0 from an alpha-parameterised model output (DDPM, DDIM): float32, torch's operation order.
struct AlphaX0 {
  Prediction pred;
  float sa, sb;  // sqrt(ᾱ_t), sqrt(1 - ᾱ_t)
  bool clip;
  float range;
  float x0(float mo, float s) const {
    float x = pred == Prediction::Epsilon ? (s - sb * mo) / sa : pred == Prediction::VPrediction ? sa * s - sb * mo : mo;
    return clip ? std::clamp(x, -range, range) : x;
  }
  // ε implied by the (unclipped) output, as diffusers' pred_epsilon.
  float eps(float mo, float s, float x0) const {
    return pred == Prediction::Epsilon ? mo : pred == Prediction::VPrediction ? sa * mo + sb * s : (s - sa * x0) / sb;
  }
};

void require_noise(const NoiseSource* noise, const char* sampler) {
  DBCORE_CHECK(noise != nullptr, "EINVAL", "%s: this step is stochastic and needs a noise source {seed, offset}",
               sampler);
}

// ---- DDPM ----------------------------------------------------------------------------------------------

class DDPMSampler : public Sampler {
 public:
  using Sampler::Sampler;
  bool needs_noise() const override { return true; }

  void set_timesteps(int n) override {
    check_ready(n);
    timesteps_ = spaced_timesteps(cfg_.timestep_spacing, cfg_.num_train_timesteps, n, cfg_.steps_offset, true);
    check_timestep_range(timesteps_, cfg_.num_train_timesteps, "ddpm");
    num_inference_steps_ = n;
  }

  // Posterior mean μ̃(x_t, x0) (Ho et al. 2020, eq. 7) plus σ_t·z for t > 0.
  void step(float* prev, const float* mo, int i, const float* sample, int64_t n, const NoiseSource* noise) override {
    check_step_index(i);
    const int64_t t = static_cast<int64_t>(timesteps_[i]);
    const int64_t prev_t = i + 1 < int(timesteps_.size()) ? static_cast<int64_t>(timesteps_[i + 1]) : -1;
    const float at = tables_.alphas_cumprod[t], ap = prev_t >= 0 ? tables_.alphas_cumprod[prev_t] : 1.0f;
    const float bt = 1 - at, bp = 1 - ap, cur_alpha = at / ap, cur_beta = 1 - cur_alpha;
    const AlphaX0 p{cfg_.prediction_type, std::sqrt(at), std::sqrt(bt), cfg_.clip_sample, float(cfg_.clip_sample_range)};
    const float c_x0 = (std::sqrt(ap) * cur_beta) / bt, c_s = std::sqrt(cur_alpha) * bp / bt;
    float std_dev = 0;
    if (t > 0) {
      require_noise(noise, "ddpm");
      const float var = std::max((bp / bt) * cur_beta, 1e-20f);
      switch (cfg_.variance_type) {
        case VarianceType::FixedSmallLog: std_dev = std::exp(0.5f * std::log(var)); break;
        case VarianceType::FixedLarge: std_dev = std::sqrt(cur_beta); break;
        default: std_dev = std::sqrt(var); break;
      }
      normal_fill(prev, n, noise->seed, noise->offset);
    }
    for (int64_t k = 0; k < n; ++k) {
      float mean = c_x0 * p.x0(mo[k], sample[k]) + c_s * sample[k];
      prev[k] = t > 0 ? mean + std_dev * prev[k] : mean;
    }
  }
};

// ---- DDIM ----------------------------------------------------------------------------------------------

class DDIMSampler : public Sampler {
 public:
  DDIMSampler(SamplerKind kind, const SchedulerConfig& cfg) : Sampler(kind, cfg) {
    DBCORE_CHECK(cfg.eta >= 0, "EINVAL", "ddim: eta = %g must be >= 0", cfg.eta);
  }
  bool needs_noise() const override { return cfg_.eta > 0; }

  void set_timesteps(int n) override {
    check_ready(n);
    timesteps_ = spaced_timesteps(cfg_.timestep_spacing, cfg_.num_train_timesteps, n, cfg_.steps_offset, true);
    check_timestep_range(timesteps_, cfg_.num_train_timesteps, "ddim");
    num_inference_steps_ = n;
  }

  // x_prev = sqrt(ᾱ_prev)·x0 + sqrt(1 - ᾱ_prev - σ²)·ε + σ·z,  σ = η·sqrt((1-ᾱ_prev)/(1-ᾱ_t)·(1 - ᾱ_t/ᾱ_prev)).
  void step(float* prev, const float* mo, int i, const float* sample, int64_t n, const NoiseSource* noise) override {
    check_step_index(i);
    const int64_t t = static_cast<int64_t>(timesteps_[i]);
    const int64_t prev_t = t - cfg_.num_train_timesteps / num_inference_steps_;
    const float at = tables_.alphas_cumprod[t], ap = alpha_cumprod_or_final(prev_t);
    const float bt = 1 - at, bp = 1 - ap;
    const AlphaX0 p{cfg_.prediction_type, std::sqrt(at), std::sqrt(bt), cfg_.clip_sample, float(cfg_.clip_sample_range)};
    const float variance = (bp / bt) * (1 - at / ap);
    const float std_dev = static_cast<float>(cfg_.eta) * std::sqrt(variance);
    const float c_dir = std::sqrt(1 - ap - std_dev * std_dev), c_x0 = std::sqrt(ap);
    const bool stochastic = cfg_.eta > 0;
    if (stochastic) {
      require_noise(noise, "ddim");
      normal_fill(prev, n, noise->seed, noise->offset);
    }
    for (int64_t k = 0; k < n; ++k) {
      const float x0 = p.x0(mo[k], sample[k]);
      const float x = c_x0 * x0 + c_dir * p.eps(mo[k], sample[k], x0);
      prev[k] = stochastic ? x + std_dev * prev[k] : x;
    }
  }
};

// ---- PNDM (PLMS only) ----------------------------------------------------------------------------------

class PNDMSampler : public Sampler {
 public:
  PNDMSampler(SamplerKind kind, const SchedulerConfig& cfg) : Sampler(kind, cfg) {
    DBCORE_CHECK(cfg.prediction_type != Prediction::Sample, "EINVAL",
                 "pndm: prediction_type 'sample' is not supported (epsilon or v_prediction)");
  }

  // diffusers' skip_prk_steps schedule: the second timestep is repeated (one extra model call that the
  // first PLMS step averages with, a 2nd-order warm start).
  void set_timesteps(int n) override {
    check_ready(n);
    std::vector<double> d =
        spaced_timesteps(cfg_.timestep_spacing, cfg_.num_train_timesteps, n, cfg_.steps_offset, true);
    check_timestep_range(d, cfg_.num_train_timesteps, "pndm");
    if (n >= 2) d.insert(d.begin() + 1, d[1]);
    timesteps_ = d;
    num_inference_steps_ = n;
    counter_ = 0;
    num_ets_ = 0;
  }

  void step(float* prev, const float* mo, int i, const float* sample, int64_t n, const NoiseSource*) override {
    check_step_index(i);
    DBCORE_CHECK(i == counter_, "EINVAL", "pndm: step %d called out of order (expected step %d)", i, counter_);
    size_buffers(n);
    const int ratio = cfg_.num_train_timesteps / num_inference_steps_;
    int64_t t = static_cast<int64_t>(timesteps_[i]), prev_t = t - ratio;
    if (counter_ != 1) {
      push_ets(mo, n);
    } else {  // the repeated timestep: step again from the saved sample, over the same interval
      prev_t = t;
      t = t + ratio;
    }
    float* eps = combined_.data();
    const float* x = sample;
    const float *e1 = ets_[0].data(), *e2 = ets_[1].data(), *e3 = ets_[2].data(), *e4 = ets_[3].data();
    if (num_ets_ == 1 && counter_ == 0) {
      std::copy(mo, mo + n, eps);
      std::copy(sample, sample + n, cur_sample_.begin());
    } else if (num_ets_ == 1 && counter_ == 1) {
      for (int64_t k = 0; k < n; ++k) eps[k] = (mo[k] + e1[k]) / 2;
      x = cur_sample_.data();
    } else if (num_ets_ == 2) {
      for (int64_t k = 0; k < n; ++k) eps[k] = (3 * e1[k] - e2[k]) / 2;
    } else if (num_ets_ == 3) {
      for (int64_t k = 0; k < n; ++k) eps[k] = (23 * e1[k] - 16 * e2[k] + 5 * e3[k]) / 12;
    } else {
      const float c = 1.0f / 24;
      for (int64_t k = 0; k < n; ++k) eps[k] = c * (55 * e1[k] - 59 * e2[k] + 37 * e3[k] - 9 * e4[k]);
    }
    prev_sample(prev, x, eps, t, prev_t, n);
    ++counter_;
  }

 private:
  // ets_[0] is the newest output; keeps the last four.
  void push_ets(const float* mo, int64_t n) {
    std::rotate(ets_.begin(), ets_.end() - 1, ets_.end());
    std::copy(mo, mo + n, ets_[0].begin());
    num_ets_ = std::min(num_ets_ + 1, 4);
  }

  void size_buffers(int64_t n) {
    if (counter_ == 0) {
      for (auto& e : ets_) e.assign(n, 0.f);
      cur_sample_.assign(n, 0.f);
      combined_.assign(n, 0.f);
    }
    DBCORE_CHECK(int64_t(combined_.size()) == n, "ESHAPE", "pndm: the sample size changed from %zu to %lld mid-run",
                 combined_.size(), (long long)n);
  }

  // Liu et al. 2022, eq. 11 (the transfer part φ): x_prev from x_t and the combined ε.
  void prev_sample(float* prev, const float* x, const float* eps, int64_t t, int64_t prev_t, int64_t n) const {
    const float at = tables_.alphas_cumprod[t], ap = alpha_cumprod_or_final(prev_t);
    const float bt = 1 - at, bp = 1 - ap;
    const float sa = std::sqrt(at), sb = std::sqrt(bt);
    const float c_x = std::sqrt(ap / at), c_diff = ap - at;
    const float denom = at * std::sqrt(bp) + std::sqrt(at * bt * ap);
    const bool v = cfg_.prediction_type == Prediction::VPrediction;
    for (int64_t k = 0; k < n; ++k) {
      const float e = v ? sa * eps[k] + sb * x[k] : eps[k];
      prev[k] = c_x * x[k] - c_diff * e / denom;
    }
  }

  int counter_ = 0;
  int num_ets_ = 0;
  std::vector<std::vector<float>> ets_ = std::vector<std::vector<float>>(4);
  std::vector<float> cur_sample_, combined_;
};

// ---- Euler and Euler ancestral -------------------------------------------------------------------------

class EulerSampler : public Sampler {
 public:
  EulerSampler(SamplerKind kind, const SchedulerConfig& cfg) : Sampler(kind, cfg) {
    if (ancestral()) {
      DBCORE_CHECK(cfg.prediction_type != Prediction::Sample, "EINVAL",
                   "euler_ancestral: prediction_type 'sample' is not supported (epsilon or v_prediction)");
      DBCORE_CHECK(!cfg.use_karras_sigmas, "EINVAL", "euler_ancestral: use_karras_sigmas is not supported");
    }
  }
  bool needs_noise() const override { return ancestral(); }

  void set_timesteps(int n) override {
    check_ready(n);
    const int T = cfg_.num_train_timesteps;
    std::vector<double> ts = spaced_timesteps(cfg_.timestep_spacing, T, n, cfg_.steps_offset, false);
    check_timestep_range(ts, T, ancestral() ? "euler_ancestral" : "euler");
    const std::vector<float> table = sigma_table(tables_.alphas_cumprod);
    std::vector<double> s;
    for (double t : ts) s.push_back(np_interp(t, table));
    if (cfg_.use_karras_sigmas) {
      s = karras_sigmas(cfg_.sigma_min >= 0 ? cfg_.sigma_min : s.back(),
                        cfg_.sigma_max >= 0 ? cfg_.sigma_max : s.front(), n);
      const std::vector<float> log_sigmas = log_of(table);
      for (int k = 0; k < n; ++k) ts[k] = sigma_to_t(s[k], log_sigmas);
    }
    sigmas_.clear();
    for (double v : s) sigmas_.push_back(static_cast<float>(v));
    sigmas_.push_back(cfg_.final_sigmas_type == FinalSigmas::SigmaMin && !ancestral() ? table[0] : 0.0f);
    timesteps_.clear();
    for (double t : ts) timesteps_.push_back(static_cast<float>(t));
    num_inference_steps_ = n;
  }

  // diffusers' quirk: sqrt(σ_max² + 1) for "leading" spacing, σ_max otherwise.
  double init_noise_sigma() const override {
    DBCORE_CHECK(!sigmas_.empty(), "EINVAL", "init_noise_sigma needs set_timesteps first");
    const float m = *std::max_element(sigmas_.begin(), sigmas_.end());
    return cfg_.timestep_spacing == Spacing::Leading ? std::sqrt(m * m + 1) : m;
  }

  // x / sqrt(σ² + 1): the EDM input scaling c_in.
  void scale_model_input(float* out, const float* x, int64_t n, int i) const override {
    check_step_index(i);
    const float s = sigmas_[i], d = std::sqrt(s * s + 1);
    for (int64_t k = 0; k < n; ++k) out[k] = x[k] / d;
  }

  void step(float* prev, const float* mo, int i, const float* sample, int64_t n, const NoiseSource* noise) override {
    check_step_index(i);
    const float sigma = sigmas_[i], sigma_next = sigmas_[i + 1];
    const float c_v = -sigma / std::sqrt(sigma * sigma + 1), d_v = sigma * sigma + 1;
    float sigma_up = 0, dt = sigma_next - sigma;
    if (ancestral()) {  // split σ_next² into a deterministic σ_down² and fresh noise σ_up²
      require_noise(noise, "euler_ancestral");
      const float sf2 = sigma * sigma, st2 = sigma_next * sigma_next;
      sigma_up = std::sqrt(st2 * (sf2 - st2) / sf2);
      dt = std::sqrt(st2 - sigma_up * sigma_up) - sigma;
      normal_fill(prev, n, noise->seed, noise->offset);
    }
    const Prediction pred = cfg_.prediction_type;
    for (int64_t k = 0; k < n; ++k) {
      const float s = sample[k];
      const float x0 = pred == Prediction::Epsilon ? s - sigma * mo[k]
                       : pred == Prediction::VPrediction ? mo[k] * c_v + s / d_v
                                                          : mo[k];
      const float x = s + ((s - x0) / sigma) * dt;
      prev[k] = ancestral() ? x + prev[k] * sigma_up : x;
    }
  }

 private:
  bool ancestral() const { return kind_ == SamplerKind::EulerAncestral; }
};

// ---- DPM-Solver++ (multistep, orders 1 and 2) ----------------------------------------------------------

class DPMSolverSampler : public Sampler {
 public:
  DPMSolverSampler(SamplerKind kind, const SchedulerConfig& cfg) : Sampler(kind, cfg) {
    DBCORE_CHECK(cfg.solver_order == 1 || cfg.solver_order == 2, "EINVAL",
                 "dpmsolver_multistep: solver_order = %d is not supported (1 or 2)", cfg.solver_order);
  }

  void set_timesteps(int n) override {
    check_ready(n);
    const int T = cfg_.num_train_timesteps;
    const int last = T - clipped_lambda_count();
    std::vector<double> ts;
    switch (cfg_.timestep_spacing) {
      case Spacing::Linspace: {
        std::vector<double> l = np_linspace(0, last - 1, n + 1);
        for (int k = n; k >= 1; --k) ts.push_back(np_round(l[k]));
        break;
      }
      case Spacing::Leading: {
        const int ratio = last / (n + 1);
        for (int k = n; k >= 1; --k) ts.push_back(double(k) * ratio + cfg_.steps_offset);
        break;
      }
      case Spacing::Trailing:
        for (double v : np_arange_down(last, double(T) / n)) ts.push_back(np_round(v) - 1);
        break;
    }
    check_timestep_range(ts, T, "dpmsolver_multistep");
    const std::vector<float> table = sigma_table(tables_.alphas_cumprod);
    std::vector<double> s;
    if (cfg_.use_karras_sigmas) {
      s = karras_sigmas(cfg_.sigma_min >= 0 ? cfg_.sigma_min : table.front(),
                        cfg_.sigma_max >= 0 ? cfg_.sigma_max : table.back(), n);
      const std::vector<float> log_sigmas = log_of(table);
      ts.clear();
      for (double v : s) ts.push_back(np_round(sigma_to_t(v, log_sigmas)));
    } else {
      for (double t : ts) s.push_back(np_interp(t, table));
    }
    sigmas_.clear();
    for (double v : s) sigmas_.push_back(static_cast<float>(v));
    sigmas_.push_back(cfg_.final_sigmas_type == FinalSigmas::SigmaMin ? table[0] : 0.0f);
    timesteps_ = ts;
    num_inference_steps_ = static_cast<int>(ts.size());
    steps_done_ = 0;
    lower_order_nums_ = 0;
  }

  void step(float* prev, const float* mo, int i, const float* sample, int64_t n, const NoiseSource*) override {
    check_step_index(i);
    DBCORE_CHECK(i == steps_done_, "EINVAL", "dpmsolver_multistep: step %d called out of order (expected step %d)",
                 i, steps_done_);
    if (i == 0) {
      x0_.assign(n, 0.f);
      x0_prev_.assign(n, 0.f);
    }
    DBCORE_CHECK(int64_t(x0_.size()) == n, "ESHAPE",
                 "dpmsolver_multistep: the sample size changed from %zu to %lld mid-run", x0_.size(), (long long)n);
    const int N = static_cast<int>(timesteps_.size());
    const bool lower_order_final =
        i == N - 1 && (cfg_.euler_at_final || (cfg_.lower_order_final && N < 15) ||
                       cfg_.final_sigmas_type == FinalSigmas::Zero);
    x0_.swap(x0_prev_);
    convert_to_x0(x0_.data(), mo, sample, sigmas_[i], n);
    if (cfg_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final)
      first_order(prev, sample, i, n);
    else
      second_order(prev, sample, i, n);
    lower_order_nums_ = std::min(lower_order_nums_ + 1, cfg_.solver_order);
    ++steps_done_;
  }

 private:
  struct AlphaSigma {
    float alpha, sigma, lambda;  // α_t = 1/sqrt(σ²+1), σ_t = σ·α_t, λ = log α_t - log σ_t
  };
  static AlphaSigma alpha_sigma(float sigma) {
    const float a = 1 / std::sqrt(sigma * sigma + 1), s = sigma * a;
    return {a, s, std::log(a) - std::log(s)};
  }

  // Number of training timesteps whose λ(t) lies below lambda_min_clipped (searchsorted on flipped λ).
  int clipped_lambda_count() const {
    int count = 0;
    for (float ac : tables_.alphas_cumprod) {
      const float lambda = std::log(std::sqrt(ac)) - std::log(std::sqrt(1 - ac));
      if (lambda < cfg_.lambda_min_clipped) ++count;
    }
    return count;
  }

  void convert_to_x0(float* x0, const float* mo, const float* sample, float sigma, int64_t n) const {
    const AlphaSigma as = alpha_sigma(sigma);
    for (int64_t k = 0; k < n; ++k)
      x0[k] = cfg_.prediction_type == Prediction::Epsilon       ? (sample[k] - as.sigma * mo[k]) / as.alpha
              : cfg_.prediction_type == Prediction::VPrediction ? as.alpha * sample[k] - as.sigma * mo[k]
                                                                : mo[k];
  }

  // DPM-Solver++(1) = DDIM in the data-prediction form: x_t = σ_t/σ_s·x_s - α_t(e^{-h} - 1)·x0.
  void first_order(float* prev, const float* sample, int i, int64_t n) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]), s = alpha_sigma(sigmas_[i]);
    const float h = t.lambda - s.lambda;
    const float c_s = t.sigma / s.sigma, c_x0 = t.alpha * (std::exp(-h) - 1.0f);
    for (int64_t k = 0; k < n; ++k) prev[k] = c_s * sample[k] - c_x0 * x0_[k];
  }

  // DPM-Solver++(2M), Lu et al. 2022 alg. 2: D1 = (x0_i - x0_{i-1}) / r0 with r0 = h_{i-1} / h_i.
  void second_order(float* prev, const float* sample, int i, int64_t n) const {
    const AlphaSigma t = alpha_sigma(sigmas_[i + 1]), s0 = alpha_sigma(sigmas_[i]), s1 = alpha_sigma(sigmas_[i - 1]);
    const float h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, r0 = h0 / h;
    const float inv_r0 = 1.0f / r0;
    const float c_s = t.sigma / s0.sigma, c_d0 = t.alpha * (std::exp(-h) - 1.0f);
    const bool midpoint = cfg_.solver_type == SolverType::Midpoint;
    const float c_d1 = midpoint ? 0.5f * c_d0 : t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
    for (int64_t k = 0; k < n; ++k) {
      const float d1 = inv_r0 * (x0_[k] - x0_prev_[k]);
      const float x = c_s * sample[k] - c_d0 * x0_[k];
      prev[k] = midpoint ? x - c_d1 * d1 : x + c_d1 * d1;
    }
  }

  int steps_done_ = 0;
  int lower_order_nums_ = 0;
  std::vector<float> x0_, x0_prev_;  // data predictions of this step and the previous one
};

}  // namespace

// ---- Sampler base --------------------------------------------------------------------------------------

Sampler::Sampler(SamplerKind kind, const SchedulerConfig& cfg) : kind_(kind), cfg_(cfg), tables_(make_tables(cfg)) {}

void Sampler::check_ready(int n) const {
  DBCORE_CHECK(n >= 1 && n <= cfg_.num_train_timesteps, "EINVAL",
               "set_timesteps: num_inference_steps = %d must be in [1, num_train_timesteps = %d]", n,
               cfg_.num_train_timesteps);
}

void Sampler::check_step_index(int i) const {
  DBCORE_CHECK(!timesteps_.empty(), "EINVAL", "call set_timesteps before stepping the sampler");
  DBCORE_CHECK(i >= 0 && i < int(timesteps_.size()), "EINVAL", "step index %d is outside [0, %zu)", i,
               timesteps_.size());
}

float Sampler::alpha_cumprod_or_final(int64_t t) const {
  if (t >= 0) return tables_.alphas_cumprod[t];
  return cfg_.set_alpha_to_one ? 1.0f : tables_.alphas_cumprod[0];
}

void Sampler::scale_model_input(float* out, const float* sample, int64_t n, int i) const {
  check_step_index(i);
  std::copy(sample, sample + n, out);
}

std::unique_ptr<Sampler> make_sampler(SamplerKind kind, const SchedulerConfig& cfg) {
  switch (kind) {
    case SamplerKind::DDPM: return std::make_unique<DDPMSampler>(kind, cfg);
    case SamplerKind::DDIM: return std::make_unique<DDIMSampler>(kind, cfg);
    case SamplerKind::PNDM: return std::make_unique<PNDMSampler>(kind, cfg);
    case SamplerKind::Euler:
    case SamplerKind::EulerAncestral: return std::make_unique<EulerSampler>(kind, cfg);
    case SamplerKind::DPMSolverMultistep: return std::make_unique<DPMSolverSampler>(kind, cfg);
  }
  throw Error("EINVAL", "unknown sampler kind");
}

}  // namespace dbcore::sched
