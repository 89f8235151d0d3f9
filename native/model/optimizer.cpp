#include "optimizer.h"

#include <algorithm>
#include <cmath>

#include "ops/ops.h"

namespace dbcore {

namespace {
DeviceBlock zeroed(Device device, size_t bytes) {
  DeviceBlock b(device, bytes);
  zero_bytes(device, b.data(), bytes);
  return b;
}
DeviceBlock uploaded(Device device, const float* host, size_t n) {
  DeviceBlock b(device, n * 4);
  copy_bytes(device, b.data(), Device::CPU, host, n * 4);
  return b;
}
}  // namespace

Optimizer::Optimizer(const OptimizerConfig& config, std::vector<OptimizedTensor> tensors, Device device)
    : cfg_(config), tensors_(std::move(tensors)), device_(device), norm_sum_(device, 1), states_(tensors_.size()) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const size_t n = size_t(tensors_[i].n);
    State& s = states_[i];
    s.eight_bit = cfg_.kind == OptimizerConfig::Kind::AdamW8bit && int64_t(n) >= cpu::kMin8bitSize;
    if (s.eight_bit) {
      const size_t blocks = (n + cpu::kAdam8bitBlockSize - 1) / cpu::kAdam8bitBlockSize;
      s.code1 = zeroed(device_, n);  // code 0 with absmax 0: zero states, as bitsandbytes initialises them (SPEC §7)
      s.code2 = zeroed(device_, n);
      s.absmax1 = zeroed(device_, blocks * 4);
      s.absmax2 = zeroed(device_, blocks * 4);
    } else {
      s.m = zeroed(device_, n * 4);
      s.v = zeroed(device_, n * 4);
    }
  }
  if (cfg_.kind == OptimizerConfig::Kind::AdamW8bit && device_ != Device::CPU) {
    qmap1_ = uploaded(device_, cpu::kDynamicMapSigned, 256);
    qmap2_ = uploaded(device_, cpu::kDynamicMapUnsigned, 256);
  }
}

cpu::ClipResult Optimizer::apply(double max_norm, double lr, const GradUnscale& unscale) {
  std::vector<float*> grads;
  std::vector<int64_t> numels;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!states_[i].active) continue;
    grads.push_back(tensors_[i].grad);
    numels.push_back(tensors_[i].n);
  }
  const double scaled_norm = std::sqrt(sum_of_squares(grads, numels));
  cpu::ClipResult clip{scaled_norm * unscale.inv_scale, 1.0};
  if (unscale.skips(clip.total_norm)) {  // an overflowed fp16 step: no update (GradScaler.step skips)
    clip.coef = 0.0;
    zero_grads(true);
    return clip;
  }
  if (max_norm > 0) clip.coef = cpu::clip_coefficient(clip.total_norm, max_norm);
  // The one factor on the gradients: unscaling then clipping. With a power-of-two scale this is bit-identical to
  // unscaling in place and then clipping (GradScaler.unscale_ + clip_grad_norm_).
  const float grad_coef = float(clip.coef) * unscale.inv_scale;
  ++steps_;
  if (device_ == Device::CPU && cfg_.kind == OptimizerConfig::Kind::AdamW) {
    step_fused(grad_coef, lr);
    zero_grads(false);
    return clip;
  }
  if (grad_coef != 1.f) {
    if (device_ == Device::CPU) {
      cpu::scale_all(grads.data(), numels.data(), int(grads.size()), grad_coef);
    } else {
      const ops::Context ctx{device_};
      for (size_t i = 0; i < grads.size(); ++i) ops::scale_inplace(ctx, grads[i], grad_coef, numels[i]);
    }
  }
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (states_[i].active) step_range(i, tensors_[i].grad, 0, tensors_[i].n, lr);
  zero_grads(true);
  return clip;
}

double Optimizer::sum_of_squares(const std::vector<float*>& grads, const std::vector<int64_t>& numels) {
  // The CPU: one parallel pass over the chunks of all tensors (each small tensor alone parallelizes poorly).
  if (device_ == Device::CPU) return cpu::sum_of_squares_all(grads.data(), numels.data(), int(grads.size()));
  // CUDA: every reduction queued into one device slot, then a single download.
  norm_sum_.zero(0, 1);
  for (size_t i = 0; i < grads.size(); ++i) norm_sum_.add(0, grads[i], numels[i]);
  return norm_sum_.read(0, 1)[0];
}

void Optimizer::zero_grads(bool all) {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (all || !states_[i].active) zero_bytes(device_, tensors_[i].grad, size_t(tensors_[i].n) * 4);
}

