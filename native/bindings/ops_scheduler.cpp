// Noise schedulers for JS: ops.schedulerTables, ops.addNoise, ops.getVelocity and ops.samplerCreate.
// The config is the parsed scheduler_config.json (diffusers' snake_case keys) with the class defaults filled in by
// ts/sample/schedulers.ts. Every key is checked here: an unknown key, a wrong type, or a feature switch this
// engine does not implement (thresholding, zero-SNR rescaling, …) throws EINVAL naming the key.
#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "js_tensor.h"
#include "model/scheduler.h"
#include "registry.h"
#include "scheduler_config.h"

namespace dbcore::js {
namespace {

using sched::SchedulerConfig;

double number_value(const Napi::Value& v, const std::string& key) {
  DBCORE_CHECK(v.IsNumber(), "EINVAL", "scheduler config: %s must be a number", key.c_str());
  return v.As<Napi::Number>().DoubleValue();
}

int int_value(const Napi::Value& v, const std::string& key) {
  double d = number_value(v, key);
  DBCORE_CHECK(d == std::floor(d) && std::fabs(d) < 1e9, "EINVAL", "scheduler config: %s = %g must be an integer",
               key.c_str(), d);
  return static_cast<int>(d);
}

bool bool_value(const Napi::Value& v, const std::string& key) {
  DBCORE_CHECK(v.IsBoolean(), "EINVAL", "scheduler config: %s must be true or false", key.c_str());
  return v.As<Napi::Boolean>().Value();
}

std::string string_value(const Napi::Value& v, const std::string& key) {
  DBCORE_CHECK(v.IsString(), "EINVAL", "scheduler config: %s must be a string", key.c_str());
  return v.As<Napi::String>().Utf8Value();
}

// A number, or null / undefined for "not set" (returned as -1; the fields it feeds are positive).
double optional_positive(const Napi::Value& v, const std::string& key) {
  if (v.IsNull() || v.IsUndefined()) return -1;
  double d = number_value(v, key);
  DBCORE_CHECK(d > 0, "EINVAL", "scheduler config: %s = %g must be positive", key.c_str(), d);
  return d;
}

std::vector<double> trained_betas_value(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return {};
  DBCORE_CHECK(v.IsArray(), "EINVAL", "scheduler config: trained_betas must be null or an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    double b = number_value(a.Get(i), "trained_betas[" + std::to_string(i) + "]");
    DBCORE_CHECK(b > 0 && b < 1, "EINVAL", "scheduler config: trained_betas[%u] = %g must lie in (0, 1)", i, b);
    out.push_back(b);
  }
  return out;
}

// A switch whose only supported value is `expected`: anything else names the feature as unsupported.
void require_value(const Napi::Value& v, const std::string& key, const std::string& expected) {
  std::string got = v.IsString() ? v.As<Napi::String>().Utf8Value()
                    : v.IsBoolean() ? (v.As<Napi::Boolean>().Value() ? "true" : "false")
                                    : v.ToString().Utf8Value();
  DBCORE_CHECK(got == expected, "EINVAL", "scheduler config: %s = %s is not supported (only %s)", key.c_str(),
               got.c_str(), expected.c_str());
}

using Setter = std::function<void(SchedulerConfig&, const Napi::Value&, const std::string&)>;

const std::map<std::string, Setter>& config_setters() {
  using V = const Napi::Value&;
  using K = const std::string&;
  auto must_be = [](const char* expected) {
    return [expected](SchedulerConfig&, V v, K k) { require_value(v, k, expected); };
  };
  auto ignored = [](SchedulerConfig&, V, K) {};  // parameters of features that are off (checked above)
  static const std::map<std::string, Setter> setters = {
      {"num_train_timesteps", [](SchedulerConfig& c, V v, K k) { c.num_train_timesteps = int_value(v, k); }},
      {"beta_start", [](SchedulerConfig& c, V v, K k) { c.beta_start = number_value(v, k); }},
      {"beta_end", [](SchedulerConfig& c, V v, K k) { c.beta_end = number_value(v, k); }},
      {"beta_schedule", [](SchedulerConfig& c, V v, K k) { c.beta_schedule = sched::parse_beta_schedule(string_value(v, k)); }},
      {"trained_betas", [](SchedulerConfig& c, V v, K) { c.trained_betas = trained_betas_value(v); }},
      {"prediction_type", [](SchedulerConfig& c, V v, K k) { c.prediction_type = sched::parse_prediction(string_value(v, k)); }},
      {"steps_offset", [](SchedulerConfig& c, V v, K k) { c.steps_offset = int_value(v, k); }},
      {"set_alpha_to_one", [](SchedulerConfig& c, V v, K k) { c.set_alpha_to_one = bool_value(v, k); }},
      {"timestep_spacing", [](SchedulerConfig& c, V v, K k) { c.timestep_spacing = sched::parse_spacing(string_value(v, k)); }},
      {"clip_sample", [](SchedulerConfig& c, V v, K k) { c.clip_sample = bool_value(v, k); }},
      {"clip_sample_range", [](SchedulerConfig& c, V v, K k) { c.clip_sample_range = number_value(v, k); }},
      {"variance_type",
       [](SchedulerConfig& c, V v, K k) {
         c.variance_type = v.IsNull() ? sched::VarianceType::None : sched::parse_variance_type(string_value(v, k));
       }},
      {"use_karras_sigmas", [](SchedulerConfig& c, V v, K k) { c.use_karras_sigmas = bool_value(v, k); }},
      {"sigma_min", [](SchedulerConfig& c, V v, K k) { c.sigma_min = optional_positive(v, k); }},
      {"sigma_max", [](SchedulerConfig& c, V v, K k) { c.sigma_max = optional_positive(v, k); }},
      {"final_sigmas_type", [](SchedulerConfig& c, V v, K k) { c.final_sigmas_type = sched::parse_final_sigmas(string_value(v, k)); }},
      {"solver_order", [](SchedulerConfig& c, V v, K k) { c.solver_order = int_value(v, k); }},
      {"solver_type", [](SchedulerConfig& c, V v, K k) { c.solver_type = sched::parse_solver_type(string_value(v, k)); }},
      {"lower_order_final", [](SchedulerConfig& c, V v, K k) { c.lower_order_final = bool_value(v, k); }},
      {"euler_at_final", [](SchedulerConfig& c, V v, K k) { c.euler_at_final = bool_value(v, k); }},
      {"lambda_min_clipped",
       [](SchedulerConfig& c, V v, K k) { c.lambda_min_clipped = v.IsNull() ? -INFINITY : number_value(v, k); }},
      {"eta", [](SchedulerConfig& c, V v, K k) { c.eta = number_value(v, k); }},
      {"skip_prk_steps", must_be("true")},
      {"algorithm_type", must_be("dpmsolver++")},
      {"interpolation_type", must_be("linear")},
      {"timestep_type", must_be("discrete")},
      {"thresholding", must_be("false")},
      {"rescale_betas_zero_snr", must_be("false")},
      {"use_exponential_sigmas", must_be("false")},
      {"use_beta_sigmas", must_be("false")},
      {"use_lu_lambdas", must_be("false")},
      {"use_flow_sigmas", must_be("false")},
      {"use_dynamic_shifting", must_be("false")},
      {"dynamic_thresholding_ratio", ignored},
      {"sample_max_value", ignored},
      {"flow_shift", ignored},
      {"time_shift_type", ignored},
  };
  return setters;
}

}  // namespace

SchedulerConfig scheduler_config_from_js(const Napi::Value& value, const char* what) {
  SchedulerConfig cfg;
  if (value.IsUndefined()) return cfg;
  DBCORE_CHECK(value.IsObject() && !value.IsArray(), "EINVAL", "%s must be a scheduler config object", what);
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Array keys = obj.GetPropertyNames();
  const auto& setters = config_setters();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString().Utf8Value();
    auto it = setters.find(key);
    DBCORE_CHECK(it != setters.end(), "EINVAL", "scheduler config: unknown key '%s'", key.c_str());
    Napi::Value v = obj.Get(key);
    if (!v.IsUndefined()) it->second(cfg, v, key);
  }
  return cfg;
}

