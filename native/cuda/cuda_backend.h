// The CUDA backend as seen from plain C++ (no CUDA headers needed to include this). Everything here is
// defined in native/cuda/*.cu and exists only in builds with DBCORE_WITH_CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/precision.h"
#include "cpu/adam8bit.h"
#include "cpu/conv2d.h"
#include "cpu/optim.h"

namespace dbcore::cuda {

struct DeviceInfo {
  bool available = false;
  std::string reason;  // why CUDA is unavailable (no driver, no device, driver too old…)
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_memory = 0, free_memory = 0;
  int driver_version = 0, runtime_version = 0;
};

DeviceInfo query_device(int ordinal = 0);

// Device memory and copies (throw dbcore::Error "ECUDA" on failure).
void* device_alloc(size_t bytes);
void device_free(void* ptr);
// A kernel's temporary array (attention's row statistics, per-channel and per-chunk partial sums, reduction
// partials, embedding's bad-id flag): one device buffer per host thread that only grows, so a call costs no
// cudaMalloc/cudaFree (cudaFree synchronizes the device, which stalls the queue of launches). Valid until the
// thread's next call: reuse is safe because every kernel and copy runs in order on the default stream. Never freed
// (freeing at thread exit could run after the CUDA runtime has shut down; the context's teardown frees it); not
// counted in memory_counters (a few hundred KiB to a few MiB at SD sizes).
void* thread_scratch(size_t bytes);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void fill_bytes(void* dst, int byte, size_t bytes);  // cudaMemset
void synchronize();
// Median over `reps` timed runs of `launch` (after `warmup` untimed ones), in milliseconds, by CUDA events.
double time_ms(const std::function<void()>& launch, int warmup, int reps);

// ---- Kernels: CUDA twins of native/cpu/*.h, same argument order and meaning, all pointers on the device. ----
// Each launches on the default stream and checks the launch; none synchronizes unless it returns a host value
// or must report bad input (embedding_forward's ids), which the comment says.

// Matrix-product input precision (autocast): fp32 operands are rounded to fp16/bf16 as they are loaded, products
// accumulate in fp32, outputs are fp32. F32 runs the SIMT kernel (fp32 throughout).
using ::dbcore::Precision;
using ::dbcore::precision_name;

// cpu/softmax.h
void softmax_forward(float* out, const float* inp, int M, int N);
void softmax_backward(float* dinp, const float* dout, const float* out, int M, int N);

// cpu/elementwise.h
void add(float* out, const float* a, const float* b, int64_t n);
void add_inplace(float* acc, const float* x, int64_t n);
void axpby(float* out, float alpha, const float* a, float beta, const float* b, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void add_channel_bias(float* x, const float* bias, int N, int C, int HW);
void sum_over_hw(float* dbias, const float* dout, int N, int C, int HW);
void nchw_to_nhwc(float* out, const float* inp, int N, int C, int HW);
void nhwc_to_nchw(float* out, const float* inp, int N, int C, int HW);
void upsample_nearest2x_forward(float* out, const float* inp, int N, int C, int H, int W);
void upsample_nearest2x_backward(float* dinp, const float* dout, int N, int C, int H, int W);
void concat_channels_forward(float* out, const float* a, const float* b, int N, int Ca, int Cb, int HW);
void concat_channels_backward(float* da, float* db, const float* dout, int N, int Ca, int Cb, int HW);
void gaussian_sample(float* out, const float* mean, const float* logvar, const float* eps, float scale, int64_t n);
void crop_pad2d(float* out, const float* inp, int N, int C, int H, int W, int y0, int x0, int OH, int OW);
void add_into_bf16(uint16_t* dst, const float* src, int64_t n);
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);

// cpu/activation.h
void silu_forward(float* out, const float* inp, int64_t n);
void silu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void quick_gelu_forward(float* out, const float* inp, int64_t n);
void quick_gelu_backward(float* dinp, const float* dout, const float* inp, int64_t n);
void geglu_forward(float* out, const float* inp, int M, int F);
void geglu_backward(float* dinp, const float* dout, const float* inp, int M, int F);

// cpu/norm.h
void groupnorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, int HW, int G, float eps);
void groupnorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C, int HW, int G);
void groupnorm_silu_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                            const float* bias, int N, int C, int HW, int G, float eps);
void groupnorm_silu_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* bias, const float* mean, const float* rstd, int N,
                             int C, int HW, int G);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int M, int C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int M, int C);

