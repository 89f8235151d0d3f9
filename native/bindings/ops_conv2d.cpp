// Test exports of the convolution kernels (cpu/conv2d.h). The workspace is allocated per call here; model code
// allocates it once. bf16: the products' operands rounded to bfloat16 (fp32 accumulation), as CUDA's autocast.
//   ops.conv2d(inp (N, C, H, W), weight (OC, C, KH, KW), bias (OC) | null, {stride, pad, bf16}) → out (N, OC, OH, OW)
//   ops.conv2dBackward(dout, inp, weight, {stride, pad, bf16, hasBias, inputGrad, dweight?, dbias?})
//     → {dinp?, dweight, dbias?}; dweight/dbias start at zero unless given (then they accumulate, +=).
//   ops.conv2dImplicitGemmViews(inp, weight, dout, {stride, pad}) → the operands of the CUDA implicit GEMM
//     (cuda/conv_index.h), gathered on the CPU through the kernels' own index functions (a test of that math):
//     {forwardA (OC, C·KK), forwardB (N, C·KK, OHW), dgradA (C, OC·KK), dgradB (N, OC·KK, HW),
//      wgradA (OC, P), wgradB (P, C·KK), split: {forward, dgrad, wgrad: {slices, chunk}}}; padding and taps that
//     miss a pixel read 0; split is the kernels' split-K plan (plan_split) of each product.
#include <utility>
#include <vector>

#include "cpu/conv2d.h"
#include "cuda/conv_index.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {
namespace {

cpu::Conv2dShape conv_shape(const Napi::CallbackInfo& info, const Tensor& inp, const Tensor& weight,
                            size_t opts_index, const char* op) {
  check_rank(inp, 4, format("%s: inp (N, C, H, W)", op).c_str());
  check_rank(weight, 4, format("%s: weight (OC, C, KH, KW)", op).c_str());
  DBCORE_CHECK(weight.dim(1) == inp.dim(1), "ESHAPE", "%s: weight %s expects %lld input channels but inp %s has %lld",
               op, weight.describe().c_str(), static_cast<long long>(weight.dim(1)), inp.describe().c_str(),
               static_cast<long long>(inp.dim(1)));
  cpu::Conv2dShape s;
  s.N = to_int(inp.dim(0), "conv2d N");
  s.C = to_int(inp.dim(1), "conv2d C");
  s.H = to_int(inp.dim(2), "conv2d H");
  s.W = to_int(inp.dim(3), "conv2d W");
  s.OC = to_int(weight.dim(0), "conv2d OC");
  s.KH = to_int(weight.dim(2), "conv2d KH");
  s.KW = to_int(weight.dim(3), "conv2d KW");
  s.stride = int_option(info, opts_index, "stride", 1, 1);
  s.pad = int_option(info, opts_index, "pad", 0, 0);
  DBCORE_CHECK(s.C > 0 && s.OC > 0 && s.KH > 0 && s.KW > 0, "ESHAPE", "%s: empty channel or kernel dimension in %s",
               op, weight.describe().c_str());
  DBCORE_CHECK(s.H + 2 * s.pad >= s.KH && s.W + 2 * s.pad >= s.KW, "ESHAPE",
               "%s: kernel %dx%d does not fit the padded input %dx%d (inp %s, pad %d)", op, s.KH, s.KW,
               s.H + 2 * s.pad, s.W + 2 * s.pad, inp.describe().c_str(), s.pad);
  return s;
}

Shape out_shape(const cpu::Conv2dShape& s) { return {s.N, s.OC, s.OH(), s.OW()}; }

Precision precision_option(const Napi::CallbackInfo& info, size_t opts_index) {
  return bool_option(info, opts_index, "bf16", false) ? Precision::BF16 : Precision::F32;
}

// A (rows, K) operand: element (m, k) = src[a_offset(k_entry(k), m)], every one inside src.
template <class KEntryOf, class AOffset>
JsTensor gather_a(Napi::Env env, const float* src, int rows, int K, KEntryOf k_entry, AOffset a_offset) {
  JsTensor t = new_js_tensor(env, DType::F32, {rows, K});
  float* dst = t.tensor.f32();
  for (int k = 0; k < K; ++k) {
    const cuda::KEntry e = k_entry(k);
    for (int m = 0; m < rows; ++m) dst[static_cast<int64_t>(m) * K + k] = src[a_offset(e, m)];
  }
  return t;
}

// B (K, cols) operand of each of `batch` images (src advanced by src_stride per image): b_offset < 0 reads 0.
template <class KEntryOf, class ColOf, class BOffset>
JsTensor gather_b(Napi::Env env, const float* src, int64_t src_stride, int batch, int K, int cols, const Shape& shape,
                  KEntryOf k_entry, ColOf col_entry, BOffset b_offset) {
  JsTensor t = new_js_tensor(env, DType::F32, shape);
  float* dst = t.tensor.f32();
  for (int img = 0; img < batch; ++img)
    for (int k = 0; k < K; ++k) {
      const cuda::KEntry e = k_entry(k);
      for (int n = 0; n < cols; ++n) {
        const int o = b_offset(e, col_entry(n));
        *dst++ = o < 0 ? 0.f : src[img * src_stride + o];
      }
    }
  return t;
}

}  // namespace