namespace {

Napi::Object f32_vector_to_js(Napi::Env env, const std::vector<float>& v) {
  JsTensor t = new_js_tensor(env, DType::F32, {int64_t(v.size())});
  std::copy(v.begin(), v.end(), t.tensor.f32());
  return t.object;
}

// (x, noise, timesteps I32 [B], config) with x and noise of the same shape (B, …).
struct NoiseArgs {
  Tensor x, noise, timesteps;
  sched::Tables tables;
  int64_t B, M;
};
NoiseArgs noise_args(const Napi::CallbackInfo& info, const char* fn, const char* x_name) {
  NoiseArgs a;
  a.x = tensor_arg(info, 0, x_name, DType::F32);
  a.noise = tensor_arg(info, 1, "noise", DType::F32);
  a.timesteps = tensor_arg(info, 2, "timesteps", DType::I32, 1);
  DBCORE_CHECK(a.x.ndim() >= 1, "ESHAPE", "%s: %s must have a batch dimension", fn, x_name);
  check_shape(a.noise, a.x.shape, "noise");
  a.B = a.x.dim(0);
  a.M = a.B ? a.x.numel() / a.B : 0;
  DBCORE_CHECK(a.timesteps.dim(0) == a.B, "ESHAPE", "%s: timesteps has %lld entries for a batch of %lld", fn,
               (long long)a.timesteps.dim(0), (long long)a.B);
  a.tables = sched::make_tables(scheduler_config_from_js(info[3], "config"));
  return a;
}

// ---- sampler handle ------------------------------------------------------------------------------------

using SamplerPtr = std::shared_ptr<sched::Sampler>;
using Method = std::function<Napi::Value(const Napi::CallbackInfo&, sched::Sampler&)>;

// A JS function bound to the sampler; C++ errors become JS errors with `code`, as for registered ops.
Napi::Function bind_method(Napi::Env env, const char* name, SamplerPtr s, Method m) {
  return Napi::Function::New(
      env,
      [s, m](const Napi::CallbackInfo& info) -> Napi::Value {
        try {
          return m(info, *s);
        } catch (...) {
          throw js_error_from_current_exception(info.Env());
        }
      },
      name);
}

int step_index_arg(const Napi::CallbackInfo& info, size_t index) {
  return static_cast<int>(int_arg(info, index, "stepIndex"));
}

// {seed, offset} for stochastic samplers; nullopt-like false when absent.
bool noise_source_arg(const Napi::CallbackInfo& info, size_t index, sched::NoiseSource* out) {
  if (index >= info.Length() || info[index].IsUndefined() || info[index].IsNull()) return false;
  double seed = number_option(info, index, "seed", -1), offset = number_option(info, index, "offset", 0);
  DBCORE_CHECK(seed >= 0 && seed == std::floor(seed) && seed < 9.0e15, "EINVAL",
               "step: noise.seed must be a non-negative integer");
  DBCORE_CHECK(offset >= 0 && offset == std::floor(offset) && offset < 9.0e15, "EINVAL",
               "step: noise.offset must be a non-negative integer");
  out->seed = static_cast<uint64_t>(seed);
  out->offset = static_cast<uint64_t>(offset);
  return true;
}

Napi::Value timesteps_js(const Napi::CallbackInfo& info, sched::Sampler& s) {
  std::vector<float> ts(s.timesteps().begin(), s.timesteps().end());
  return f32_vector_to_js(info.Env(), ts);
}

Napi::Value step_js(const Napi::CallbackInfo& info, sched::Sampler& s) {
  Tensor mo = tensor_arg(info, 0, "modelOutput", DType::F32);
  int i = step_index_arg(info, 1);
  Tensor sample = tensor_arg(info, 2, "sample", DType::F32);
  check_shape(mo, sample.shape, "modelOutput");
  sched::NoiseSource noise;
  bool has_noise = noise_source_arg(info, 3, &noise);
  JsTensor prev = new_js_tensor(info.Env(), DType::F32, sample.shape);
  s.step(prev.tensor.f32(), mo.f32(), i, sample.f32(), sample.numel(), has_noise ? &noise : nullptr);
  return prev.object;
}

Napi::Value scale_model_input_js(const Napi::CallbackInfo& info, sched::Sampler& s) {
  Tensor x = tensor_arg(info, 0, "sample", DType::F32);
  int i = step_index_arg(info, 1);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, x.shape);
  s.scale_model_input(out.tensor.f32(), x.f32(), x.numel(), i);
  return out.object;
}

}  // namespace