void Optimizer::step_range(size_t i, const float* grad, int64_t begin, int64_t n, double lr) {
  const ops::Context ctx{device_};
  State& s = states_[i];
  float* param = tensors_[i].param + begin;
  if (cfg_.kind == OptimizerConfig::Kind::AdamW) {
    const cpu::AdamWHyper h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
    ops::adamw_step(ctx, param, s.m.as<float>() + begin, s.v.as<float>() + begin, grad, h, steps_, n);
  } else if (s.eight_bit) {
    const int64_t block = begin / cpu::kAdam8bitBlockSize;
    const bool host = device_ == Device::CPU;  // the dynamic maps: the CPU's tables, or their copies on the device
    ops::adam8bit_blockwise_step(ctx, param, s.code1.as<uint8_t>() + begin, s.code2.as<uint8_t>() + begin,
                                 s.absmax1.as<float>() + block, s.absmax2.as<float>() + block, grad,
                                 host ? cpu::kDynamicMapSigned : qmap1_.as<float>(),
                                 host ? cpu::kDynamicMapUnsigned : qmap2_.as<float>(), hyper8(lr), n);
  } else {
    ops::adam32bit_step(ctx, param, s.m.as<float>() + begin, s.v.as<float>() + begin, grad, hyper8(lr), n);
  }
}

void Optimizer::step_fused(float grad_coef, double lr) {
  std::vector<cpu::AdamWTensor> active;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const OptimizedTensor& t = tensors_[i];
    if (states_[i].active) active.push_back({t.param, states_[i].m.as<float>(), states_[i].v.as<float>(), t.grad, t.n});
  }
  const cpu::AdamWHyper h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
  cpu::adamw_clip_step_zero(active.data(), int(active.size()), grad_coef, h, steps_);
}

cpu::Adam8bitHyper Optimizer::hyper8(double lr) const {
  cpu::Adam8bitHyper h8;
  h8.lr = float(lr);
  h8.beta1 = float(cfg_.beta1);
  h8.beta2 = float(cfg_.beta2);
  h8.eps = float(cfg_.eps);
  h8.weight_decay = float(cfg_.weight_decay);
  h8.step = steps_;
  return h8;
}

void Optimizer::update(size_t i, float* grad, int64_t begin, int64_t n, float clip_coef, double lr) {
  const OptimizedTensor& t = tensors_[i];
  DBCORE_CHECK(begin >= 0 && n >= 0 && begin + n <= t.n && begin % cpu::kAdam8bitBlockSize == 0, "EINVAL",
               "optimizer: update of '%s' elements [%lld, %lld) out of its %lld", t.name.c_str(), (long long)begin,
               (long long)(begin + n), (long long)t.n);
  // Scaled in place, then the update: bit-identical to apply()'s fused pass (cpu/optim.h).
  if (clip_coef != 1.f) ops::scale_inplace(ops::Context{device_}, grad, clip_coef, n);
  step_range(i, grad, begin, n, lr);
}

void Optimizer::set_active(const std::string& prefix, bool active) {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name.compare(0, prefix.size(), prefix) == 0) states_[i].active = active;
}

std::vector<StateBuffer> Optimizer::state_buffers() {
  std::vector<StateBuffer> out;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    State& s = states_[i];
    const std::string& n = tensors_[i].name;
    const int64_t len = tensors_[i].n;
    if (s.eight_bit) {
      const int64_t blocks = int64_t(s.absmax1.bytes() / 4);
      out.push_back({n + ".state1", DType::U8, {len}, s.code1.data(), device_});
      out.push_back({n + ".state2", DType::U8, {len}, s.code2.data(), device_});
      out.push_back({n + ".absmax1", DType::F32, {blocks}, s.absmax1.data(), device_});
      out.push_back({n + ".absmax2", DType::F32, {blocks}, s.absmax2.data(), device_});
    } else {
      const bool bnb = cfg_.kind == OptimizerConfig::Kind::AdamW8bit;
      out.push_back({n + (bnb ? ".state1" : ".exp_avg"), DType::F32, {len}, s.m.data(), device_});
      out.push_back({n + (bnb ? ".state2" : ".exp_avg_sq"), DType::F32, {len}, s.v.data(), device_});
    }
  }
  return out;
}

size_t Optimizer::state_bytes() const {
  size_t b = 0;
  for (const State& s : states_)
    b += s.m.bytes() + s.v.bytes() + s.absmax1.bytes() + s.absmax2.bytes() + s.code1.bytes() + s.code2.bytes();
  return b;
}

}  // namespace dbcore
