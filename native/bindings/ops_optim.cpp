// Optimizer exports: fp32 AdamW (torch), gradient-norm clipping, and bitsandbytes-compatible 8-bit Adam with
// its blockwise quantization. Every update works in place on the caller's buffers (no copies).
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/adam8bit.h"
#include "cpu/optim.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {
namespace {


void check_same_numel(const Tensor& t, const Tensor& param, const char* what) {
  DBCORE_CHECK(t.numel() == param.numel(), "ESHAPE", "%s is %s but param is %s (element counts differ)", what,
               t.describe().c_str(), param.describe().c_str());
}

int blocksize_option(const Napi::CallbackInfo& info, size_t index) {
  double bs = number_option(info, index, "blocksize", 4096);
  bool ok = false;
  for (int b = 64; b <= 4096; b *= 2) ok = ok || bs == b;
  DBCORE_CHECK(ok, "EINVAL", "option 'blocksize' = %g is invalid: expected 64, 128, 256, 512, 1024, 2048 or 4096", bs);
  return static_cast<int>(bs);
}

const float* map_option(const Napi::CallbackInfo& info, size_t index) {
  return bool_option(info, index, "signed", true) ? cpu::kDynamicMapSigned : cpu::kDynamicMapUnsigned;
}

int64_t num_blocks(int64_t n, int blocksize) { return (n + blocksize - 1) / blocksize; }

JsTensor map_tensor(Napi::Env env, const float* map) {
  JsTensor t = new_js_tensor(env, DType::F32, {256});
  std::memcpy(t.tensor.data, map, 256 * sizeof(float));
  return t;
}

// A named tensor of an 8-bit Adam state object, with its dtype and element count checked.
Tensor state_tensor(const Napi::Object& state, const char* key, DType dtype, int64_t numel) {
  std::string what = std::string("state.") + key;
  Napi::Value v = state.Get(key);
  DBCORE_CHECK(!v.IsUndefined() && !v.IsNull(), "EINVAL", "%s is missing", what.c_str());
  Tensor t = tensor_from_js(v, what.c_str());
  check_dtype(t, dtype, what.c_str());
  DBCORE_CHECK(t.numel() == numel, "ESHAPE", "%s is %s; expected %lld elements", what.c_str(),
               t.describe().c_str(), static_cast<long long>(numel));
  return t;
}

int64_t state_step(const Napi::Object& state) {
  Napi::Value v = state.Get("step");
  DBCORE_CHECK(v.IsNumber(), "EINVAL", "state.step must be a non-negative integer (updates done so far)");
  double s = v.As<Napi::Number>().DoubleValue();
  DBCORE_CHECK(s >= 0 && s == std::floor(s) && s < 9.0e15, "EINVAL", "state.step = %g is not a non-negative integer",
               s);
  return static_cast<int64_t>(s);
}

int percentile_option(const Napi::CallbackInfo& info, size_t index) {
  double pct = number_option(info, index, "percentileClipping", 100);
  DBCORE_CHECK(pct == std::floor(pct) && pct >= 1 && pct <= 100, "EINVAL",
               "option 'percentileClipping' = %g must be an integer in [1, 100] (100: off)", pct);
  return static_cast<int>(pct);
}

}  // namespace

// ops.adamwStep(param, grad, m, v, {lr, beta1, beta2, eps, weightDecay, step}): one torch AdamW step, in place.
DBCORE_OP(adamwStep) {
  Tensor param = tensor_arg(info, 0, "param", DType::F32);
  Tensor grad = tensor_arg(info, 1, "grad", DType::F32);
  Tensor m = tensor_arg(info, 2, "m", DType::F32);
  Tensor v = tensor_arg(info, 3, "v", DType::F32);
  check_same_numel(grad, param, "grad");
  check_same_numel(m, param, "m");
  check_same_numel(v, param, "v");
  const cpu::AdamWHyper h = adamw_hyper_option(info, 4);
  double step = number_option(info, 4, "step", NAN);
  DBCORE_CHECK(step >= 1 && step == std::floor(step) && step < 9.0e15, "EINVAL",
               "option 'step' = %g must be an integer >= 1 (the number of updates including this one)", step);
  cpu::adamw_step(param.f32(), m.f32(), v.f32(), grad.f32(), h, static_cast<int64_t>(step), param.numel());
  return info.Env().Undefined();
}

// ops.gradSumOfSquares(grad) → Σ g² (accumulated in double).
DBCORE_OP(gradSumOfSquares) {
  Tensor g = tensor_arg(info, 0, "grad", DType::F32);
  return Napi::Number::New(info.Env(), cpu::sum_of_squares(g.f32(), g.numel()));
}

