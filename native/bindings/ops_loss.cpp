// Test exports of the loss kernels (cpu/loss.h).
//   ops.mseLoss(pred, target) → number (mean of squared differences, summed in float64)
//   ops.mseLossBackward(pred, target, {dloss = 1}) → dpred
#include "cpu/loss.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {

DBCORE_OP(mseLoss) {
  Tensor pred = tensor_arg(info, 0, "mseLoss: pred", DType::F32);
  Tensor target = tensor_arg(info, 1, "mseLoss: target", DType::F32);
  check_shape(target, pred.shape, "mseLoss: target");
  return Napi::Number::New(info.Env(), cpu::mse_forward(pred.f32(), target.f32(), pred.numel()));
}

DBCORE_OP(mseLossBackward) {
  Tensor pred = tensor_arg(info, 0, "mseLossBackward: pred", DType::F32);
  Tensor target = tensor_arg(info, 1, "mseLossBackward: target", DType::F32);
  check_shape(target, pred.shape, "mseLossBackward: target");
  const float dloss = static_cast<float>(number_option(info, 2, "dloss", 1.0));
  JsTensor dpred = new_js_tensor(info.Env(), DType::F32, pred.shape);
  cpu::mse_backward(dpred.tensor.f32(), pred.f32(), target.f32(), pred.numel(), dloss);
  return dpred.object;
}

}  // namespace dbcore::js
