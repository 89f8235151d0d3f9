// Test exports of the convolution kernels (cpu/conv2d.h). The workspace is allocated per call here; model code
// allocates it once.
//   ops.conv2d(inp (N, C, H, W), weight (OC, C, KH, KW), bias (OC) | null, {stride, pad}) → out (N, OC, OH, OW)
//   ops.conv2dBackward(dout, inp, weight, {stride, pad, hasBias, inputGrad, dweight?, dbias?})
//     → {dinp?, dweight, dbias?}; dweight/dbias start at zero unless given (then they accumulate, +=).
#include <vector>

#include "cpu/conv2d.h"
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

}  // namespace

DBCORE_OP(conv2d) {
  Tensor inp = tensor_arg(info, 0, "conv2d: inp", DType::F32);
  Tensor weight = tensor_arg(info, 1, "conv2d: weight", DType::F32);
  Tensor bias = optional_f32_arg(info, 2, "conv2d: bias");
  cpu::Conv2dShape s = conv_shape(info, inp, weight, 3, "conv2d");
  if (bias.data) check_shape(bias, {s.OC}, "conv2d: bias");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, out_shape(s));
  std::vector<float> workspace(cpu::conv2d_workspace_floats(s));
  cpu::conv2d_forward(out.tensor.f32(), inp.f32(), weight.f32(), bias.as<float>(), workspace.data(), s);
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
  cpu::conv2d_backward(g.dinp, g.dweight, g.dbias, dout.f32(), inp.f32(), weight.f32(), workspace.data(), s);
  return g.object;
}

}  // namespace dbcore::js
