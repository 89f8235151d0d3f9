#include "optimizer.h"

#include <algorithm>
#include <cmath>

namespace dbcore {

Optimizer::Optimizer(const OptimizerConfig& config, std::vector<OptimizedTensor> tensors)
    : cfg_(config), tensors_(std::move(tensors)), states_(tensors_.size()) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const int64_t n = tensors_[i].n;
    State& s = states_[i];
    s.eight_bit = cfg_.kind == OptimizerConfig::Kind::AdamW8bit && n >= cpu::kMin8bitSize;
    if (s.eight_bit) {
      const int64_t blocks = (n + cpu::kAdam8bitBlockSize - 1) / cpu::kAdam8bitBlockSize;
      s.code1.assign(n, 0);  // code 0 with absmax 0: zero states, as bitsandbytes initialises them (SPEC §7)
      s.code2.assign(n, 0);
      s.absmax1.assign(blocks, 0.f);
      s.absmax2.assign(blocks, 0.f);
    } else {
      s.m.assign(n, 0.f);
      s.v.assign(n, 0.f);
    }
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
  const double scaled_norm = std::sqrt(cpu::sum_of_squares_all(grads.data(), numels.data(), int(grads.size())));
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
  if (cfg_.kind == OptimizerConfig::Kind::AdamW) {
    step_fused(grad_coef, lr);
  } else {
    if (grad_coef != 1.f) cpu::scale_all(grads.data(), numels.data(), int(grads.size()), grad_coef);
    step_8bit(lr);
  }
  zero_grads(cfg_.kind != OptimizerConfig::Kind::AdamW);
  return clip;
}

void Optimizer::zero_grads(bool all) {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (all || !states_[i].active) std::fill(tensors_[i].grad, tensors_[i].grad + tensors_[i].n, 0.f);
}

void Optimizer::step_fused(float grad_coef, double lr) {
  std::vector<cpu::AdamWTensor> active;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const OptimizedTensor& t = tensors_[i];
    if (states_[i].active) active.push_back({t.param, states_[i].m.data(), states_[i].v.data(), t.grad, t.n});
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
  State& s = states_[i];
  DBCORE_CHECK(begin >= 0 && n >= 0 && begin + n <= t.n && begin % cpu::kAdam8bitBlockSize == 0, "EINVAL",
               "optimizer: update of '%s' elements [%lld, %lld) out of its %lld", t.name.c_str(), (long long)begin,
               (long long)(begin + n), (long long)t.n);
  if (cfg_.kind == OptimizerConfig::Kind::AdamW) {
    const cpu::AdamWTensor one{t.param + begin, s.m.data() + begin, s.v.data() + begin, grad, n};
    const cpu::AdamWHyper h{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
    cpu::adamw_clip_step_zero(&one, 1, clip_coef, h, steps_);
    return;
  }
  if (clip_coef < 1.f) cpu::scale_all(&grad, &n, 1, clip_coef);
  const cpu::Adam8bitHyper h8 = hyper8(lr);
  if (s.eight_bit) {
    const int64_t block = begin / cpu::kAdam8bitBlockSize;
    cpu::adam8bit_blockwise_step(t.param + begin, s.code1.data() + begin, s.code2.data() + begin,
                                 s.absmax1.data() + block, s.absmax2.data() + block, grad, cpu::kDynamicMapSigned,
                                 cpu::kDynamicMapUnsigned, h8, n);
  } else {
    cpu::adam32bit_step(t.param + begin, s.m.data() + begin, s.v.data() + begin, grad, h8, n);
  }
}

void Optimizer::step_8bit(double lr) {
  const cpu::Adam8bitHyper h8 = hyper8(lr);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    State& s = states_[i];
    const OptimizedTensor& t = tensors_[i];
    if (!s.active) continue;
    if (s.eight_bit)
      cpu::adam8bit_blockwise_step(t.param, s.code1.data(), s.code2.data(), s.absmax1.data(), s.absmax2.data(),
                                   t.grad, cpu::kDynamicMapSigned, cpu::kDynamicMapUnsigned, h8, t.n);
    else
      cpu::adam32bit_step(t.param, s.m.data(), s.v.data(), t.grad, h8, t.n);
  }
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
      out.push_back({n + ".state1", DType::U8, {len}, s.code1.data()});
      out.push_back({n + ".state2", DType::U8, {len}, s.code2.data()});
      out.push_back({n + ".absmax1", DType::F32, {int64_t(s.absmax1.size())}, s.absmax1.data()});
      out.push_back({n + ".absmax2", DType::F32, {int64_t(s.absmax2.size())}, s.absmax2.data()});
    } else {
      const bool bnb = cfg_.kind == OptimizerConfig::Kind::AdamW8bit;
      out.push_back({n + (bnb ? ".state1" : ".exp_avg"), DType::F32, {len}, s.m.data()});
      out.push_back({n + (bnb ? ".state2" : ".exp_avg_sq"), DType::F32, {len}, s.v.data()});
    }
  }
  return out;
}

size_t Optimizer::state_bytes() const {
  size_t b = 0;
  for (const State& s : states_)
    b += (s.m.size() + s.v.size() + s.absmax1.size() + s.absmax2.size()) * 4 + s.code1.size() + s.code2.size();
  return b;
}

}  // namespace dbcore
