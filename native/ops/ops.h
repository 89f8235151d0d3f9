// The op interface the model code calls. Each op dispatches on the context's backend to its kernel in
// native/cpu or native/cuda; the model code never names a backend. Signatures follow the kernels'
// (outputs first, inputs and weights, dimensions last), with the context in front.
// Every op of the model code has a CUDA twin (native/cuda/cuda_backend.h, same arguments, all pointers on the
// device); a build without the CUDA backend throws EUNSUPPORTED for a CUDA context.
#pragma once
#include <cstdint>
#include <utility>

#include "core/memory.h"

#include "core/precision.h"
#include "core/tensor.h"
#include "cpu/activation.h"
#include "cpu/adam8bit.h"
#include "cpu/attention.h"
#include "cpu/conv2d.h"
#include "cpu/elementwise.h"
#include "cpu/embedding.h"
#include "cpu/linear.h"
#include "cpu/loss.h"
#include "cpu/norm.h"
#include "cpu/optim.h"
#ifdef DBCORE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace dbcore::ops {

struct Context {
  Device device = Device::CPU;
  Precision precision = Precision::F32;  // of matrix products (linear, conv2d, attention): autocast
};

[[noreturn]] inline void no_cuda_kernel(const char* op) {
#ifdef DBCORE_WITH_CUDA
  throw Error("EUNSUPPORTED", format("%s has no CUDA kernel yet", op));
#else
  throw Error("EUNSUPPORTED", format("%s: this build of dbcore has no CUDA backend (built without nvcc)", op));
#endif
}

// An op with kernels on both backends: cpu::name and cuda::name take the same arguments.
#ifdef DBCORE_WITH_CUDA
#define DBCORE_CUDA_CALL(name, ...) return cuda::name(__VA_ARGS__)
#else
#define DBCORE_CUDA_CALL(name, ...) no_cuda_kernel(#name)
#endif

#define DBCORE_OP_BOTH(name)                                           \
  template <typename... Args>                                          \
  inline auto name(const Context& ctx, Args&&... args) {               \
    if (ctx.device == Device::CUDA) { DBCORE_CUDA_CALL(name, args...); } \
    return cpu::name(std::forward<Args>(args)...);                     \
  }

DBCORE_OP_BOTH(groupnorm_forward)
DBCORE_OP_BOTH(groupnorm_backward)
DBCORE_OP_BOTH(groupnorm_silu_forward)
DBCORE_OP_BOTH(groupnorm_silu_backward)
DBCORE_OP_BOTH(layernorm_forward)
DBCORE_OP_BOTH(layernorm_backward)
DBCORE_OP_BOTH(silu_forward)
DBCORE_OP_BOTH(silu_backward)
DBCORE_OP_BOTH(gelu_forward)
DBCORE_OP_BOTH(gelu_backward)
DBCORE_OP_BOTH(quick_gelu_forward)
DBCORE_OP_BOTH(quick_gelu_backward)
DBCORE_OP_BOTH(geglu_forward)
DBCORE_OP_BOTH(geglu_backward)
DBCORE_OP_BOTH(add)
DBCORE_OP_BOTH(add_inplace)
DBCORE_OP_BOTH(axpby)
DBCORE_OP_BOTH(scale_inplace)
DBCORE_OP_BOTH(add_channel_bias)
DBCORE_OP_BOTH(sum_over_hw)
DBCORE_OP_BOTH(nchw_to_nhwc)
DBCORE_OP_BOTH(nhwc_to_nchw)
DBCORE_OP_BOTH(upsample_nearest2x_forward)
DBCORE_OP_BOTH(upsample_nearest2x_backward)
DBCORE_OP_BOTH(concat_channels_forward)
DBCORE_OP_BOTH(concat_channels_backward)
DBCORE_OP_BOTH(crop_pad2d)
DBCORE_OP_BOTH(gaussian_sample)
DBCORE_OP_BOTH(add_into_bf16)
DBCORE_OP_BOTH(bf16_to_f32)
DBCORE_OP_BOTH(embedding_forward)
DBCORE_OP_BOTH(embedding_backward)
DBCORE_OP_BOTH(timestep_embedding)
DBCORE_OP_BOTH(mse_forward)
DBCORE_OP_BOTH(mse_backward)
DBCORE_OP_BOTH(sum_of_squares_into)
DBCORE_OP_BOTH(adamw_step)
DBCORE_OP_BOTH(adam8bit_blockwise_step)
DBCORE_OP_BOTH(adam32bit_step)

// Matrix-product ops also take the context's precision (autocast).
#define DBCORE_GEMM_OP_BOTH(name)                                                        \
  template <typename... Args>                                                            \
  inline auto name(const Context& ctx, Args&&... args) {                                 \
    if (ctx.device == Device::CUDA) { DBCORE_CUDA_CALL(name, args..., ctx.precision); }  \
    return cpu::name(std::forward<Args>(args)..., ctx.precision);                        \
  }

DBCORE_GEMM_OP_BOTH(linear_forward)
DBCORE_GEMM_OP_BOTH(linear_backward)
DBCORE_GEMM_OP_BOTH(conv2d_forward)
DBCORE_GEMM_OP_BOTH(conv2d_backward)
DBCORE_GEMM_OP_BOTH(attention_forward)
DBCORE_GEMM_OP_BOTH(attention_backward)

#undef DBCORE_GEMM_OP_BOTH
#undef DBCORE_OP_BOTH
#undef DBCORE_CUDA_CALL

// Workspace floats conv2d_forward / conv2d_backward need on the context's backend.
inline size_t conv2d_workspace_floats(const Context& ctx, const cpu::Conv2dShape& s) {
#ifdef DBCORE_WITH_CUDA
  if (ctx.device == Device::CUDA) return cuda::conv2d_workspace_floats(s);
#endif
  (void)ctx;
  return cpu::conv2d_workspace_floats(s);
}

// Memory on the context's device: copy within it, zero, and copies from / to host memory.
inline void copy(const Context& ctx, float* dst, const float* src, int64_t n) {
  copy_bytes(ctx.device, dst, ctx.device, src, size_t(n) * 4);
}
inline void fill_zero(const Context& ctx, float* dst, int64_t n) { zero_bytes(ctx.device, dst, size_t(n) * 4); }
template <typename T>
inline void upload(const Context& ctx, T* dst, const T* host, int64_t n) {
  copy_bytes(ctx.device, dst, Device::CPU, host, size_t(n) * sizeof(T));
}
template <typename T>
inline void download(const Context& ctx, T* host, const T* src, int64_t n) {
  copy_bytes(Device::CPU, host, ctx.device, src, size_t(n) * sizeof(T));
}

}  // namespace dbcore::ops
