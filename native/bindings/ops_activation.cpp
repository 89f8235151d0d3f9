// Kernel-level exports of the activations (cpu/activation.h) for tests:
//   ops.silu(x) / ops.gelu(x) / ops.quickGelu(x) → y;   ops.siluBackward(dy, x) / … → dx
//   ops.geglu(x (…, 2F)) → y (…, F);                    ops.gegluBackward(dy (…, F), x (…, 2F)) → dx (…, 2F)
#include <climits>

#include "cpu/activation.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

using PointwiseForward = void (*)(float*, const float*, int64_t);
using PointwiseBackward = void (*)(float*, const float*, const float*, int64_t);

Napi::Value pointwise_forward(const Napi::CallbackInfo& info, PointwiseForward kernel) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  JsTensor y = new_js_tensor(info.Env(), DType::F32, x.shape);
  kernel(y.tensor.f32(), x.f32(), x.numel());
  return y.object;
}

Napi::Value pointwise_backward(const Napi::CallbackInfo& info, PointwiseBackward kernel) {
  Tensor dy = tensor_arg(info, 0, "dy", DType::F32);
  Tensor x = tensor_arg(info, 1, "x", DType::F32);
  check_shape(dy, x.shape, "dy");
  JsTensor dx = new_js_tensor(info.Env(), DType::F32, x.shape);
  kernel(dx.tensor.f32(), dy.f32(), x.f32(), x.numel());
  return dx.object;
}

struct GegluDims {
  int M, F;
  Shape out_shape;  // x's shape with the last dimension halved
};

GegluDims geglu_dims(const Tensor& x) {
  DBCORE_CHECK(x.ndim() >= 1, "ESHAPE", "geglu: x must have at least one dimension, got %s", x.describe().c_str());
  const int64_t width = x.dim(-1);
  DBCORE_CHECK(width % 2 == 0, "ESHAPE", "geglu: x's last dimension must be even ([hidden | gate]), got %s",
               x.describe().c_str());
  const int64_t rows = width ? x.numel() / width : 0;
  DBCORE_CHECK(rows <= INT_MAX && width / 2 <= INT_MAX, "ESHAPE", "geglu: x %s is too large",
               x.describe().c_str());
  GegluDims g{static_cast<int>(rows), static_cast<int>(width / 2), x.shape};
  g.out_shape.back() = width / 2;
  return g;
}

}  // namespace

DBCORE_OP(silu) { return pointwise_forward(info, cpu::silu_forward); }
DBCORE_OP(siluBackward) { return pointwise_backward(info, cpu::silu_backward); }
DBCORE_OP(gelu) { return pointwise_forward(info, cpu::gelu_forward); }
DBCORE_OP(geluBackward) { return pointwise_backward(info, cpu::gelu_backward); }
DBCORE_OP(quickGelu) { return pointwise_forward(info, cpu::quick_gelu_forward); }
DBCORE_OP(quickGeluBackward) { return pointwise_backward(info, cpu::quick_gelu_backward); }

DBCORE_OP(geglu) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  GegluDims g = geglu_dims(x);
  JsTensor y = new_js_tensor(info.Env(), DType::F32, g.out_shape);
  cpu::geglu_forward(y.tensor.f32(), x.f32(), g.M, g.F);
  return y.object;
}

DBCORE_OP(gegluBackward) {
  Tensor dy = tensor_arg(info, 0, "dy", DType::F32);
  Tensor x = tensor_arg(info, 1, "x", DType::F32);
  GegluDims g = geglu_dims(x);
  check_shape(dy, g.out_shape, "dy");
  JsTensor dx = new_js_tensor(info.Env(), DType::F32, x.shape);
  cpu::geglu_backward(dx.tensor.f32(), dy.f32(), x.f32(), g.M, g.F);
  return dx.object;
}

}  // namespace dbcore::js
