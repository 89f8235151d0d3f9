// addon.Trainer: one DreamBooth / fine-tuning step over a UNet object (and a TextEncoder object when the text
// encoder trains), owning the optimizer states.
//   new Trainer({unet, textEncoder?, scheduler, priorLossWeight, gradientAccumulationSteps, maxGradNorm,
//                optimizer: {kind: 'adamw'|'adamw8bit', beta1, beta2, eps, weightDecay}, seed, clipSkip,
//                trainTextEncoder, mixedPrecision: 'no'|'bf16'|'fp16', fusedOptimizerStep?, gradientDtype?: 'fp32'|'bf16',
//                lossScale?: {initScale, growthFactor, backoffFactor, growthInterval}})   (fp16: GradScaler's)
//   accumulate({latents, context? | inputIds?, noise?, timesteps?, nInstance}, {returnPrediction?, lr?, dryRun?})
//     (lr: the step's learning rate, needed by the fused step; dryRun: gradients discarded)
//     → Promise<{loss, instanceLoss, priorLoss, prediction?, dprediction?}>
//   apply(lr) → Promise<{gradNorm, clipCoef, skipped, lossScale}>          setTrainTextEncoder(on)
//   state() → {optimizerSteps, noiseOffset, timestepOffset, optimizerStateBytes, gradientBytes,
//              gradientScratchBytes, lossScale?: {scale, growthTracker}}   setState({…})
//   getGrad('unet.<name>' | 'text_encoder.<name>') → F32 copy
//   optimizerState() → [{name, dtype, shape, data}] (copies)   loadOptimizerState([…]) (copies in)
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "async.h"
#include "js_tensor.h"
#include "model/trainer.h"
#include "networks.h"
#include "registry.h"
#include "scheduler_config.h"

