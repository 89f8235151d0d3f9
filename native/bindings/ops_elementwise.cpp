// Test exports of the elementwise and data-movement kernels (cpu/elementwise.h).
//   ops.add(a, b) → a + b            ops.addInPlace(acc, x): acc += x          ops.axpby(a, b, {alpha, beta}) → αa + βb
//   ops.addChannelBias(x (N, C, …), bias (N, C)): x += bias in place          ops.sumOverHw(x (N, C, …)) → (N, C)
//   ops.nchwToNhwc(x (N, C, …)) → (N, HW, C)                                  ops.nhwcToNchw(x (N, HW, C)) → (N, C, HW)
//   ops.upsampleNearest2x(x (N, C, H, W)) → (N, C, 2H, 2W)                    ops.upsampleNearest2xBackward(dout) → dinp
//   ops.concatChannels(a (N, Ca, …), b (N, Cb, …)) → (N, Ca+Cb, …)           ops.concatChannelsBackward(dout, {channelsA}) → {da, db}
//   ops.cropPad2d(x (N, C, H, W), {y0, x0, height, width}) → (N, C, height, width), zero outside x
#include <cstring>
#include <limits>

#include <vector>

#include "core/rng.h"
#include "cpu/elementwise.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct NCHW {
  int N, C, HW;
};

// (N, C, spatial…) with rank >= 2; HW is the product of the spatial dimensions (1 for rank 2).
NCHW nc_hw(const Tensor& t, const char* what) {
  DBCORE_CHECK(t.ndim() >= 2, "ESHAPE", "%s: expected (N, C, …) with rank >= 2, got %s", what, t.describe().c_str());
  return {to_int(t.dim(0), "N"), to_int(t.dim(1), "C"), to_int(dims_product(t, 2, t.ndim()), "HW")};
}

Shape with_channels(Shape shape, int64_t channels) {
  shape[1] = channels;
  return shape;
}

}  // namespace

DBCORE_OP(add) {
  Tensor a = tensor_arg(info, 0, "add: a", DType::F32);
  Tensor b = tensor_arg(info, 1, "add: b", DType::F32);
  check_shape(b, a.shape, "add: b");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, a.shape);
  cpu::add(out.tensor.f32(), a.f32(), b.f32(), a.numel());
  return out.object;
}

DBCORE_OP(addInPlace) {
  Tensor acc = tensor_arg(info, 0, "addInPlace: acc", DType::F32);
  Tensor x = tensor_arg(info, 1, "addInPlace: x", DType::F32);
  check_shape(x, acc.shape, "addInPlace: x");
  cpu::add_inplace(acc.f32(), x.f32(), acc.numel());
  return info.Env().Undefined();
}

DBCORE_OP(axpby) {
  Tensor a = tensor_arg(info, 0, "axpby: a", DType::F32);
  Tensor b = tensor_arg(info, 1, "axpby: b", DType::F32);
  check_shape(b, a.shape, "axpby: b");
  const float alpha = static_cast<float>(number_option(info, 2, "alpha", 1.0));
  const float beta = static_cast<float>(number_option(info, 2, "beta", 1.0));
  JsTensor out = new_js_tensor(info.Env(), DType::F32, a.shape);
  cpu::axpby(out.tensor.f32(), alpha, a.f32(), beta, b.f32(), a.numel());
  return out.object;
}

DBCORE_OP(addChannelBias) {
  Tensor x = tensor_arg(info, 0, "addChannelBias: x", DType::F32);
  Tensor bias = tensor_arg(info, 1, "addChannelBias: bias", DType::F32);
  NCHW d = nc_hw(x, "addChannelBias: x");
  check_shape(bias, {d.N, d.C}, "addChannelBias: bias");
  cpu::add_channel_bias(x.f32(), bias.f32(), d.N, d.C, d.HW);
  return info.Env().Undefined();
}

DBCORE_OP(sumOverHw) {
  Tensor x = tensor_arg(info, 0, "sumOverHw: x", DType::F32);
  NCHW d = nc_hw(x, "sumOverHw: x");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {d.N, d.C});
  cpu::sum_over_hw(out.tensor.f32(), x.f32(), d.N, d.C, d.HW);
  return out.object;
}

DBCORE_OP(nchwToNhwc) {
  Tensor x = tensor_arg(info, 0, "nchwToNhwc: x", DType::F32);
  NCHW d = nc_hw(x, "nchwToNhwc: x");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {d.N, d.HW, d.C});
  cpu::nchw_to_nhwc(out.tensor.f32(), x.f32(), d.N, d.C, d.HW);
  return out.object;
}

DBCORE_OP(nhwcToNchw) {
  Tensor x = tensor_arg(info, 0, "nhwcToNchw: x (N, HW, C)", DType::F32, 3);
  const int N = to_int(x.dim(0), "N"), HW = to_int(x.dim(1), "HW"), C = to_int(x.dim(2), "C");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, C, HW});
  cpu::nhwc_to_nchw(out.tensor.f32(), x.f32(), N, C, HW);
  return out.object;
}

DBCORE_OP(upsampleNearest2x) {
  Tensor x = tensor_arg(info, 0, "upsampleNearest2x: x (N, C, H, W)", DType::F32, 4);
  const int N = to_int(x.dim(0), "N"), C = to_int(x.dim(1), "C"), H = to_int(x.dim(2), "H"), W = to_int(x.dim(3), "W");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, C, 2 * int64_t(H), 2 * int64_t(W)});
  cpu::upsample_nearest2x_forward(out.tensor.f32(), x.f32(), N, C, H, W);
  return out.object;
}

