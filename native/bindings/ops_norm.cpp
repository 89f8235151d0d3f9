// Test exports of the normalization kernels (cpu/norm.h).
//   ops.groupNorm(inp (N, C, …), weight (C), bias (C), {groups, eps}) → {out, mean (N, G), rstd (N, G)}
//   ops.groupNormBackward(dout, inp, weight, mean, rstd, {groups, inputGrad, dweight?, dbias?}) → {dinp?, dweight, dbias}
//   ops.groupNormSilu(inp, weight, bias, {groups, eps}) → {out = silu(groupNorm(inp)), mean, rstd}
//   ops.groupNormSiluBackward(dout, inp, weight, bias, mean, rstd, {groups, inputGrad, dweight?, dbias?})
//     → {dinp?, dweight, dbias}
//   ops.layerNorm(inp (…, C), weight (C), bias (C), {eps}) → {out, mean (…), rstd (…)}
//   ops.layerNormBackward(dout, inp, weight, mean, rstd, {inputGrad, dweight?, dbias?}) → {dinp?, dweight, dbias}
// dweight/dbias start at zero unless given (then they accumulate, +=). eps defaults to 1e-5 (torch's default).
#include "cpu/norm.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct GroupNormDims {
  int N, C, HW, G;
};

GroupNormDims groupnorm_dims(const Napi::CallbackInfo& info, const Tensor& inp, const Tensor& weight,
                             size_t opts_index, const char* op) {
  DBCORE_CHECK(inp.ndim() >= 2, "ESHAPE", "%s: inp must be (N, C, …) with rank >= 2, got %s", op,
               inp.describe().c_str());
  GroupNormDims d;
  d.N = to_int(inp.dim(0), "groupnorm N");
  d.C = to_int(inp.dim(1), "groupnorm C");
  d.HW = to_int(dims_product(inp, 2, inp.ndim()), "groupnorm HW");
  d.G = int_option(info, opts_index, "groups", 32, 1);
  DBCORE_CHECK(d.C % d.G == 0, "ESHAPE", "%s: %d channels (inp %s) do not split into %d groups", op, d.C,
               inp.describe().c_str(), d.G);
  check_shape(weight, {d.C}, format("%s: weight", op).c_str());
  return d;
}

// LayerNorm normalizes the last dimension; the statistics have the leading dimensions.
Shape leading_shape(const Tensor& t) { return Shape(t.shape.begin(), t.shape.end() - 1); }

void check_stats(const Tensor& mean, const Tensor& rstd, const Shape& shape, const char* op) {
  check_shape(mean, shape, format("%s: mean", op).c_str());
  check_shape(rstd, shape, format("%s: rstd", op).c_str());
}

Napi::Object forward_result(Napi::Env env, const JsTensor& out, const JsTensor& mean, const JsTensor& rstd) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("out", out.object);
  result.Set("mean", mean.object);
  result.Set("rstd", rstd.object);
  return result;
}

float eps_option(const Napi::CallbackInfo& info, size_t index) {
  const double eps = number_option(info, index, "eps", 1e-5);
  DBCORE_CHECK(eps >= 0, "EINVAL", "option 'eps' = %g must be >= 0", eps);
  return static_cast<float>(eps);
}

}  // namespace

namespace {

using GroupNormForward = decltype(&cpu::groupnorm_forward);  // or cpu::groupnorm_silu_forward

Napi::Value group_norm(const Napi::CallbackInfo& info, GroupNormForward kernel, const char* op) {
  Tensor inp = tensor_arg(info, 0, format("%s: inp", op).c_str(), DType::F32);
  Tensor weight = tensor_arg(info, 1, format("%s: weight", op).c_str(), DType::F32);
  Tensor bias = tensor_arg(info, 2, format("%s: bias", op).c_str(), DType::F32);
  GroupNormDims d = groupnorm_dims(info, inp, weight, 3, op);
  check_shape(bias, {d.C}, format("%s: bias", op).c_str());
  const float eps = eps_option(info, 3);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, inp.shape);
  JsTensor mean = new_js_tensor(info.Env(), DType::F32, {d.N, d.G});
  JsTensor rstd = new_js_tensor(info.Env(), DType::F32, {d.N, d.G});
  kernel(out.tensor.f32(), mean.tensor.f32(), rstd.tensor.f32(), inp.f32(), weight.f32(), bias.f32(), d.N, d.C, d.HW,
         d.G, eps);
  return forward_result(info.Env(), out, mean, rstd);
}

// The backward exports' arguments: (dout, inp, weight, [bias,] mean, rstd, opts); the SiLU variant has the bias.
struct GroupNormBackwardArgs {
  Tensor dout, inp, weight, bias, mean, rstd;
  GroupNormDims d;
  BackwardOutputs g;
};

