#include "optimizer.h"

#include <cmath>

#include "core/error.h"

namespace dbcore {

OptimizerStepResult NetworkAdamW::step(ParamStore& store, const cpu::AdamWHyper& hyper, double max_grad_norm) {
  const int64_t n = store.table().total();
  if (m_.empty()) {
    m_.assign(size_t(n), 0.f);
    v_.assign(size_t(n), 0.f);
  }
  DBCORE_CHECK(int64_t(m_.size()) == n, "ESTATE", "optimizer state has %lld elements but the network has %lld",
               static_cast<long long>(m_.size()), static_cast<long long>(n));
  float* grads = store.grads();
  OptimizerStepResult r;
  if (max_grad_norm > 0) {
    float* const blocks[] = {grads};
    const cpu::ClipResult clip = cpu::clip_grad_norm(blocks, &n, 1, max_grad_norm);
    r.grad_norm = clip.total_norm;
    r.clip_coef = clip.coef;
  } else {
    r.grad_norm = std::sqrt(cpu::sum_of_squares(grads, n));
    r.clip_coef = 1.0;
  }
  r.step = ++step_;
  cpu::adamw_step(store.params(), m_.data(), v_.data(), grads, hyper, step_, n);
  return r;
}

}  // namespace dbcore
