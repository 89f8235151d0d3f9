// Test exports of the Linear kernels (cpu/linear.h).
//   ops.linear(inp (…, IC), weight (OC, IC), bias (OC) | null) → out (…, OC)
//   ops.linearBackward(dout (…, OC), inp (…, IC), weight, {hasBias, inputGrad, dweight?, dbias?})
//     → {dinp?, dweight, dbias?}; dweight/dbias start at zero unless given (then they accumulate, +=).
//   ops.linearGeglu(inp (…, IC), weight (2F, IC), bias (2F) | null) → {out (…, F), pre (…, 2F)}
#include "cpu/linear.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct LinearDims {
  int M, IC, OC;
};

// inp (…, IC) with any leading dimensions (M rows in all); weight (OC, IC).
LinearDims linear_dims(const Tensor& inp, const Tensor& weight, const char* op) {
  DBCORE_CHECK(inp.ndim() >= 1, "ESHAPE", "%s: inp must have at least one dimension, got %s", op,
               inp.describe().c_str());
  check_rank(weight, 2, format("%s: weight (OC, IC)", op).c_str());
  DBCORE_CHECK(weight.dim(1) == inp.dim(-1), "ESHAPE", "%s: weight %s does not take %lld input features (inp %s)",
               op, weight.describe().c_str(), static_cast<long long>(inp.dim(-1)), inp.describe().c_str());
  return {to_int(dims_product(inp, 0, inp.ndim() - 1), "linear rows M"), to_int(inp.dim(-1), "linear IC"),
          to_int(weight.dim(0), "linear OC")};
}

Shape with_last_dim(Shape shape, int64_t last) {
  shape.back() = last;
  return shape;
}

}  // namespace

DBCORE_OP(linear) {
  Tensor inp = tensor_arg(info, 0, "linear: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "linear: weight", DType::F32);
  Tensor bias = optional_f32_arg(info, 2, "linear: bias");
  LinearDims d = linear_dims(inp, weight, "linear");
  if (bias.data) check_shape(bias, {d.OC}, "linear: bias");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, with_last_dim(inp.shape, d.OC));
  cpu::linear_forward(out.tensor.f32(), inp.f32(), weight.f32(), bias.as<float>(), d.M, d.IC, d.OC);
  return out.object;
}

DBCORE_OP(linearGeglu) {
  Tensor inp = tensor_arg(info, 0, "linearGeglu: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "linearGeglu: weight", DType::F32);
  Tensor bias = optional_f32_arg(info, 2, "linearGeglu: bias");
  LinearDims d = linear_dims(inp, weight, "linearGeglu");
  DBCORE_CHECK(d.OC % 2 == 0, "ESHAPE", "linearGeglu: weight %s must have an even number of rows (2F)",
               weight.describe().c_str());
  if (bias.data) check_shape(bias, {d.OC}, "linearGeglu: bias");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, with_last_dim(inp.shape, d.OC / 2));
  JsTensor pre = new_js_tensor(info.Env(), DType::F32, with_last_dim(inp.shape, d.OC));
  cpu::linear_geglu_forward(out.tensor.f32(), pre.tensor.f32(), inp.f32(), weight.f32(), bias.as<float>(), d.M, d.IC,
                            d.OC / 2);
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("out", out.object);
  result.Set("pre", pre.object);
  return result;
}

DBCORE_OP(linearBackward) {
  Tensor dout = tensor_arg(info, 0, "linearBackward: dout", DType::F32);
  Tensor inp = tensor_arg(info, 1, "linearBackward: inp", DType::F32);
  Tensor weight = tensor_arg(info, 2, "linearBackward: weight", DType::F32);
  LinearDims d = linear_dims(inp, weight, "linearBackward");
  check_shape(dout, with_last_dim(inp.shape, d.OC), "linearBackward: dout");
  BackwardOutputs g = backward_outputs(info, 3, inp.shape, weight.shape, {d.OC});
  cpu::linear_backward(g.dinp, g.dweight, g.dbias, dout.f32(), inp.f32(), weight.f32(), d.M, d.IC, d.OC);
  return g.object;
}

}  // namespace dbcore::js