GroupNormBackwardArgs group_norm_backward_args(const Napi::CallbackInfo& info, bool with_bias, const char* op) {
  GroupNormBackwardArgs a;
  size_t i = 0;
  auto next = [&](const char* what) { return tensor_arg(info, i++, format("%s: %s", op, what).c_str(), DType::F32); };
  a.dout = next("dout");
  a.inp = next("inp");
  a.weight = next("weight");
  if (with_bias) a.bias = next("bias");
  a.mean = next("mean");
  a.rstd = next("rstd");
  a.d = groupnorm_dims(info, a.inp, a.weight, i, op);
  check_shape(a.dout, a.inp.shape, format("%s: dout", op).c_str());
  if (with_bias) check_shape(a.bias, {a.d.C}, format("%s: bias", op).c_str());
  check_stats(a.mean, a.rstd, {a.d.N, a.d.G}, op);
  a.g = backward_outputs(info, i, a.inp.shape, a.weight.shape, a.weight.shape);
  return a;
}

}  // namespace

DBCORE_OP(groupNorm) { return group_norm(info, cpu::groupnorm_forward, "groupNorm"); }

DBCORE_OP(groupNormSilu) { return group_norm(info, cpu::groupnorm_silu_forward, "groupNormSilu"); }

DBCORE_OP(groupNormBackward) {
  GroupNormBackwardArgs a = group_norm_backward_args(info, false, "groupNormBackward");
  cpu::groupnorm_backward(a.g.dinp, a.g.dweight, a.g.dbias, a.dout.f32(), a.inp.f32(), a.weight.f32(), a.mean.f32(),
                          a.rstd.f32(), a.d.N, a.d.C, a.d.HW, a.d.G);
  return a.g.object;
}

DBCORE_OP(groupNormSiluBackward) {
  GroupNormBackwardArgs a = group_norm_backward_args(info, true, "groupNormSiluBackward");
  cpu::groupnorm_silu_backward(a.g.dinp, a.g.dweight, a.g.dbias, a.dout.f32(), a.inp.f32(), a.weight.f32(),
                               a.bias.f32(), a.mean.f32(), a.rstd.f32(), a.d.N, a.d.C, a.d.HW, a.d.G);
  return a.g.object;
}

DBCORE_OP(layerNorm) {
  Tensor inp = tensor_arg(info, 0, "layerNorm: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "layerNorm: weight", DType::F32);
  Tensor bias = tensor_arg(info, 2, "layerNorm: bias", DType::F32);
  DBCORE_CHECK(inp.ndim() >= 1, "ESHAPE", "layerNorm: inp must have at least one dimension");
  const int C = to_int(inp.dim(-1), "layerNorm C"), M = to_int(dims_product(inp, 0, inp.ndim() - 1), "layerNorm M");
  check_shape(weight, {C}, "layerNorm: weight");
  check_shape(bias, {C}, "layerNorm: bias");
  const float eps = eps_option(info, 3);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, inp.shape);
  JsTensor mean = new_js_tensor(info.Env(), DType::F32, leading_shape(inp));
  JsTensor rstd = new_js_tensor(info.Env(), DType::F32, leading_shape(inp));
  cpu::layernorm_forward(out.tensor.f32(), mean.tensor.f32(), rstd.tensor.f32(), inp.f32(), weight.f32(), bias.f32(),
                         M, C, eps);
  return forward_result(info.Env(), out, mean, rstd);
}

DBCORE_OP(layerNormBackward) {
  Tensor dout = tensor_arg(info, 0, "layerNormBackward: dout", DType::F32);
  Tensor inp = tensor_arg(info, 1, "layerNormBackward: inp", DType::F32);
  Tensor weight = tensor_arg(info, 2, "layerNormBackward: weight", DType::F32);
  Tensor mean = tensor_arg(info, 3, "layerNormBackward: mean", DType::F32);
  Tensor rstd = tensor_arg(info, 4, "layerNormBackward: rstd", DType::F32);
  DBCORE_CHECK(inp.ndim() >= 1, "ESHAPE", "layerNormBackward: inp must have at least one dimension");
  const int C = to_int(inp.dim(-1), "layerNorm C"), M = to_int(dims_product(inp, 0, inp.ndim() - 1), "layerNorm M");
  check_shape(weight, {C}, "layerNormBackward: weight");
  check_shape(dout, inp.shape, "layerNormBackward: dout");
  check_stats(mean, rstd, leading_shape(inp), "layerNormBackward");
  BackwardOutputs g = backward_outputs(info, 5, inp.shape, weight.shape, weight.shape);
  cpu::layernorm_backward(g.dinp, g.dweight, g.dbias, dout.f32(), inp.f32(), weight.f32(), mean.f32(), rstd.f32(), M,
                          C);
  return g.object;
}

}  // namespace dbcore::js
