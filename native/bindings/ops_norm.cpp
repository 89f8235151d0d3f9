// Test exports of the normalization kernels (cpu/norm.h).
//   ops.groupNorm(inp (N, C, …), weight (C), bias (C), {groups, eps}) → {out, mean (N, G), rstd (N, G)}
//   ops.groupNormBackward(dout, inp, weight, mean, rstd, {groups, inputGrad, dweight?, dbias?}) → {dinp?, dweight, dbias}
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

DBCORE_OP(groupNorm) {
  Tensor inp = tensor_arg(info, 0, "groupNorm: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "groupNorm: weight", DType::F32);
  Tensor bias = tensor_arg(info, 2, "groupNorm: bias", DType::F32);
  GroupNormDims d = groupnorm_dims(info, inp, weight, 3, "groupNorm");
  check_shape(bias, {d.C}, "groupNorm: bias");
  const float eps = eps_option(info, 3);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, inp.shape);
  JsTensor mean = new_js_tensor(info.Env(), DType::F32, {d.N, d.G});
  JsTensor rstd = new_js_tensor(info.Env(), DType::F32, {d.N, d.G});
  cpu::groupnorm_forward(out.tensor.f32(), mean.tensor.f32(), rstd.tensor.f32(), inp.f32(), weight.f32(), bias.f32(),
                         d.N, d.C, d.HW, d.G, eps);
  return forward_result(info.Env(), out, mean, rstd);
}

DBCORE_OP(groupNormBackward) {
  Tensor dout = tensor_arg(info, 0, "groupNormBackward: dout", DType::F32);
  Tensor inp = tensor_arg(info, 1, "groupNormBackward: inp", DType::F32);
  Tensor weight = tensor_arg(info, 2, "groupNormBackward: weight", DType::F32);
  Tensor mean = tensor_arg(info, 3, "groupNormBackward: mean", DType::F32);
  Tensor rstd = tensor_arg(info, 4, "groupNormBackward: rstd", DType::F32);
  GroupNormDims d = groupnorm_dims(info, inp, weight, 5, "groupNormBackward");
  check_shape(dout, inp.shape, "groupNormBackward: dout");
  check_stats(mean, rstd, {d.N, d.G}, "groupNormBackward");
  BackwardOutputs g = backward_outputs(info, 5, inp.shape, weight.shape, weight.shape);
  cpu::groupnorm_backward(g.dinp, g.dweight, g.dbias, dout.f32(), inp.f32(), weight.f32(), mean.f32(), rstd.f32(),
                          d.N, d.C, d.HW, d.G);
  return g.object;
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
