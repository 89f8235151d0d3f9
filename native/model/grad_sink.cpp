#include "grad_sink.h"

#include <algorithm>
#include <cmath>

#include "cpu/adam8bit.h"
#include "ops/ops.h"

namespace dbcore {

namespace {
// bf16 gradients are converted to fp32 in chunks of this many elements (a multiple of the 8-bit state block).
constexpr int64_t kConvertChunk = int64_t(cpu::kAdam8bitBlockSize) * 1024;
}  // namespace

GradientSink::GradientSink(GradientMode mode, ParamStore& store, Optimizer* optimizer, size_t first_tensor)
    : mode_(mode), store_(store), optimizer_(optimizer), first_tensor_(first_tensor) {
  DBCORE_CHECK(mode_ == GradientMode::F32 || optimizer_, "EINVAL", "gradient sink: bf16 and fused modes need the optimizer");
  if (mode_ == GradientMode::F32) store_.grads();
  if (mode_ == GradientMode::Fused) tensor_sums_ = SquareSums(store_.device(), store_.table().entries().size());
  if (mode_ == GradientMode::BF16) {
    bf16_ = DeviceBlock(store_.device(), size_t(store_.table().total()) * 2);
    zero_bytes(store_.device(), bf16_.data(), bf16_.bytes());
    int64_t largest = 0;
    for (const ParamEntry& e : store_.table().entries()) largest = std::max(largest, e.numel());
    convert_ = DeviceBlock(store_.device(), size_t(std::min(largest, kConvertChunk)) * 4);
  }
}

float* GradientSink::grad(int64_t offset) {
  if (mode_ == GradientMode::F32) return store_.grad(offset);
  DBCORE_CHECK(open_ && offset >= range_.begin && offset < range_.end, "ESTATE",
               "gradient sink: parameter at offset %lld written outside its backward range [%lld, %lld)",
               (long long)offset, (long long)range_.begin, (long long)range_.end);
  return scratch_ + (offset - range_.begin);
}

void GradientSink::begin(Arena& work, const ParamRange& range) {
  if (mode_ == GradientMode::F32) return;
  DBCORE_CHECK(range.begin >= 0 && range.end <= store_.table().total() && range.size() > 0, "EINVAL",
               "gradient sink: range [%lld, %lld) outside the parameter table", (long long)range.begin,
               (long long)range.end);
  arena_ = &work;
  mark_ = work.mark();
  scratch_ = work.alloc_floats(range.size());
  zero_bytes(work.device(), scratch_, size_t(range.size()) * 4);
  range_ = range;
  open_ = true;
  scratch_high_water_ = std::max(scratch_high_water_, range.size());
}

void GradientSink::end() {
  if (mode_ == GradientMode::F32) return;
  DBCORE_CHECK(open_, "ESTATE", "gradient sink: end() without begin()");
  open_ = false;
  if (mode_ == GradientMode::BF16)
    ops::add_into_bf16(ops::Context{store_.device()}, bf16_block() + range_.begin, scratch_, range_.size());
  else
    update_fused_range();
  arena_->release(mark_);
}

// Each table entry inside the range is one optimizer tensor: per-tensor norm, its clip factor, the update. The
// norms of the range's tensors are summed on the device into their own slots and read with one synchronization.
void GradientSink::update_fused_range() {
  DBCORE_CHECK(step_, "ESTATE", "fused optimizer step: backward ran without the step's learning rate");
  if (step_->discard) return;
  const std::vector<ParamEntry>& entries = store_.table().entries();
  const size_t first = size_t(std::lower_bound(entries.begin(), entries.end(), range_.begin,
                                               [](const ParamEntry& e, int64_t off) { return e.offset < off; }) -
                              entries.begin());
  size_t last = first;
  while (last < entries.size() && entries[last].offset < range_.end) ++last;
  auto grad_of = [&](size_t k) { return scratch_ + (entries[k].offset - range_.begin); };
  auto updated = [&](size_t k) { return optimizer_->active(first_tensor_ + k); };
  tensor_sums_.zero(first, last - first);
  for (size_t k = first; k < last; ++k)
    if (updated(k)) tensor_sums_.add(k, grad_of(k), entries[k].numel());
  const double* scaled_sq = tensor_sums_.read(first, last - first);  // [k - first]: entry k's Σ g²
  for (size_t k = first; k < last; ++k) {
    if (!updated(k)) continue;
    if (step_->skip_nonfinite && !std::isfinite(scaled_sq[k - first])) {
      step_->found_inf = true;
      continue;
    }
    const double sq = scaled_sq[k - first] * step_->inv_scale * step_->inv_scale;
    const double coef = step_->max_norm > 0 ? cpu::clip_coefficient(std::sqrt(sq), step_->max_norm) : 1.0;
    step_->sum_sq += sq;
    step_->min_coef = std::min(step_->min_coef, coef);
    optimizer_->update(first_tensor_ + k, grad_of(k), 0, entries[k].numel(), float(coef) * step_->inv_scale,
                       step_->lr);
  }
}

size_t GradientSink::block_bytes() const {
  switch (mode_) {
    case GradientMode::F32: return size_t(store_.table().total()) * 4;
    case GradientMode::BF16: return bf16_.bytes();
    case GradientMode::Fused: return 0;
  }
  return 0;
}

void GradientSink::zero() {
  if (mode_ == GradientMode::F32) store_.zero_grads();
  if (!bf16_.empty()) zero_bytes(bf16_.device(), bf16_.data(), bf16_.bytes());
}

// Calls f(tensor index, bf16 gradient, sink) for every optimizer tensor, in order.
template <class F>
void for_each_bf16_tensor(const std::vector<GradientSink*>& sinks, F f) {
  size_t i = 0;
  for (GradientSink* s : sinks)
    for (const ParamEntry& e : s->table().entries()) f(i++, s->bf16_block() + e.offset, *s);
}

cpu::ClipResult apply_bf16_gradients(Optimizer& optimizer, const std::vector<GradientSink*>& sinks, double max_norm,
                                     double lr, const GradUnscale& unscale) {
  size_t count = 0;
  for (GradientSink* s : sinks) {
    DBCORE_CHECK(s->mode() == GradientMode::BF16, "EINVAL", "apply_bf16_gradients: a sink is not in bf16 mode");
    count += s->table().entries().size();
  }
  DBCORE_CHECK(count == optimizer.size(), "EINVAL", "apply_bf16_gradients: %zu gradients for %zu tensors", count,
               optimizer.size());
  const ops::Context ctx{sinks.front()->device()};
  // Each tensor's gradient in chunks converted to fp32 in the sink's buffer: f(chunk, begin, n).
  auto chunks = [&](size_t i, const uint16_t* g, GradientSink& s, auto&& f) {
    const int64_t len = optimizer.tensor(i).n;
    for (int64_t b = 0; b < len; b += kConvertChunk) {
      const int64_t n = std::min(kConvertChunk, len - b);
      ops::bf16_to_f32(ctx, s.convert_buffer(), g + b, n);
      f(s.convert_buffer(), b, n);
    }
  };
  // Σ g² of every chunk queued into one slot on the device, read once.
  SquareSums& norm_sum = optimizer.norm_sum();
  norm_sum.zero(0, 1);
  for_each_bf16_tensor(sinks, [&](size_t i, const uint16_t* g, GradientSink& s) {
    if (optimizer.active(i)) chunks(i, g, s, [&](float* c, int64_t, int64_t n) { norm_sum.add(0, c, n); });
  });
  const double sum_sq = norm_sum.read(0, 1)[0];
  // The norm of the unscaled gradients (fp16 loss scaling: the stored ones carry the scale).
  cpu::ClipResult clip{std::sqrt(sum_sq) * unscale.inv_scale, 1.0};
  if (max_norm > 0) clip.coef = cpu::clip_coefficient(clip.total_norm, max_norm);
  if (unscale.skips(clip.total_norm)) {
    for (GradientSink* s : sinks) s->zero();
    return clip;
  }
  const float grad_coef = float(clip.coef) * unscale.inv_scale;
  optimizer.begin_step();
  for_each_bf16_tensor(sinks, [&](size_t i, const uint16_t* g, GradientSink& s) {
    if (optimizer.active(i))
      chunks(i, g, s, [&](float* c, int64_t b, int64_t n) { optimizer.update(i, c, b, n, grad_coef, lr); });
  });
  for (GradientSink* s : sinks) s->zero();
  return clip;
}

}  // namespace dbcore
