// Compute precision of matrix products (autocast): fp32 operands rounded to fp16 / bf16 as they are read, products
// accumulated and written in fp32. Weights stay fp32 (master weights); norms, softmax statistics and every other op
// stay fp32. Both backends support all three; fp16 training uses dynamic loss scaling (model/loss_scaler.h).
#pragma once

namespace dbcore {

enum class Precision { F32, F16, BF16 };

inline const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "fp32";
    case Precision::F16: return "fp16";
    case Precision::BF16: return "bf16";
  }
  return "?";
}

}  // namespace dbcore