namespace dbcore::js {
namespace {

OptimizerConfig optimizer_config_from_js(const Napi::Object& o) {
  const char* w = "optimizer";
  OptimizerConfig c;
  std::string kind = get_string(o, "kind", "adamw", w);
  DBCORE_CHECK(kind == "adamw" || kind == "adamw8bit", "EINVAL", "optimizer.kind '%s' must be adamw or adamw8bit",
               kind.c_str());
  c.kind = kind == "adamw" ? OptimizerConfig::Kind::AdamW : OptimizerConfig::Kind::AdamW8bit;
  c.beta1 = get_number(o, "beta1", c.beta1, w);
  c.beta2 = get_number(o, "beta2", c.beta2, w);
  c.eps = get_number(o, "eps", c.eps, w);
  c.weight_decay = get_number(o, "weightDecay", c.weight_decay, w);
  return c;
}

LossScalerConfig loss_scale_config_from_js(const Napi::Value& v) {
  LossScalerConfig c;
  if (v.IsUndefined()) return c;
  DBCORE_CHECK(v.IsObject(), "EINVAL", "trainer options: lossScale must be an object");
  const Napi::Object o = v.As<Napi::Object>();
  const char* w = "lossScale";
  c.init_scale = get_number(o, "initScale", c.init_scale, w);
  c.growth_factor = get_number(o, "growthFactor", c.growth_factor, w);
  c.backoff_factor = get_number(o, "backoffFactor", c.backoff_factor, w);
  c.growth_interval = int64_t(get_number(o, "growthInterval", double(c.growth_interval), w));
  return c;
}

Napi::Object loss_scale_state_to_js(Napi::Env env, const LossScalerState& s) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("scale", double(s.scale));
  r.Set("growthTracker", double(s.growth_tracker));
  return r;
}

TrainerConfig trainer_config_from_js(const Napi::Object& o) {
  const char* w = "trainer options";
  TrainerConfig c;
  c.noise_schedule = scheduler_config_from_js(o.Get("scheduler"), "scheduler");
  c.prior_loss_weight = float(get_number(o, "priorLossWeight", 1.0, w));
  c.gradient_accumulation_steps = int(get_number(o, "gradientAccumulationSteps", 1, w));
  c.max_grad_norm = get_number(o, "maxGradNorm", 1.0, w);
  Napi::Value opt = o.Get("optimizer");
  c.optimizer = optimizer_config_from_js(opt.IsObject() ? opt.As<Napi::Object>() : Napi::Object::New(o.Env()));
  c.seed = uint64_t(get_number(o, "seed", 0, w));
  c.clip_skip = int(get_number(o, "clipSkip", 1, w));
  c.train_text_encoder = get_bool(o, "trainTextEncoder", false, w);
  const std::string mp = get_string(o, "mixedPrecision", "no", w);
  DBCORE_CHECK(mp == "no" || mp == "bf16" || mp == "fp16", "EINVAL", "mixedPrecision '%s' must be no, bf16 or fp16", mp.c_str());
  c.compute = mp == "bf16" ? Precision::BF16 : mp == "fp16" ? Precision::F16 : Precision::F32;
  c.loss_scale = loss_scale_config_from_js(o.Get("lossScale"));
  const std::string gd = get_string(o, "gradientDtype", "fp32", w);
  DBCORE_CHECK(gd == "fp32" || gd == "bf16", "EINVAL", "gradientDtype '%s' must be fp32 or bf16", gd.c_str());
  const bool fused = get_bool(o, "fusedOptimizerStep", false, w);
  DBCORE_CHECK(!fused || gd == "fp32", "EINVAL",
               "fusedOptimizerStep keeps no gradient block, so gradientDtype bf16 does not apply to it");
  c.gradients = fused ? GradientMode::Fused : gd == "bf16" ? GradientMode::BF16 : GradientMode::F32;
  return c;
}

class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Trainer",
                       {InstanceMethod("accumulate", &TrainerWrap::guard<&TrainerWrap::accumulate>),
                        InstanceMethod("apply", &TrainerWrap::guard<&TrainerWrap::apply>),
                        InstanceMethod("setTrainTextEncoder", &TrainerWrap::guard<&TrainerWrap::set_train_te>),
                        InstanceMethod("state", &TrainerWrap::guard<&TrainerWrap::state>),
                        InstanceMethod("setState", &TrainerWrap::guard<&TrainerWrap::set_state>),
                        InstanceMethod("getGrad", &TrainerWrap::guard<&TrainerWrap::get_grad>),
                        InstanceMethod("optimizerState", &TrainerWrap::guard<&TrainerWrap::optimizer_state>),
                        InstanceMethod("loadOptimizerState", &TrainerWrap::guard<&TrainerWrap::load_optimizer_state>)});
  }

  explicit TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
    try {
      Napi::Object o = object_arg(info, 0, "options");
      unet_ = unet_from_js(o.Get("unet"), "options.unet");
      Napi::Value te = o.Get("textEncoder");
      if (!te.IsUndefined() && !te.IsNull()) te_ = text_encoder_from_js(te, "options.textEncoder");
      TrainerConfig cfg = trainer_config_from_js(o);
      if (te_.model)
        DBCORE_CHECK(te_.model->config().hidden_size == unet_.model->config().cross_attention_dim, "EINVAL",
                     "text encoder width %d differs from the UNet's cross_attention_dim %d",
                     te_.model->config().hidden_size, unet_.model->config().cross_attention_dim);
      unet_.handle->check_idle();
      trainer_ = std::make_unique<Trainer>(*unet_.model, te_.model, cfg);
      refs_.push_back(Napi::Persistent(o.Get("unet")));
      unet_.handle->acquire();
      if (te_.model) {
        refs_.push_back(Napi::Persistent(te));
        te_.handle->acquire();
      }
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }

  ~TrainerWrap() override {
    if (!trainer_) return;
    unet_.handle->release();
    if (te_.handle) te_.handle->release();
  }

 private:
  template <Napi::Value (TrainerWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value guard(const Napi::CallbackInfo& info) {
    try {
      return (this->*M)(info);
    } catch (...) {
      throw js_error_from_current_exception(info.Env());
    }
  }

  void check_idle() const {
    DBCORE_CHECK(!busy_, "EBUSY", "Trainer: another call is still running (await it)");
    unet_.handle->check_idle();
    if (te_.handle) te_.handle->check_idle();
  }
  void set_busy(bool b) {
    busy_ = b;
    unet_.handle->set_busy(b);
    if (te_.handle) te_.handle->set_busy(b);
  }
  Napi::Promise queue(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                      std::vector<Napi::Value> keep) {
    keep.push_back(Value());
    set_busy(true);
    return run_async(env, std::move(work), std::move(finish), keep, [this]() { set_busy(false); });
  }

  Napi::Value accumulate(const Napi::CallbackInfo& info) {
    check_idle();
    Napi::Object b = object_arg(info, 0, "batch");
    Napi::Object opts = object_arg(info, 1, "options", true);
    const bool want_pred = get_bool(opts, "returnPrediction", false, "options");
    std::vector<Napi::Value> keep{b};
    TrainBatch batch;
    batch.lr = get_number(opts, "lr", -1, "options");
    batch.dry_run = get_bool(opts, "dryRun", false, "options");
    Tensor latents = tensor_from_js(b.Get("latents"), "batch.latents");
    check_dtype(latents, DType::F32, "batch.latents");
    check_rank(latents, 4, "batch.latents");
    batch.latents = latents.f32();
    batch.B = int(latents.dim(0));
    batch.C = int(latents.dim(1));
    batch.H = int(latents.dim(2));
    batch.W = int(latents.dim(3));
    batch.n_instance = int(get_number(b, "nInstance", batch.B, "batch"));
    if (!b.Get("context").IsUndefined()) {
      Tensor ctx = tensor_from_js(b.Get("context"), "batch.context");
      check_dtype(ctx, DType::F32, "batch.context");
      check_rank(ctx, 3, "batch.context");
      DBCORE_CHECK(ctx.dim(0) == batch.B && ctx.dim(2) == unet_.model->config().cross_attention_dim, "ESHAPE",
                   "batch.context: expected (%d, S, %d), got %s", batch.B, unet_.model->config().cross_attention_dim,
                   ctx.describe().c_str());
      batch.context = ctx.f32();
      batch.S = int(ctx.dim(1));
    }
    if (!b.Get("inputIds").IsUndefined()) {
      Tensor ids = tensor_from_js(b.Get("inputIds"), "batch.inputIds");
      check_dtype(ids, DType::I32, "batch.inputIds");
      check_rank(ids, 2, "batch.inputIds");
      DBCORE_CHECK(ids.dim(0) == batch.B, "ESHAPE", "batch.inputIds: %lld rows for %d latents", (long long)ids.dim(0), batch.B);
      DBCORE_CHECK(te_.model, "EINVAL", "batch.inputIds given but the Trainer has no text encoder");
      const int vocab = te_.model->config().vocab_size;
      for (int64_t i = 0; i < ids.numel(); ++i)
        DBCORE_CHECK(ids.as<int32_t>()[i] >= 0 && ids.as<int32_t>()[i] < vocab, "EINVAL", "batch.inputIds[%lld] out of range",
                     (long long)i);
      batch.input_ids = ids.as<int32_t>();
      batch.T = int(ids.dim(1));
    }
    if (!b.Get("noise").IsUndefined()) {
      Tensor noise = tensor_from_js(b.Get("noise"), "batch.noise");
      check_dtype(noise, DType::F32, "batch.noise");
      check_shape(noise, latents.shape, "batch.noise");
      batch.noise = noise.f32();
    }
    if (!b.Get("timesteps").IsUndefined()) {
      Tensor t = tensor_from_js(b.Get("timesteps"), "batch.timesteps");
      check_dtype(t, DType::I32, "batch.timesteps");
      check_shape(t, {batch.B}, "batch.timesteps");
      batch.timesteps = t.as<int32_t>();
    }
    trainer_->check_batch(batch);
    JsTensor pred = new_js_tensor(info.Env(), DType::F32, want_pred ? latents.shape : Shape{0});
    JsTensor dpred = new_js_tensor(info.Env(), DType::F32, want_pred ? latents.shape : Shape{0});
    auto stats = std::make_shared<StepStats>();
    Trainer* tr = trainer_.get();
    float* pp = want_pred ? pred.tensor.f32() : nullptr;
    float* dp = want_pred ? dpred.tensor.f32() : nullptr;
    auto refs = std::make_shared<std::vector<Napi::ObjectReference>>();
    refs->push_back(Napi::Persistent(pred.object));
    refs->push_back(Napi::Persistent(dpred.object));
    auto finish = [stats, refs, want_pred](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("loss", stats->loss);
      r.Set("instanceLoss", stats->instance_loss);
      r.Set("priorLoss", stats->prior_loss);
      if (want_pred) {
        r.Set("prediction", (*refs)[0].Value());
        r.Set("dprediction", (*refs)[1].Value());
      }
      return r;
    };
    return queue(info.Env(), [tr, batch, stats, pp, dp]() { *stats = tr->accumulate(batch, pp, dp); }, finish, keep);
  }

  Napi::Value apply(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 0 && info[0].IsNumber(), "EINVAL", "apply(lr): lr must be a number");
    double lr = info[0].As<Napi::Number>().DoubleValue();
    DBCORE_CHECK(lr >= 0 && std::isfinite(lr), "EINVAL", "apply(lr): lr = %g must be finite and >= 0", lr);
    auto step = std::make_shared<AppliedStep>();
    Trainer* tr = trainer_.get();
    auto finish = [step](Napi::Env env) -> Napi::Value {
      Napi::Object r = Napi::Object::New(env);
      r.Set("gradNorm", step->clip.total_norm);
      r.Set("clipCoef", step->clip.coef);
      r.Set("skipped", step->skipped);
      r.Set("lossScale", double(step->loss_scale));
      return r;
    };
    return queue(info.Env(), [tr, lr, step]() { *step = tr->apply(lr); }, finish, {});
  }

  Napi::Value set_train_te(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 0 && info[0].IsBoolean(), "EINVAL", "setTrainTextEncoder(boolean)");
    trainer_->set_train_text_encoder(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
  }

  Napi::Value state(const Napi::CallbackInfo& info) {
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("optimizerSteps", double(trainer_->optimizer().steps()));
    r.Set("noiseOffset", double(trainer_->noise_offset()));
    r.Set("timestepOffset", double(trainer_->timestep_offset()));
    r.Set("optimizerStateBytes", double(trainer_->optimizer().state_bytes()));
    if (trainer_->loss_scaler().enabled())
      r.Set("lossScale", loss_scale_state_to_js(info.Env(), trainer_->loss_scaler().state()));
    r.Set("gradientBytes", double(trainer_->gradient_bytes()));
    r.Set("gradientScratchBytes", double(trainer_->gradient_scratch_bytes()));
    return r;
  }

  Napi::Value get_grad(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 0 && info[0].IsString(), "EINVAL", "getGrad(name): name must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    JsTensor out = new_js_tensor(info.Env(), DType::F32, trainer_->trained_entry(name).shape);
    trainer_->read_gradient(name, out.tensor.f32());
    return out.object;
  }

  Napi::Value set_state(const Napi::CallbackInfo& info) {
    check_idle();
    Napi::Object o = object_arg(info, 0, "state");
    const Napi::Value ls = o.Get("lossScale");
    DBCORE_CHECK(ls.IsUndefined() || ls.IsObject(), "EINVAL", "state.lossScale must be {scale, growthTracker}");
    LossScalerState scaler;
    if (ls.IsObject()) {
      scaler.scale = float(require_number(ls.As<Napi::Object>(), "scale", "state.lossScale"));
      scaler.growth_tracker = int64_t(require_number(ls.As<Napi::Object>(), "growthTracker", "state.lossScale"));
    }
    const int64_t steps = int64_t(require_number(o, "optimizerSteps", "state"));
    const uint64_t noise = uint64_t(require_number(o, "noiseOffset", "state"));
    const uint64_t timesteps = uint64_t(require_number(o, "timestepOffset", "state"));
    if (ls.IsObject()) trainer_->loss_scaler().set_state(scaler);  // validates before anything else changes
    trainer_->optimizer().set_steps(steps);
    trainer_->set_offsets(noise, timesteps);
    return info.Env().Undefined();
  }

  Napi::Value optimizer_state(const Napi::CallbackInfo& info) {
    check_idle();
    std::vector<StateBuffer> bufs = trainer_->optimizer().state_buffers();
    Napi::Array out = Napi::Array::New(info.Env(), bufs.size());
    for (size_t i = 0; i < bufs.size(); ++i) {
      JsTensor t = new_js_tensor(info.Env(), bufs[i].dtype, bufs[i].shape);
      copy_bytes(Device::CPU, t.tensor.data, bufs[i].device, bufs[i].data, t.tensor.nbytes());
      t.object.Set("name", bufs[i].name);
      out.Set(uint32_t(i), t.object);
    }
    return out;
  }

  Napi::Value load_optimizer_state(const Napi::CallbackInfo& info) {
    check_idle();
    DBCORE_CHECK(info.Length() > 0 && info[0].IsArray(), "EINVAL", "loadOptimizerState([{name, dtype, shape, data}])");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<StateBuffer> bufs = trainer_->optimizer().state_buffers();
    DBCORE_CHECK(arr.Length() == bufs.size(), "EINVAL", "optimizer state has %u buffers, this optimizer needs %zu",
                 arr.Length(), bufs.size());
    // Entries are matched by name (a state file lists them in its own order); validate all before changing any.
    std::unordered_map<std::string, uint32_t> given;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      DBCORE_CHECK(v.IsObject(), "EINVAL", "optimizer state entry %u is not an object", i);
      given[get_string(v.As<Napi::Object>(), "name", "", "optimizer state entry")] = i;
    }
    std::vector<Tensor> sources;
    for (const StateBuffer& b : bufs) {
      auto it = given.find(b.name);
      DBCORE_CHECK(it != given.end(), "EINVAL", "optimizer state: '%s' is missing", b.name.c_str());
      Tensor t = tensor_from_js(arr.Get(it->second), b.name.c_str());
      check_dtype(t, b.dtype, b.name.c_str());
      check_shape(t, b.shape, b.name.c_str());
      sources.push_back(t);
    }
    for (size_t i = 0; i < bufs.size(); ++i)
      copy_bytes(bufs[i].device, bufs[i].data, Device::CPU, sources[i].data, sources[i].nbytes());
    return info.Env().Undefined();
  }

  NetworkRef<UNet> unet_;
  NetworkRef<ClipTextModel> te_;
  std::unique_ptr<Trainer> trainer_;
  std::vector<Napi::Reference<Napi::Value>> refs_;  // keeps the network objects alive
  bool busy_ = false;
};

ClassRegistration trainer_class("Trainer", &TrainerWrap::define);

}  // namespace
}  // namespace dbcore::js