// ops.clipGradNorm(grads[], maxNorm) → {totalNorm, clipCoef}; the gradients are scaled in place.
DBCORE_OP(clipGradNorm) {
  DBCORE_CHECK(info.Length() >= 2 && info[0].IsArray(), "EINVAL",
               "clipGradNorm expects (grads: tensor[], maxNorm: number)");
  DBCORE_CHECK(info[1].IsNumber(), "EINVAL", "argument 2 (maxNorm) must be a number");
  double max_norm = info[1].As<Napi::Number>().DoubleValue();
  DBCORE_CHECK(std::isfinite(max_norm) && max_norm > 0, "EINVAL", "maxNorm = %g must be a positive number", max_norm);
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<float*> ptrs;
  std::vector<int64_t> numels;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    std::string what = format("grads[%u]", i);
    Tensor g = tensor_from_js(arr.Get(i), what.c_str());
    check_dtype(g, DType::F32, what.c_str());
    ptrs.push_back(g.f32());
    numels.push_back(g.numel());
  }
  cpu::ClipResult r = cpu::clip_grad_norm(ptrs.data(), numels.data(), static_cast<int>(ptrs.size()), max_norm);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("totalNorm", r.total_norm);
  out.Set("clipCoef", r.coef);
  return out;
}

// ops.adam8bitMaps() → {signed, unsigned}: bitsandbytes' dynamic maps (F32[256] each).
DBCORE_OP(adam8bitMaps) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("signed", map_tensor(info.Env(), cpu::kDynamicMapSigned).object);
  out.Set("unsigned", map_tensor(info.Env(), cpu::kDynamicMapUnsigned).object);
  return out;
}

// ops.quantizeBlockwise(x, {blocksize = 4096, signed = true}) → {codes: U8, absmax: F32[nb]}
DBCORE_OP(quantizeBlockwise) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  int bs = blocksize_option(info, 1);
  JsTensor codes = new_js_tensor(info.Env(), DType::U8, x.shape);
  JsTensor absmax = new_js_tensor(info.Env(), DType::F32, {num_blocks(x.numel(), bs)});
  cpu::quantize_blockwise(codes.tensor.as<uint8_t>(), absmax.tensor.f32(), x.f32(), map_option(info, 1), x.numel(), bs);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("codes", codes.object);
  out.Set("absmax", absmax.object);
  return out;
}

// ops.quantizeNearest(x, {signed = true}) → {search, buckets}: the code of every element of x under the built-in
// map, by bitsandbytes' binary search (quantize_nearest) and by the CPU bucket table the 8-bit step uses (U8 each).
DBCORE_OP(quantizeNearest) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  const float* map = map_option(info, 1);
  const cpu::NearestCodeBuckets* buckets = cpu::builtin_map_buckets(map);
  JsTensor search = new_js_tensor(info.Env(), DType::U8, x.shape);
  JsTensor table = new_js_tensor(info.Env(), DType::U8, x.shape);
  const float* xs = x.f32();
  uint8_t* s = search.tensor.as<uint8_t>();
  uint8_t* t = table.tensor.as<uint8_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    s[i] = cpu::quantize_nearest(map, xs[i]);
    t[i] = buckets->nearest(xs[i]);
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("search", search.object);
  out.Set("buckets", table.object);
  return out;
}

// ops.dequantizeBlockwise(codes, absmax, {blocksize = 4096, signed = true}) → F32 of codes' shape
DBCORE_OP(dequantizeBlockwise) {
  Tensor codes = tensor_arg(info, 0, "codes", DType::U8);
  Tensor absmax = tensor_arg(info, 1, "absmax", DType::F32);
  int bs = blocksize_option(info, 2);
  DBCORE_CHECK(absmax.numel() == num_blocks(codes.numel(), bs), "ESHAPE",
               "absmax is %s; %lld codes in blocks of %d need %lld values", absmax.describe().c_str(),
               static_cast<long long>(codes.numel()), bs, static_cast<long long>(num_blocks(codes.numel(), bs)));
  JsTensor out = new_js_tensor(info.Env(), DType::F32, codes.shape);
  cpu::dequantize_blockwise(out.tensor.f32(), codes.as<uint8_t>(), absmax.f32(), map_option(info, 2), codes.numel(), bs);
  return out.object;
}