// cpu/embedding.h. embedding_forward synchronizes to report ids outside [0, V) (EINVAL, as the CPU twin).
void embedding_forward(float* out, const int32_t* ids, const float* table, int M, int C, int V);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int M, int C);
void timestep_embedding(float* out, const float* timesteps, int N, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float scale, float max_period);

// cpu/loss.h. mse_forward synchronizes (it returns the mean to the host).
double mse_forward(const float* pred, const float* target, int64_t n);
void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float dloss);

// cpu/optim.h (the CPU twin's hyper-parameter struct). sum_of_squares_into adds into a device double
// without synchronizing (the caller downloads its accumulators once, after all the reductions it needs).
using cpu::AdamWHyper;
void adamw_step(float* param, float* m, float* v, const float* grad, const AdamWHyper& h, int64_t step, int64_t n);
void sum_of_squares_into(double* acc, const float* x, int64_t n);

// cpu/adam8bit.h: the same update, bit for bit (native/cuda/adam8bit.cu is compiled without FMA contraction).
using cpu::Adam8bitHyper;
void adam8bit_blockwise_step(float* param, uint8_t* state1, uint8_t* state2, float* absmax1, float* absmax2,
                             const float* grad, const float* qmap1, const float* qmap2, const Adam8bitHyper& h,
                             int64_t n);
void adam32bit_step(float* param, float* m, float* v, const float* grad, const Adam8bitHyper& h, int64_t n);

// cpu/gemm.h: row-major C (M, N) = alpha · op(A) (M, K) · op(B) (K, N) + beta · C (beta == 0: C is not read),
// plus the epilogue's terms: bias (N) added to every row (after alpha, before beta · C).
struct GemmEpilogue {
  const float* bias = nullptr;  // per output column, or null
};
// Which tensor-core kernel a product takes: Auto picks the tile by the grid size and float4 loads where pointers,
// leading dimensions and extents allow (native/cuda/gemm.cu); tests and benchmarks force a path. F32 ignores it.
enum class GemmTile { Auto, Small, Large };
struct GemmPath {
  GemmTile tile = GemmTile::Auto;
  bool force_scalar = false;  // bounds-checked scalar loads and stores even where vectors are allowed
};
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc, Precision precision = Precision::F32,
           const GemmEpilogue& epilogue = {}, const GemmPath& path = {});
void sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                   long stride_a, const float* B, int ldb, long stride_b, float beta, float* C, int ldc,
                   long stride_c, int batch, Precision precision = Precision::F32, const GemmEpilogue& epilogue = {},
                   const GemmPath& path = {});

// cpu/linear.h
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int M, int IC, int OC,
                    Precision precision = Precision::F32);
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int M, int IC, int OC, Precision precision = Precision::F32);
// Linear into pre (M, 2F) then GEGLU into out (M, F), fused in the GEMM's epilogue on the tensor cores
// (native/cuda/gemm.cu); pre is kept for geglu_backward.
void linear_geglu_forward(float* out, float* pre, const float* inp, const float* weight, const float* bias, int M,
                          int IC, int F, Precision precision = Precision::F32, const GemmPath& path = {});

// cpu/conv2d.h (implicit GEMM, conv2d.cu). The workspace (conv2d_workspace_floats, this backend's own size, 0 when
// no product of the shape is split over K) holds split-K partial sums; results never depend on scheduling.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* workspace,
                    const cpu::Conv2dShape& s, Precision precision = Precision::F32);
void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* workspace, const cpu::Conv2dShape& s,
                     Precision precision = Precision::F32);
size_t conv2d_workspace_floats(const cpu::Conv2dShape& s);

// cpu/attention.h (flash attention: online softmax, O(T) memory, lse saved for backward). F32 runs fp32 SIMT
// kernels; F16 / BF16 run tensor-core kernels (fp32 statistics and accumulators, operands and P rounded; bf16 on
// sm_75 and heads over 160 columns run the fp32 kernels). D ≤ 512 (the VAE's single head), else EINVAL.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int NH, int D, float scale, bool causal, Precision precision = Precision::F32);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int NH, int D,
                        float scale, bool causal, Precision precision = Precision::F32);

}  // namespace dbcore::cuda
