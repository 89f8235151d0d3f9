// Noise-schedule tables, config value parsing and the training-side DDPM functions.
// ref: diffusers DDPMScheduler.__init__ / add_noise / get_velocity, betas_for_alpha_bar (cosine).
#include "model/scheduler.h"

#include <cmath>
#include <utility>

#include "core/error.h"
#include "ops/ops.h"

namespace dbcore::sched {

namespace {

template <typename E>
struct Named {
  const char* name;
  E value;
};

// Looks `s` up in `names`; otherwise throws EINVAL "key 'value' is not one of a, b, c".
template <typename E, size_t K>
E parse_named(const char* key, const std::string& s, const Named<E> (&names)[K]) {
  std::string valid;
  for (const Named<E>& n : names) {
    if (s == n.name) return n.value;
    valid += valid.empty() ? n.name : std::string(", ") + n.name;
  }
  throw Error("EINVAL", format("scheduler config: %s '%s' is not one of %s", key, s.c_str(), valid.c_str()));
}

// torch.linspace(start, end, T, dtype=float32): float32 step, filled from both ends towards the middle.
std::vector<float> torch_linspace_f32(double start_d, double end_d, int T) {
  std::vector<float> out(T);
  const float start = static_cast<float>(start_d), end = static_cast<float>(end_d);
  if (T == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(T - 1);
  const int halfway = T / 2;
  for (int i = 0; i < T; ++i) out[i] = i < halfway ? start + step * i : end - step * (T - i - 1);
  return out;
}

// Cosine schedule (Nichol & Dhariwal 2021, eq. 17) as diffusers' betas_for_alpha_bar: float64, capped at 0.999.
std::vector<float> cosine_betas(int T) {
  auto alpha_bar = [](double t) {
    double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<float> betas(T);
  for (int i = 0; i < T; ++i) {
    double t1 = double(i) / T, t2 = double(i + 1) / T;
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

std::vector<float> make_betas(const SchedulerConfig& cfg) {
  const int T = cfg.num_train_timesteps;
  if (!cfg.trained_betas.empty()) {
    DBCORE_CHECK(int(cfg.trained_betas.size()) == T, "EINVAL",
                 "scheduler config: trained_betas has %zu entries but num_train_timesteps is %d",
                 cfg.trained_betas.size(), T);
    return std::vector<float>(cfg.trained_betas.begin(), cfg.trained_betas.end());
  }
  switch (cfg.beta_schedule) {
    case BetaSchedule::Linear:
      return torch_linspace_f32(cfg.beta_start, cfg.beta_end, T);
    case BetaSchedule::ScaledLinear: {
      std::vector<float> b = torch_linspace_f32(std::sqrt(cfg.beta_start), std::sqrt(cfg.beta_end), T);
      for (float& x : b) x = x * x;
      return b;
    }
    case BetaSchedule::SquaredCosCapV2:
      return cosine_betas(T);
  }
  return {};
}

void check_timesteps(const int32_t* timesteps, int64_t B, size_t T) {
  for (int64_t b = 0; b < B; ++b)
    DBCORE_CHECK(timesteps[b] >= 0 && size_t(timesteps[b]) < T, "EINVAL",
                 "timesteps[%lld] = %d is outside [0, %zu)", (long long)b, timesteps[b], T);
}

}  // namespace

BetaSchedule parse_beta_schedule(const std::string& s) {
  static const Named<BetaSchedule> names[] = {{"linear", BetaSchedule::Linear},
                                              {"scaled_linear", BetaSchedule::ScaledLinear},
                                              {"squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2}};
  return parse_named("beta_schedule", s, names);
}

Prediction parse_prediction(const std::string& s) {
  static const Named<Prediction> names[] = {
      {"epsilon", Prediction::Epsilon}, {"v_prediction", Prediction::VPrediction}, {"sample", Prediction::Sample}};
  return parse_named("prediction_type", s, names);
}

Spacing parse_spacing(const std::string& s) {
  static const Named<Spacing> names[] = {
      {"leading", Spacing::Leading}, {"linspace", Spacing::Linspace}, {"trailing", Spacing::Trailing}};
  return parse_named("timestep_spacing", s, names);
}

FinalSigmas parse_final_sigmas(const std::string& s) {
  static const Named<FinalSigmas> names[] = {{"zero", FinalSigmas::Zero}, {"sigma_min", FinalSigmas::SigmaMin}};
  return parse_named("final_sigmas_type", s, names);
}

VarianceType parse_variance_type(const std::string& s) {
  static const Named<VarianceType> names[] = {{"fixed_small", VarianceType::FixedSmall},
                                              {"fixed_small_log", VarianceType::FixedSmallLog},
                                              {"fixed_large", VarianceType::FixedLarge}};
  return parse_named("variance_type", s, names);
}

SolverType parse_solver_type(const std::string& s) {
  static const Named<SolverType> names[] = {{"midpoint", SolverType::Midpoint}, {"heun", SolverType::Heun}};
  return parse_named("solver_type", s, names);
}

SamplerKind parse_sampler_kind(const std::string& s) {
  static const Named<SamplerKind> names[] = {{"ddpm", SamplerKind::DDPM},
                                             {"ddim", SamplerKind::DDIM},
                                             {"pndm", SamplerKind::PNDM},
                                             {"euler", SamplerKind::Euler},
                                             {"euler_ancestral", SamplerKind::EulerAncestral},
                                             {"dpmsolver_multistep", SamplerKind::DPMSolverMultistep}};
  return parse_named("sampler", s, names);
}

Tables make_tables(const SchedulerConfig& cfg) {
  DBCORE_CHECK(cfg.num_train_timesteps >= 2 && cfg.num_train_timesteps <= 100000, "EINVAL",
               "scheduler config: num_train_timesteps = %d must be in [2, 100000]", cfg.num_train_timesteps);
  DBCORE_CHECK(cfg.beta_start > 0 && cfg.beta_end > 0 && cfg.beta_start < 1 && cfg.beta_end < 1, "EINVAL",
               "scheduler config: beta_start = %g and beta_end = %g must lie in (0, 1)", cfg.beta_start,
               cfg.beta_end);
  Tables t;
  t.betas = make_betas(cfg);
  t.alphas_cumprod.resize(t.betas.size());
  double acc = 1.0;  // torch's CPU cumprod accumulates in double
  for (size_t i = 0; i < t.betas.size(); ++i) {
    acc *= static_cast<double>(1.0f - t.betas[i]);
    t.alphas_cumprod[i] = static_cast<float>(acc);
  }
  return t;
}

namespace {
// out[b] = α_b · a[b] + β_b · c[b] for each row b of M elements, on the context's backend.
template <typename Coefs>
void mix_rows(const ops::Context& ctx, float* out, const float* a, const float* c, int64_t B, int64_t M, Coefs coefs) {
  for (int64_t b = 0; b < B; ++b) {
    const auto [alpha, beta] = coefs(b);
    ops::axpby(ctx, out + b * M, alpha, a + b * M, beta, c + b * M, M);
  }
}

// (sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) in float32, as diffusers computes them.
std::pair<float, float> noise_coefficients(const std::vector<float>& alphas_cumprod, int32_t t) {
  const float ac = alphas_cumprod[t];
  return {std::sqrt(ac), std::sqrt(1.0f - ac)};
}
}  // namespace

void add_noise(const ops::Context& ctx, float* noisy, const float* x0, const float* noise, const int32_t* timesteps,
               const std::vector<float>& alphas_cumprod, int64_t B, int64_t M) {
  check_timesteps(timesteps, B, alphas_cumprod.size());
  mix_rows(ctx, noisy, x0, noise, B, M, [&](int64_t b) { return noise_coefficients(alphas_cumprod, timesteps[b]); });
}

void get_velocity(const ops::Context& ctx, float* v, const float* sample, const float* noise,
                  const int32_t* timesteps, const std::vector<float>& alphas_cumprod, int64_t B, int64_t M) {
  check_timesteps(timesteps, B, alphas_cumprod.size());
  mix_rows(ctx, v, noise, sample, B, M, [&](int64_t b) {
    const auto [sa, sb] = noise_coefficients(alphas_cumprod, timesteps[b]);
    return std::pair<float, float>(sa, -sb);
  });
}

}  // namespace dbcore::sched
