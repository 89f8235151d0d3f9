// Embedding lookups and the sinusoidal timestep embedding, twins of native/cpu/embedding.cpp.
// Dimension letters: M looked-up rows, C width, V table rows, N timesteps.
// Accumulation: dtable += (positions added in order, as the CPU twin: deterministic); out =.
// Not compiled with fast math: timestep arguments reach ~1000 rad, where __sinf/__cosf are inaccurate.
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

// Ids outside [0, V) are not read; the first bad position is recorded in *bad (atomicMin over positions).
__global__ void embedding_forward_kernel(float* out, int* bad, const int32_t* ids, const float* table, int M, int C,
                                         int V) {
  DBCORE_GRID_STRIDE(i, static_cast<int64_t>(M) * C) {
    const int m = static_cast<int>(i / C), c = static_cast<int>(i % C);
    const int32_t id = ids[m];
    if (id < 0 || id >= V) {
      atomicMin(bad, m);
      out[i] = 0.f;
    } else {
      out[i] = table[static_cast<int64_t>(id) * C + c];
    }
  }
}

// Thread c owns column c of every table row and adds the positions in order: a token repeated in the prompt (the
// padding of CLIP's 77) is summed in the same order on every run, and no two threads touch the same element.
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* ids, int M, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int m = 0; m < M; ++m) dtable[static_cast<int64_t>(ids[m]) * C + c] += dout[static_cast<int64_t>(m) * C + c];
}

// Same float32 rounding steps as the CPU twin: exponent = (neg_log_period · i) / denominator, arg = (t·exp)·scale.
__global__ void timestep_embedding_kernel(float* out, const float* timesteps, int N, int dim, int half, int sin_at,
                                          int cos_at, float neg_log_period, float denominator, float scale) {
  DBCORE_GRID_STRIDE(j, static_cast<int64_t>(N) * half) {
    const int n = static_cast<int>(j / half), i = static_cast<int>(j % half);
    float exponent = __fmul_rn(neg_log_period, static_cast<float>(i));
    exponent = __fdiv_rn(exponent, denominator);
    const float arg = __fmul_rn(__fmul_rn(timesteps[n], expf(exponent)), scale);
    float* row = out + static_cast<int64_t>(n) * dim;
    row[sin_at + i] = sinf(arg);
    row[cos_at + i] = cosf(arg);
    if (i == 0 && dim % 2) row[dim - 1] = 0.f;
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int M, int C, int V) {
  if (static_cast<int64_t>(M) * C <= 0) return;
  int* bad = static_cast<int*>(thread_scratch(sizeof(int)));
  int first_bad = M;
  copy_to_device(bad, &first_bad, sizeof(int));
  embedding_forward_kernel<<<blocks_for(static_cast<int64_t>(M) * C), kThreads>>>(out, bad, ids, table, M, C, V);
  DBCORE_CUDA_CHECK_LAUNCH();
  copy_to_host(&first_bad, bad, sizeof(int));
  if (first_bad < M) {
    int32_t id = 0;
    copy_to_host(&id, ids + first_bad, sizeof(id));
    throw Error("EINVAL", format("embedding: id %d at position %d is outside [0, %d)", id, first_bad, V));
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int M, int C) {
  if (static_cast<int64_t>(M) * C <= 0) return;
  embedding_backward_kernel<<<(C + kThreads - 1) / kThreads, kThreads>>>(dtable, dout, ids, M, C);
  DBCORE_CUDA_CHECK_LAUNCH();
}

void timestep_embedding(float* out, const float* timesteps, int N, int dim, bool flip_sin_to_cos,
                        float downscale_freq_shift, float scale, float max_period) {
  const int half = dim / 2;
  DBCORE_CHECK(half > 0 && half != downscale_freq_shift && max_period > 0, "EINVAL",
               "timestep_embedding: needs dim >= 2 (got %d), dim/2 != shift (got %g) and max_period > 0 (got %g)",
               dim, double(downscale_freq_shift), double(max_period));
  if (N <= 0) return;
  const float neg_log_period = static_cast<float>(-std::log(static_cast<double>(max_period)));
  const float denominator = static_cast<float>(half - static_cast<double>(downscale_freq_shift));
  const int sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
  timestep_embedding_kernel<<<blocks_for(static_cast<int64_t>(N) * half), kThreads>>>(
      out, timesteps, N, dim, half, sin_at, cos_at, neg_log_period, denominator, scale);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