DBCORE_OP(upsampleNearest2xBackward) {
  Tensor dout = tensor_arg(info, 0, "upsampleNearest2xBackward: dout (N, C, 2H, 2W)", DType::F32, 4);
  DBCORE_CHECK(dout.dim(2) % 2 == 0 && dout.dim(3) % 2 == 0, "ESHAPE",
               "upsampleNearest2xBackward: dout %s must have even height and width", dout.describe().c_str());
  const int N = to_int(dout.dim(0), "N"), C = to_int(dout.dim(1), "C");
  const int H = to_int(dout.dim(2) / 2, "H"), W = to_int(dout.dim(3) / 2, "W");
  JsTensor dinp = new_js_tensor(info.Env(), DType::F32, {N, C, H, W});
  cpu::upsample_nearest2x_backward(dinp.tensor.f32(), dout.f32(), N, C, H, W);
  return dinp.object;
}

DBCORE_OP(concatChannels) {
  Tensor a = tensor_arg(info, 0, "concatChannels: a", DType::F32);
  Tensor b = tensor_arg(info, 1, "concatChannels: b", DType::F32);
  NCHW da = nc_hw(a, "concatChannels: a");
  nc_hw(b, "concatChannels: b");
  check_shape(b, with_channels(a.shape, b.dim(1)), "concatChannels: b (same N and spatial size as a)");
  const int Cb = to_int(b.dim(1), "Cb");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, with_channels(a.shape, int64_t(da.C) + Cb));
  cpu::concat_channels_forward(out.tensor.f32(), a.f32(), b.f32(), da.N, da.C, Cb, da.HW);
  return out.object;
}

DBCORE_OP(concatChannelsBackward) {
  Tensor dout = tensor_arg(info, 0, "concatChannelsBackward: dout", DType::F32);
  NCHW d = nc_hw(dout, "concatChannelsBackward: dout");
  const int Ca = int_option(info, 1, "channelsA", -1, 0);
  DBCORE_CHECK(Ca <= d.C, "ESHAPE", "concatChannelsBackward: channelsA = %d exceeds the %d channels of dout %s", Ca,
               d.C, dout.describe().c_str());
  JsTensor da = new_js_tensor(info.Env(), DType::F32, with_channels(dout.shape, Ca));
  JsTensor db = new_js_tensor(info.Env(), DType::F32, with_channels(dout.shape, d.C - Ca));
  cpu::concat_channels_backward(da.tensor.f32(), db.tensor.f32(), dout.f32(), d.N, Ca, d.C - Ca, d.HW);
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("da", da.object);
  result.Set("db", db.object);
  return result;
}

// ops.gaussianSample(mean, logvar, {seed, offset, scale}) → (mean + exp(logvar/2)·eps)·scale with eps from the
// Philox normal stream at positions offset … offset+n-1 (the VAE posterior sample used for cached latents).
DBCORE_OP(gaussianSample) {
  Tensor mean = tensor_arg(info, 0, "mean", DType::F32);
  Tensor logvar = tensor_arg(info, 1, "logvar", DType::F32);
  check_shape(logvar, mean.shape, "logvar");
  const double seed = number_option(info, 2, "seed", 0), offset = number_option(info, 2, "offset", 0);
  DBCORE_CHECK(seed >= 0 && offset >= 0, "EINVAL", "gaussianSample: seed and offset must be >= 0");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, mean.shape);
  std::vector<float> eps(size_t(mean.numel()));
  normal_fill(eps.data(), mean.numel(), uint64_t(seed), uint64_t(offset));
  cpu::gaussian_sample(out.tensor.f32(), mean.f32(), logvar.f32(), eps.data(), float(number_option(info, 2, "scale", 1.0)),
                       mean.numel());
  return out.object;
}

// ops.addIntoBf16(block BF16, x F32) → BF16: bf16(block + x) rounded to nearest even (a bf16 gradient block's
// accumulation; the block itself is not changed).
DBCORE_OP(addIntoBf16) {
  Tensor block = tensor_arg(info, 0, "block", DType::BF16);
  Tensor x = tensor_arg(info, 1, "x", DType::F32);
  check_shape(x, block.shape, "x");
  JsTensor out = new_js_tensor(info.Env(), DType::BF16, block.shape);
  std::memcpy(out.tensor.data, block.data, block.nbytes());
  cpu::add_into_bf16(out.tensor.as<uint16_t>(), x.f32(), x.numel());
  return out.object;
}

DBCORE_OP(cropPad2d) {
  Tensor x = tensor_arg(info, 0, "cropPad2d: x (N, C, H, W)", DType::F32, 4);
  const int N = to_int(x.dim(0), "N"), C = to_int(x.dim(1), "C"), H = to_int(x.dim(2), "H"), W = to_int(x.dim(3), "W");
  const int y0 = int_option(info, 1, "y0", 0, std::numeric_limits<int>::min());
  const int x0 = int_option(info, 1, "x0", 0, std::numeric_limits<int>::min());
  const int OH = int_option(info, 1, "height", -1, 0), OW = int_option(info, 1, "width", -1, 0);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, C, OH, OW});
  cpu::crop_pad2d(out.tensor.f32(), x.f32(), N, C, H, W, y0, x0, OH, OW);
  return out.object;
}

}  // namespace dbcore::js
