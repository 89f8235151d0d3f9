// Index math of the tensor-core GEMM (native/cuda/gemm.cu), as __host__ __device__ functions so the CPU tests can
// check it (test/native/gemm-tile.test.ts through ops.gemmTileLayout / gemmLdmatrixRows / gemmPlan).
//
// Shared-memory tiles hold fp16/bf16 (2-byte) elements in 16-byte chunks of 8. A tile has `rows` rows of `width`
// elements, row-major; which dimension is the row depends on the operand's layout in global memory:
//  - K-major (the source has k contiguous: A untransposed, B transposed, as Linear's weight): rows = m (or n),
//    width = the block's k depth (32);
//  - MN-major (the source has m or n contiguous): rows = k, width = the block's m (or n) size.
// Data flow: each thread loads 4 consecutive fp32 of the contiguous dimension, converts them and stores 8 bytes,
// so the tile is always stored along its rows; warps read it with ldmatrix (8 addresses of 16-byte row segments
// per phase), plain for K-major tiles and .trans for MN-major ones, which yields the mma.m16n8k16 fragments.
//
// Swizzle (CUTLASS's XOR pattern): the 16-byte chunk c of row r is stored at chunk c ^ s(r) of that row, where
// s(r) cycles through the chunks so that 8 consecutive rows (an ldmatrix phase reads 8 rows, same logical chunk)
// land in 8 distinct 16-byte bank groups of the 128-byte bank window. With C chunks per row (a power of two):
//  - C >= 8: a row spans whole 128-byte windows, so s(r) = r mod 8;
//  - C < 8: 8/C rows share one window, so s(r) = (r / (8/C)) mod C (rows within a window already differ).
// The XOR is a permutation of the chunks of each row, so the layout is a bijection over the tile.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace dbcore::cuda::tile {

constexpr int kChunk = 8;  // 16-bit elements per 16-byte chunk (one ldmatrix row segment)

// Element offset of logical (row, col) in a swizzled tile of `width` elements per row (width a multiple of 8,
// width / 8 a power of two).
DBCORE_HOST_DEVICE inline int swizzled_offset(int row, int col, int width) {
  const int chunks = width / kChunk;
  const int rows_per_window = chunks >= 8 ? 1 : 8 / chunks;
  const int period = chunks >= 8 ? 8 : chunks;
  const int chunk = (col / kChunk) ^ ((row / rows_per_window) % period);
  return row * width + chunk * kChunk + col % kChunk;
}

// The logical (row, col) of the 16-byte row segment whose address `lane` gives to ldmatrix.x4, for the fragment
// of the 16 (m or n) x 16 (k) block at (mn, kk) of the tile. Operand A (m16 x k16): matrices a0..a3 are
// (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15). Operand B (two n8 x k16 fragments b[j],
// b[j+1]): (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15). Lanes 8i..8i+7 address matrix i.
struct TileCoord {
  int row, col;
};

DBCORE_HOST_DEVICE inline TileCoord ldmatrix_row(int lane, bool operand_a, bool k_major, int mn, int kk) {
  const int matrix = lane / 8, r = lane % 8;
  const int mn_half = operand_a ? matrix % 2 : matrix / 2;  // which 8 of the 16 m (or n)
  const int k_half = operand_a ? matrix / 2 : matrix % 2;   // which 8 of the 16 k
  if (k_major) return {mn + 8 * mn_half + r, kk + 8 * k_half};  // rows are m/n: 8 rows of 8 k
  return {kk + 8 * k_half + r, mn + 8 * mn_half};               // rows are k: 8 rows of 8 m/n (read .trans)
}

// Launch-time choices of sgemm for tensor-core products (see gemm.cu): the large tile when its grid fills the
// GPU, and float4 operand loads when every load of 4 elements along the contiguous dimension is either wholly
// inside the matrix and 16-byte aligned or wholly outside.
DBCORE_HOST_DEVICE inline bool use_large_tile(int M, int N, int batch, int large_m, int large_n, int sm_count) {
  const int64_t blocks = static_cast<int64_t>((M + large_m - 1) / large_m) * ((N + large_n - 1) / large_n) * batch;
  return blocks >= sm_count;
}

// `contiguous` is the matrix's extent along its contiguous dimension (K for a K-major operand, M or N otherwise);
// `address` the base pointer's address; ld and stride in elements (stride between batch matrices).
DBCORE_HOST_DEVICE inline bool float4_loads_ok(uint64_t address, int64_t ld, int64_t stride, int contiguous) {
  return address % 16 == 0 && ld % 4 == 0 && stride % 4 == 0 && contiguous % 4 == 0;
}

// GEGLU column map: the block's n-tile of `tile_n` columns holds tile_n / 2 hidden columns and the matching gate
// columns, interleaved per warp so that one thread holds each hidden value and its gate: warp column w (of 32)
// covers hidden [16w, 16w+16) in its first 16 columns and the gates of the same features in the next 16.
// Returns the feature index (< F when the column exists) and whether the column is a gate.
struct GegluColumn {
  int feature;
  bool gate;
};
DBCORE_HOST_DEVICE inline GegluColumn geglu_column(int block_n, int tile_n, int col) {
  const int w = col / 32, s = col % 32;
  return {block_n * (tile_n / 2) + 16 * w + s % 16, s >= 16};
}

}  // namespace dbcore::cuda::tile