// ops.schedulerTables(config) → {betas: F32[T], alphasCumprod: F32[T]}
DBCORE_OP(schedulerTables) {
  sched::Tables t = sched::make_tables(scheduler_config_from_js(info[0], "config"));
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("betas", f32_vector_to_js(info.Env(), t.betas));
  out.Set("alphasCumprod", f32_vector_to_js(info.Env(), t.alphas_cumprod));
  return out;
}

// ops.addNoise(x0, noise, timesteps I32 [B], config) → noisy: sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·noise per sample.
DBCORE_OP(addNoise) {
  NoiseArgs a = noise_args(info, "addNoise", "x0");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, a.x.shape);
  sched::add_noise(ops::Context{}, out.tensor.f32(), a.x.f32(), a.noise.f32(), a.timesteps.as<int32_t>(), a.tables.alphas_cumprod,
                   a.B, a.M);
  return out.object;
}

// ops.getVelocity(sample, noise, timesteps I32 [B], config) → v = sqrt(ᾱ_t)·noise - sqrt(1-ᾱ_t)·sample.
DBCORE_OP(getVelocity) {
  NoiseArgs a = noise_args(info, "getVelocity", "sample");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, a.x.shape);
  sched::get_velocity(ops::Context{}, out.tensor.f32(), a.x.f32(), a.noise.f32(), a.timesteps.as<int32_t>(),
                      a.tables.alphas_cumprod, a.B, a.M);
  return out.object;
}

