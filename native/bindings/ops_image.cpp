// Exports of the pixel conversions (cpu/image.h), used by ts/data to build training batches and by image output.
//   ops.rgb8ToTensor(rgb U8 (N, H, W, 3)) → F32 (N, 3, H, W) in [-1, 1]
//   ops.tensorToRgb8(x F32 (N, 3, H, W)) → U8 (N, H, W, 3)
#include "cpu/image.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {

DBCORE_OP(rgb8ToTensor) {
  Tensor rgb = tensor_arg(info, 0, "rgb8ToTensor: rgb", DType::U8, 4);
  DBCORE_CHECK(rgb.dim(3) == 3, "ESHAPE", "rgb8ToTensor: rgb: expected (N, H, W, 3), got %s", rgb.describe().c_str());
  const int N = to_int(rgb.dim(0), "N"), H = to_int(rgb.dim(1), "H"), W = to_int(rgb.dim(2), "W");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, 3, H, W});
  cpu::rgb8_to_tensor(out.tensor.f32(), rgb.as<uint8_t>(), N, H, W);
  return out.object;
}

DBCORE_OP(tensorToRgb8) {
  Tensor x = tensor_arg(info, 0, "tensorToRgb8: x", DType::F32, 4);
  DBCORE_CHECK(x.dim(1) == 3, "ESHAPE", "tensorToRgb8: x: expected (N, 3, H, W), got %s", x.describe().c_str());
  const int N = to_int(x.dim(0), "N"), H = to_int(x.dim(2), "H"), W = to_int(x.dim(3), "W");
  JsTensor out = new_js_tensor(info.Env(), DType::U8, {N, H, W, 3});
  cpu::tensor_to_rgb8(out.tensor.as<uint8_t>(), x.f32(), N, H, W);
  return out.object;
}

}  // namespace dbcore::js
