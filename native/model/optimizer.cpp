#include "optimizer.h"

#include <algorithm>
#include <cmath>

#include "cpu/adam8bit.h"

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

cpu::ClipResult Optimizer::clip_gradients(double max_norm) {
  std::vector<float*> grads;
  std::vector<int64_t> numels;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!states_[i].active) continue;
    grads.push_back(tensors_[i].grad);
    numels.push_back(tensors_[i].n);
  }
  if (max_norm > 0) return cpu::clip_grad_norm(grads.data(), numels.data(), int(grads.size()), max_norm);
  double sum = 0;
  for (size_t i = 0; i < grads.size(); ++i) sum += cpu::sum_of_squares(grads[i], numels[i]);
  return {std::sqrt(sum), 1.0};
}

void Optimizer::step(double lr) {
  ++steps_;
  cpu::AdamWHyper h32{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay};
  cpu::Adam8bitHyper h8;
  h8.lr = float(lr);
  h8.beta1 = float(cfg_.beta1);
  h8.beta2 = float(cfg_.beta2);
  h8.eps = float(cfg_.eps);
  h8.weight_decay = float(cfg_.weight_decay);
  h8.step = steps_;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    State& s = states_[i];
    const OptimizedTensor& t = tensors_[i];
    if (!s.active) continue;
    if (s.eight_bit)
      cpu::adam8bit_blockwise_step(t.param, s.code1.data(), s.code2.data(), s.absmax1.data(), s.absmax2.data(),
                                   t.grad, cpu::kDynamicMapSigned, cpu::kDynamicMapUnsigned, h8, t.n);
    else if (cfg_.kind == OptimizerConfig::Kind::AdamW8bit)
      cpu::adam32bit_step(t.param, s.m.data(), s.v.data(), t.grad, h8, t.n);
    else
      cpu::adamw_step(t.param, s.m.data(), s.v.data(), t.grad, h32, steps_, t.n);
  }
}

void Optimizer::zero_grad() {
  for (const OptimizedTensor& t : tensors_) std::fill(t.grad, t.grad + t.n, 0.f);
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