DBCORE_OP(conv2d) {
  Tensor inp = tensor_arg(info, 0, "conv2d: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "conv2d: weight", DType::F32);
  Tensor bias = optional_f32_arg(info, 2, "conv2d: bias");
  cpu::Conv2dShape s = conv_shape(info, inp, weight, 3, "conv2d");
  if (bias.data) check_shape(bias, {s.OC}, "conv2d: bias");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, out_shape(s));
  std::vector<float> workspace(cpu::conv2d_workspace_floats(s));
  cpu::conv2d_forward(out.tensor.f32(), inp.f32(), weight.f32(), bias.as<float>(), workspace.data(), s,
                      precision_option(info, 3));
  return out.object;
}

DBCORE_OP(conv2dBackward) {
  Tensor dout = tensor_arg(info, 0, "conv2dBackward: dout", DType::F32);
  Tensor inp = tensor_arg(info, 1, "conv2dBackward: inp", DType::F32);
  Tensor weight = tensor_arg(info, 2, "conv2dBackward: weight", DType::F32);
  cpu::Conv2dShape s = conv_shape(info, inp, weight, 3, "conv2dBackward");
  check_shape(dout, out_shape(s), "conv2dBackward: dout");
  BackwardOutputs g = backward_outputs(info, 3, inp.shape, weight.shape, {s.OC});
  std::vector<float> workspace(cpu::conv2d_workspace_floats(s));
  cpu::conv2d_backward(g.dinp, g.dweight, g.dbias, dout.f32(), inp.f32(), weight.f32(), workspace.data(), s,
                       precision_option(info, 3));
  return g.object;
}

DBCORE_OP(conv2dImplicitGemmViews) {
  using namespace cuda;
  Tensor inp = tensor_arg(info, 0, "conv2dImplicitGemmViews: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "conv2dImplicitGemmViews: weight", DType::F32);
  Tensor dout = tensor_arg(info, 2, "conv2dImplicitGemmViews: dout", DType::F32);
  cpu::Conv2dShape s = conv_shape(info, inp, weight, 3, "conv2dImplicitGemmViews");
  check_shape(dout, out_shape(s), "conv2dImplicitGemmViews: dout");
  check_conv_int32(s);
  const ConvDims d = conv_dims(s);
  const int CKK = d.C * d.KK, OCKK = d.OC * d.KK, P = d.N * d.OHW;
  const float *x = inp.f32(), *w = weight.f32(), *g = dout.f32();
  const int64_t in_img = static_cast<int64_t>(d.C) * d.HW, out_img = static_cast<int64_t>(d.OC) * d.OHW;
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("forwardA", gather_a(env, w, d.OC, CKK, [&](int k) { return forward_k_entry(d, k); },
                             [&](const KEntry& e, int m) { return forward_a_offset(d, e, m); }).object);
  r.Set("forwardB", gather_b(env, x, in_img, d.N, CKK, d.OHW, {d.N, CKK, d.OHW},
                             [&](int k) { return forward_k_entry(d, k); }, [&](int n) { return forward_col_entry(d, n); },
                             [&](const KEntry& e, const ColEntry& c) { return forward_b_offset(d, e, c); }).object);
  r.Set("dgradA", gather_a(env, w, d.C, OCKK, [&](int k) { return dgrad_k_entry(d, k); },
                           [&](const KEntry& e, int m) { return dgrad_a_offset(d, e, m); }).object);
  r.Set("dgradB", gather_b(env, g, out_img, d.N, OCKK, d.HW, {d.N, OCKK, d.HW},
                           [&](int k) { return dgrad_k_entry(d, k); }, [&](int n) { return dgrad_col_entry(d, n); },
                           [&](const KEntry& e, const ColEntry& c) { return dgrad_b_offset(d, e, c); }).object);
  r.Set("wgradA", gather_a(env, g, d.OC, P, [&](int p) { return wgrad_k_entry(d, p); },
                           [&](const KEntry& e, int m) { return wgrad_a_offset(d, e, m); }).object);
  r.Set("wgradB", gather_b(env, x, 0, 1, P, CKK, {P, CKK}, [&](int p) { return wgrad_k_entry(d, p); },
                           [&](int n) { return wgrad_col_entry(d, n); },
                           [&](const KEntry& e, const ColEntry& c) { return wgrad_b_offset(d, e, c); }).object);
  Napi::Object split = Napi::Object::New(env);
  const std::pair<const char*, ConvGemm> products[] = {
      {"forward", forward_gemm(d)}, {"dgrad", dgrad_gemm(d)}, {"wgrad", wgrad_gemm(d)}};
  for (const auto& [name, gemm] : products) {
    Napi::Object plan = Napi::Object::New(env);
    plan.Set("slices", gemm.split.slices);
    plan.Set("chunk", gemm.split.chunk);
    split.Set(name, plan);
  }
  r.Set("split", split);
  return r;
}

}  // namespace dbcore::js
