#include "run.h"

namespace dbcore {

WB declare_linear(ParamTable& t, const std::string& name, int64_t out, int64_t in, bool bias) {
  WB wb;
  wb.w = t.add(name + ".weight", {out, in});
  if (bias) wb.b = t.add(name + ".bias", {out});
  return wb;
}

WB declare_conv(ParamTable& t, const std::string& name, int64_t out, int64_t in, int64_t k) {
  return {t.add(name + ".weight", {out, in, k, k}), t.add(name + ".bias", {out})};
}

WB declare_norm(ParamTable& t, const std::string& name, int64_t channels) {
  return {t.add(name + ".weight", {channels}), t.add(name + ".bias", {channels})};
}

void conv_forward(const Run& r, float* out, const float* inp, const WB& wb, const cpu::Conv2dShape& s) {
  Arena::Mark m = r.work->mark();
  float* ws = r.work->alloc_floats(int64_t(cpu::conv2d_workspace_floats(s)));
  ops::conv2d_forward(r.ctx, out, inp, r.p(wb.w), wb.b >= 0 ? r.p(wb.b) : nullptr, ws, s);
  r.work->release(m);
}

void conv_backward(const Run& r, float* dinp, const float* dout, const float* inp, const WB& wb,
                   const cpu::Conv2dShape& s) {
  Arena::Mark m = r.work->mark();
  float* ws = r.work->alloc_floats(int64_t(cpu::conv2d_workspace_floats(s)));
  ops::conv2d_backward(r.ctx, dinp, r.g(wb.w), wb.b >= 0 ? r.g(wb.b) : nullptr, dout, inp, r.p(wb.w), ws, s);
  r.work->release(m);
}

void linear_forward(const Run& r, float* out, const float* inp, const WB& wb, int M, int IC, int OC) {
  ops::linear_forward(r.ctx, out, inp, r.p(wb.w), wb.b >= 0 ? r.p(wb.b) : nullptr, M, IC, OC);
}

void linear_backward(const Run& r, float* dinp, const float* dout, const float* inp, const WB& wb, int M, int IC,
                     int OC) {
  ops::linear_backward(r.ctx, dinp, r.g(wb.w), wb.b >= 0 ? r.g(wb.b) : nullptr, dout, inp, r.p(wb.w), M, IC, OC);
}

}  // namespace dbcore
