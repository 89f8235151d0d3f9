// Deterministic column sums for parameter gradients (linear bias, LayerNorm weight and bias): dst_v[c] +=
// Σ_m term_v(m, c) over `rows` rows, in a fixed order so that a step's gradients are the same on every run (float
// atomics would add the chunks in whatever order the blocks finish).
// Stage 1: thread (column c, chunk of kRowsPerChunk rows) sums its rows into partial[v][chunk][c] (thread_scratch);
// stage 2: thread (v, c) adds its chunks in order, in double, and adds the total to dst_v[c] (skipped when null).
// Term is a device functor: term(m, c, acc) adds its kValues values of row m, column c to acc[0..kValues).
#pragma once
#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

constexpr int kRowsPerChunk = 64;

template <int kValues>
struct ColumnDests {
  float* dst[kValues];
};

template <int kValues, typename Term>
__global__ void column_chunk_sums_kernel(float* partial, Term term, int rows, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int chunk = blockIdx.y, m0 = chunk * kRowsPerChunk, m1 = min(rows, m0 + kRowsPerChunk);
  float acc[kValues] = {};
  for (int m = m0; m < m1; ++m) term(m, c, acc);
  for (int v = 0; v < kValues; ++v) partial[(static_cast<int64_t>(v) * gridDim.y + chunk) * cols + c] = acc[v];
}

template <int kValues>
__global__ void column_totals_kernel(ColumnDests<kValues> d, const float* partial, int chunks, int cols) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(kValues) * cols) return;
  const int v = static_cast<int>(i / cols), c = static_cast<int>(i % cols);
  if (!d.dst[v]) return;
  double total = 0.0;
  for (int k = 0; k < chunks; ++k) total += partial[(static_cast<int64_t>(v) * chunks + k) * cols + c];
  d.dst[v][c] += static_cast<float>(total);
}

template <int kValues, typename Term>
void add_column_sums(ColumnDests<kValues> d, Term term, int rows, int cols, const char* what) {
  if (rows <= 0 || cols <= 0) return;
  const int chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  DBCORE_CHECK(chunks <= 65535, "EINVAL", "%s: %d rows is too many", what, rows);
  float* partial = static_cast<float*>(thread_scratch(sizeof(float) * kValues * chunks * static_cast<size_t>(cols)));
  column_chunk_sums_kernel<kValues><<<dim3((cols + kThreads - 1) / kThreads, chunks), kThreads>>>(partial, term, rows,
                                                                                                cols);
  DBCORE_CUDA_CHECK_LAUNCH();
  column_totals_kernel<kValues><<<blocks_for(static_cast<int64_t>(kValues) * cols), kThreads>>>(d, partial, chunks,
                                                                                               cols);
  DBCORE_CUDA_CHECK_LAUNCH();
}

}  // namespace dbcore::cuda
