// The op interface the model code calls. Each op dispatches on the context's backend to its kernel in
// native/cpu or native/cuda; the model code never names a backend. Signatures follow the kernels'
// (outputs first, inputs and weights, dimensions last), with the context in front.
// A CUDA twin is wired here as it lands; until then an op on a CUDA context throws EUNSUPPORTED naming it.
#pragma once
#include <cstdint>

#include "core/precision.h"
#include "core/tensor.h"
#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/conv2d.h"
#include "cpu/elementwise.h"
#include "cpu/embedding.h"
#include "cpu/linear.h"
#include "cpu/loss.h"
#include "cpu/norm.h"

namespace dbcore::ops {

struct Context {
  Device device = Device::CPU;
  Precision precision = Precision::F32;  // of matrix products (linear, conv2d, attention): autocast
};

// Throws unless the op has a kernel for the context's backend.
inline void require_cpu(const Context& ctx, const char* op) {
  DBCORE_CHECK(ctx.device == Device::CPU, "EUNSUPPORTED", "%s has no CUDA kernel yet", op);
}

#define DBCORE_CPU_OP(name)                                  \
  template <typename... Args>                                \
  inline auto name(const Context& ctx, Args&&... args) {     \
    require_cpu(ctx, #name);                                 \
    return cpu::name(std::forward<Args>(args)...);           \
  }

DBCORE_CPU_OP(groupnorm_forward)
DBCORE_CPU_OP(groupnorm_backward)
DBCORE_CPU_OP(layernorm_forward)
DBCORE_CPU_OP(layernorm_backward)
DBCORE_CPU_OP(silu_forward)
DBCORE_CPU_OP(silu_backward)
DBCORE_CPU_OP(gelu_forward)
DBCORE_CPU_OP(gelu_backward)
DBCORE_CPU_OP(quick_gelu_forward)
DBCORE_CPU_OP(quick_gelu_backward)
DBCORE_CPU_OP(geglu_forward)
DBCORE_CPU_OP(geglu_backward)
DBCORE_CPU_OP(add)
DBCORE_CPU_OP(add_inplace)
DBCORE_CPU_OP(axpby)
DBCORE_CPU_OP(scale_inplace)
DBCORE_CPU_OP(add_channel_bias)
DBCORE_CPU_OP(sum_over_hw)
DBCORE_CPU_OP(nchw_to_nhwc)
DBCORE_CPU_OP(nhwc_to_nchw)
DBCORE_CPU_OP(upsample_nearest2x_forward)
DBCORE_CPU_OP(upsample_nearest2x_backward)
DBCORE_CPU_OP(concat_channels_forward)
DBCORE_CPU_OP(concat_channels_backward)
DBCORE_CPU_OP(crop_pad2d)
DBCORE_CPU_OP(embedding_forward)
DBCORE_CPU_OP(embedding_backward)
DBCORE_CPU_OP(timestep_embedding)
DBCORE_CPU_OP(mse_forward)
DBCORE_CPU_OP(mse_backward)

// Matrix-product ops also take the context's precision (autocast).
#define DBCORE_CPU_GEMM_OP(name)                                     \
  template <typename... Args>                                        \
  inline auto name(const Context& ctx, Args&&... args) {             \
    require_cpu(ctx, #name);                                         \
    return cpu::name(std::forward<Args>(args)..., ctx.precision);    \
  }

DBCORE_CPU_GEMM_OP(linear_forward)
DBCORE_CPU_GEMM_OP(linear_backward)
DBCORE_CPU_GEMM_OP(conv2d_forward)
DBCORE_CPU_GEMM_OP(conv2d_backward)
DBCORE_CPU_GEMM_OP(attention_forward)
DBCORE_CPU_GEMM_OP(attention_backward)

#undef DBCORE_CPU_GEMM_OP
#undef DBCORE_CPU_OP

}  // namespace dbcore::ops