// ops.adam8bitInitState(param, {optimBits = 8, min8bitSize = 4096, percentileClipping = 100}) → state in
// bitsandbytes' flat layout: {step: 0, state1, state2[, qmap1, qmap2, absmax1, absmax2][, gnorm_vec]}.
DBCORE_OP(adam8bitInitState) {
  Tensor param = tensor_arg(info, 0, "param", DType::F32);
  double bits = number_option(info, 1, "optimBits", 8);
  DBCORE_CHECK(bits == 8 || bits == 32, "EINVAL", "option 'optimBits' = %g must be 8 or 32", bits);
  double min_size = number_option(info, 1, "min8bitSize", static_cast<double>(cpu::kMin8bitSize));
  DBCORE_CHECK(min_size >= 0 && min_size == std::floor(min_size), "EINVAL",
               "option 'min8bitSize' = %g must be a non-negative integer", min_size);
  const bool eight_bit = bits == 8 && static_cast<double>(param.numel()) >= min_size;
  Napi::Env env = info.Env();
  Napi::Object state = Napi::Object::New(env);
  state.Set("step", 0);
  DType dtype = eight_bit ? DType::U8 : DType::F32;
  state.Set("state1", new_js_tensor(env, dtype, param.shape).object);  // code 0 / 0.0: m = 0
  state.Set("state2", new_js_tensor(env, dtype, param.shape).object);
  if (eight_bit) {
    const Shape blocks{num_blocks(param.numel(), cpu::kAdam8bitBlockSize)};
    state.Set("qmap1", map_tensor(env, cpu::kDynamicMapSigned).object);
    state.Set("qmap2", map_tensor(env, cpu::kDynamicMapUnsigned).object);
    state.Set("absmax1", new_js_tensor(env, DType::F32, blocks).object);
    state.Set("absmax2", new_js_tensor(env, DType::F32, blocks).object);
  }
  if (percentile_option(info, 1) < 100) state.Set("gnorm_vec", new_js_tensor(env, DType::F32, {cpu::kGnormHistory}).object);
  return state;
}

// ops.adam8bitStep(param, grad, state, {lr, beta1, beta2, eps, weightDecay, percentileClipping}) → {gnormScale,
// currentGnorm?, clipValue?}. Updates param and state in place and increments state.step. The state's own
// qmap1/qmap2 are used (a resumed state keeps the maps it was saved with).
DBCORE_OP(adam8bitStep) {
  Tensor param = tensor_arg(info, 0, "param", DType::F32);
  Tensor grad = tensor_arg(info, 1, "grad", DType::F32);
  check_same_numel(grad, param, "grad");
  DBCORE_CHECK(info.Length() > 2 && info[2].IsObject(), "EINVAL",
               "argument 3 (state) must be an object from adam8bitInitState or a loaded state dict");
  Napi::Object state = info[2].As<Napi::Object>();
  const int64_t n = param.numel();
  cpu::Adam8bitHyper h;
  h.lr = static_cast<float>(ranged_option(info, 3, "lr", h.lr, 0, kHuge, true));
  h.beta1 = static_cast<float>(ranged_option(info, 3, "beta1", h.beta1, 0, 1, false));
  h.beta2 = static_cast<float>(ranged_option(info, 3, "beta2", h.beta2, 0, 1, false));
  h.eps = static_cast<float>(ranged_option(info, 3, "eps", h.eps, 0, kHuge, true));
  h.weight_decay = static_cast<float>(ranged_option(info, 3, "weightDecay", h.weight_decay, 0, kHuge, true));
  const int pct = percentile_option(info, 3);
  h.step = state_step(state) + 1;

  Napi::Value s1 = state.Get("state1");
  DBCORE_CHECK(s1.IsObject(), "EINVAL", "state.state1 is missing");
  const bool eight_bit = tensor_from_js(s1, "state.state1").dtype == DType::U8;
  const DType sdtype = eight_bit ? DType::U8 : DType::F32;
  Tensor state1 = state_tensor(state, "state1", sdtype, n);
  Tensor state2 = state_tensor(state, "state2", sdtype, n);
  Tensor qmap1, qmap2, absmax1, absmax2;
  if (eight_bit) {
    const int64_t nb = num_blocks(n, cpu::kAdam8bitBlockSize);
    qmap1 = state_tensor(state, "qmap1", DType::F32, 256);
    qmap2 = state_tensor(state, "qmap2", DType::F32, 256);
    absmax1 = state_tensor(state, "absmax1", DType::F32, nb);
    absmax2 = state_tensor(state, "absmax2", DType::F32, nb);
  }
  Napi::Object out = Napi::Object::New(info.Env());
  if (pct < 100) {
    Tensor gnorm_vec = state_tensor(state, "gnorm_vec", DType::F32, cpu::kGnormHistory);
    cpu::PercentileClip clip = cpu::percentile_clipping(gnorm_vec.f32(), grad.f32(), n, h.step, pct);
    h.gnorm_scale = clip.gnorm_scale;
    out.Set("currentGnorm", clip.current_gnorm);
    out.Set("clipValue", clip.clip_value);
  }
  if (eight_bit) {
    cpu::adam8bit_blockwise_step(param.f32(), state1.as<uint8_t>(), state2.as<uint8_t>(), absmax1.f32(),
                                 absmax2.f32(), grad.f32(), qmap1.f32(), qmap2.f32(), h, n);
  } else {
    cpu::adam32bit_step(param.f32(), state1.f32(), state2.f32(), grad.f32(), h, n);
  }
  state.Set("step", static_cast<double>(h.step));
  out.Set("gnormScale", h.gnorm_scale);
  return out;
}

}  // namespace dbcore::js
