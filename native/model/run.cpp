#include "run.h"

#include <algorithm>

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

namespace {

// The convolution in bands of output rows, each with an im2col workspace of at most r.conv_workspace_limit floats
// (at least one row): band rows [r0, r0 + bh) read input rows r0·stride − pad … (r0 + bh − 1)·stride − pad + KH − 1,
// cut out with the zero padding around them (crop_pad2d) and convolved without padding. Every output entry is the
// same dot product as in the one-band convolution.
void conv_forward_banded(const Run& r, float* out, const float* inp, const WB& wb, const cpu::Conv2dShape& s) {
  const int OH = s.OH(), OW = s.OW(), WW = s.W + 2 * s.pad;
  const int64_t row_floats = int64_t(s.C) * s.KH * s.KW * OW;  // workspace per output row
  const int band = int(std::clamp<int64_t>(r.conv_workspace_limit / row_floats, 1, OH));
  const int64_t in_plane = int64_t(s.H) * s.W, out_plane = int64_t(OH) * OW;
  // The unpadded convolution of a band of bh output rows.
  auto band_shape = [&](int bh) { return cpu::Conv2dShape{1, s.C, (bh - 1) * s.stride + s.KH, WW, s.OC, s.KH, s.KW, s.stride, 0}; };
  // The workspace of the backend's kernel, for a full band and the last (shorter) one: on the CPU band · row_floats
  // (im2col), on CUDA split-K partial sums, which grow as the band's output shrinks.
  const int last_band = OH - (OH - 1) / band * band;
  const int64_t ws_floats = int64_t(std::max(ops::conv2d_workspace_floats(r.ctx, band_shape(band)),
                                             ops::conv2d_workspace_floats(r.ctx, band_shape(last_band))));
  Arena::Mark m = r.work->mark();
  float* window = r.work->alloc_floats(int64_t(s.C) * ((band - 1) * s.stride + s.KH) * WW);  // (C, rows, WW)
  float* result = r.work->alloc_floats(int64_t(s.OC) * band * OW);                          // (OC, bh, OW)
  float* ws = r.work->alloc_floats(ws_floats);
  for (int n = 0; n < s.N; ++n) {
    for (int r0 = 0; r0 < OH; r0 += band) {
      const int bh = std::min(band, OH - r0);
      const cpu::Conv2dShape bs = band_shape(bh);
      ops::crop_pad2d(r.ctx, window, inp + int64_t(n) * s.C * in_plane, 1, s.C, s.H, s.W, r0 * s.stride - s.pad, -s.pad,
                      bs.H, WW);
      ops::conv2d_forward(r.ctx, result, window, r.p(wb.w), wb.b >= 0 ? r.p(wb.b) : nullptr, ws, bs);
      for (int oc = 0; oc < s.OC; ++oc)  // band rows of plane (n, oc)
        ops::copy(r.ctx, out + (int64_t(n) * s.OC + oc) * out_plane + int64_t(r0) * OW, result + int64_t(oc) * bh * OW,
                  int64_t(bh) * OW);
    }
  }
  r.work->release(m);
}

}  // namespace

void conv_forward(const Run& r, float* out, const float* inp, const WB& wb, const cpu::Conv2dShape& s) {
  if (r.conv_workspace_limit > 0 && int64_t(ops::conv2d_workspace_floats(r.ctx, s)) > r.conv_workspace_limit) {
    conv_forward_banded(r, out, inp, wb, s);
    return;
  }
  Arena::Mark m = r.work->mark();
  float* ws = r.work->alloc_floats(int64_t(ops::conv2d_workspace_floats(r.ctx, s)));
  ops::conv2d_forward(r.ctx, out, inp, r.p(wb.w), wb.b >= 0 ? r.p(wb.b) : nullptr, ws, s);
  r.work->release(m);
}

void conv_backward(const Run& r, float* dinp, const float* dout, const float* inp, const WB& wb,
                   const cpu::Conv2dShape& s) {
  Arena::Mark m = r.work->mark();
  float* ws = r.work->alloc_floats(int64_t(ops::conv2d_workspace_floats(r.ctx, s)));
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
