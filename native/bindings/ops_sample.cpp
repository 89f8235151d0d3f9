// Per-element steps of text-to-image sampling (cpu/guidance.h); images to pixels is ops.tensorToRgb8 (ops_image.cpp).
//   ops.guidanceCombine(pred F32 (2N, …), {scale}) → (N, …) = uncond + scale·(cond − uncond), with the
//     unconditional half first (rows 0…N-1) and the conditional half second, as the pipeline batches them.
#include <cmath>

#include "cpu/guidance.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {

DBCORE_OP(guidanceCombine) {
  Tensor pred = tensor_arg(info, 0, "guidanceCombine: pred", DType::F32);
  DBCORE_CHECK(pred.ndim() >= 1 && pred.dim(0) % 2 == 0 && pred.dim(0) > 0, "ESHAPE",
               "guidanceCombine: pred must be (2N, …) with the unconditional half first, got %s",
               pred.describe().c_str());
  const double scale = number_option(info, 1, "scale", NAN);
  DBCORE_CHECK(std::isfinite(scale), "EINVAL", "guidanceCombine: options.scale must be a finite number");
  Shape half = pred.shape;
  half[0] /= 2;
  JsTensor out = new_js_tensor(info.Env(), DType::F32, half);
  const int64_t n = pred.numel() / 2;
  cpu::guidance_combine(out.tensor.f32(), pred.f32(), pred.f32() + n, static_cast<float>(scale), n);
  return out.object;
}

}  // namespace dbcore::js