// ops.samplerCreate(kind, config) → handle with setTimesteps(n), timesteps(), sigmas(), initNoiseSigma(),
// needsNoise(), scaleModelInput(x, i), step(modelOutput, i, sample, noise?: {seed, offset}).
DBCORE_OP(samplerCreate) {
  DBCORE_CHECK(info.Length() >= 1 && info[0].IsString(), "EINVAL",
               "samplerCreate: argument 1 (kind) must be a string such as 'ddim'");
  sched::SamplerKind kind = sched::parse_sampler_kind(info[0].As<Napi::String>().Utf8Value());
  SamplerPtr s = sched::make_sampler(kind, scheduler_config_from_js(info.Length() > 1 ? info[1] : info.Env().Undefined(), "config"));
  Napi::Env env = info.Env();
  Napi::Object h = Napi::Object::New(env);
  h.Set("setTimesteps", bind_method(env, "setTimesteps", s, [](const Napi::CallbackInfo& i, sched::Sampler& s) {
          s.set_timesteps(static_cast<int>(int_arg(i, 0, "numInferenceSteps")));
          return i.Env().Undefined();
        }));
  h.Set("timesteps", bind_method(env, "timesteps", s, timesteps_js));
  h.Set("sigmas", bind_method(env, "sigmas", s, [](const Napi::CallbackInfo& i, sched::Sampler& s) -> Napi::Value {
          if (s.sigmas().empty()) return i.Env().Null();
          return f32_vector_to_js(i.Env(), s.sigmas());
        }));
  h.Set("initNoiseSigma", bind_method(env, "initNoiseSigma", s, [](const Napi::CallbackInfo& i, sched::Sampler& s) {
          return Napi::Number::New(i.Env(), s.init_noise_sigma());
        }));
  h.Set("needsNoise", bind_method(env, "needsNoise", s, [](const Napi::CallbackInfo& i, sched::Sampler& s) {
          return Napi::Boolean::New(i.Env(), s.needs_noise());
        }));
  h.Set("scaleModelInput", bind_method(env, "scaleModelInput", s, scale_model_input_js));
  h.Set("step", bind_method(env, "step", s, step_js));
  return h;
}

}  // namespace dbcore::js
