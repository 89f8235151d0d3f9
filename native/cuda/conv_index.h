// Index math of the implicit-GEMM convolution (native/cuda/conv2d.cu), as plain functions that compile for the host
// and the device: the kernels gather their GEMM operands through them, and the test export
// ops.conv2dImplicitGemmViews (native/bindings/ops_conv2d.cpp) materializes the same operands on the CPU, where
// test/native/conv-index.test.ts checks them against a plain im2col and reproduces the CPU convolution.
// Dimension letters as cpu/conv2d.h: N batch, C in channels, H W input size, OC out channels, KH KW kernel, OH OW
// output size, KK = KH·KW, OHW = OH·OW, P = N·OHW. Layout NCHW; weight (OC, C, KH, KW).
//
// The three products, each C (M, Ncols) = A (M, K) · B (K, Ncols) (forward and input gradient per image, the
// image on the grid's z axis; the weight gradient over the whole batch):
//   forward  out_n (OC, OHW) = weight (OC, C·KK) · im2col_n (C·KK, OHW)
//   dgrad    dinp_n (C, HW)  = Wᵀ (C, OC·KK) · G_n (OC·KK, HW), the transposed convolution: G_n row (oc, ky, kx),
//            column (y, x) is dout_n (oc, oy, ox) where y + pad − ky = oy·stride (taps that do not divide are 0)
//   wgrad    dweight (OC, C·KK) += dout (OC, P) · im2col (P, C·KK), rows of im2col over all images
// A K index splits into a KEntry (filled once per K tile into shared memory, so the divisions run once per tile)
// and a column index into a ColEntry (once per block); an operand element is then a few adds and compares:
// *_a_offset (A, never out of bounds inside the matrix) and *_b_offset (B, −1 where the gather reads padding).
// Offsets are 32-bit: the host checks (check_conv_int32) that every tensor has fewer than 2^31 elements.
#pragma once
#include <climits>
#include <cstdint>

#include "core/error.h"
#include "core/host_device.h"
#include "cpu/conv2d.h"

namespace dbcore::cuda {

// cpu::Conv2dShape with the output size and the products the gathers use, as plain ints (device-copyable).
struct ConvDims {
  int N, C, H, W, OC, KH, KW, stride, pad, OH, OW;
  int KK, HW, OHW;
};

inline ConvDims conv_dims(const cpu::Conv2dShape& s) {
  const int OH = s.OH(), OW = s.OW();
  return {s.N, s.C, s.H, s.W, s.OC, s.KH, s.KW, s.stride, s.pad, OH, OW, s.KH * s.KW, s.H * s.W, OH * OW};
}

// Every tensor (and the gather's largest intermediate offset) indexed with 32-bit ints.
inline void check_conv_int32(const cpu::Conv2dShape& s) {
  const int64_t n = s.N, in = n * s.C * s.H * s.W, out = n * s.OC * s.OH() * s.OW(),
                w = static_cast<int64_t>(s.OC) * s.C * s.KH * s.KW;
  DBCORE_CHECK(in < INT_MAX && out < INT_MAX && w < INT_MAX, "EINVAL",
               "conv2d (CUDA): a tensor has 2^31 or more elements (inp %lld, out %lld, weight %lld); split the batch",
               static_cast<long long>(in), static_cast<long long>(out), static_cast<long long>(w));
}

// Per-K-index part of a gather: `a` and `b` are base offsets into the A and B tensors, (y, x) a row/column shift.
struct KEntry {
  int a, b, y, x;
};
// Per-column part: `off` a base offset, (y, x) a row/column shift.
struct ColEntry {
  int off, y, x;
};

// Kernel tap (ch, ky, kx) of a K index in (ch, KH, KW) order (ch = input channel, or output channel for dgrad).
struct Tap {
  int ch, ky, kx;
};
DBCORE_HOST_DEVICE inline Tap tap_of(const ConvDims& d, int k) {
  const int r = k % d.KK;
  return {k / d.KK, r / d.KW, r % d.KW};
}

// Offset of input pixel (ih, iw) in the plane starting at `plane`, or −1 in the zero padding.
DBCORE_HOST_DEVICE inline int input_offset(const ConvDims& d, int plane, int ih, int iw) {
  return ih >= 0 && ih < d.H && iw >= 0 && iw < d.W ? plane + ih * d.W + iw : -1;
}

// ---- forward: M = OC, Ncols = OHW, K = C·KK; A = weight, B = im2col of inp_n ----
DBCORE_HOST_DEVICE inline KEntry forward_k_entry(const ConvDims& d, int k) {
  const Tap t = tap_of(d, k);
  return {k, t.ch * d.HW, t.ky, t.kx};
}
DBCORE_HOST_DEVICE inline ColEntry forward_col_entry(const ConvDims& d, int n) {
  return {0, (n / d.OW) * d.stride - d.pad, (n % d.OW) * d.stride - d.pad};
}
DBCORE_HOST_DEVICE inline int forward_a_offset(const ConvDims& d, const KEntry& e, int m) { return m * d.C * d.KK + e.a; }
DBCORE_HOST_DEVICE inline int forward_b_offset(const ConvDims& d, const KEntry& e, const ColEntry& col) {
  return input_offset(d, e.b, col.y + e.y, col.x + e.x);
}

// ---- input gradient: M = C, Ncols = HW, K = OC·KK; A = weight gathered as Wᵀ, B = G_n from dout_n ----
DBCORE_HOST_DEVICE inline KEntry dgrad_k_entry(const ConvDims& d, int k) {
  const Tap t = tap_of(d, k);  // (oc, ky, kx)
  return {t.ch * d.C * d.KK + t.ky * d.KW + t.kx, t.ch * d.OHW, t.ky, t.kx};
}
// Column (y, x) of dinp_n, shifted by the padding: output row oy reads it through tap ky when y + pad − ky = oy·stride.
DBCORE_HOST_DEVICE inline ColEntry dgrad_col_entry(const ConvDims& d, int n) { return {0, n / d.W + d.pad, n % d.W + d.pad}; }
DBCORE_HOST_DEVICE inline int dgrad_a_offset(const ConvDims& d, const KEntry& e, int m) { return e.a + m * d.KK; }
DBCORE_HOST_DEVICE inline int dgrad_b_offset(const ConvDims& d, const KEntry& e, const ColEntry& col) {
  const int ty = col.y - e.y, tx = col.x - e.x;  // oy·stride, ox·stride when the tap reaches this pixel
  if (ty < 0 || tx < 0 || ty % d.stride != 0 || tx % d.stride != 0) return -1;
  const int oy = ty / d.stride, ox = tx / d.stride;
  return oy < d.OH && ox < d.OW ? e.b + oy * d.OW + ox : -1;
}

// ---- weight gradient: M = OC, Ncols = C·KK, K = P = N·OHW; A = dout, B = im2col of inp over all images ----
DBCORE_HOST_DEVICE inline KEntry wgrad_k_entry(const ConvDims& d, int p) {
  const int img = p / d.OHW, r = p % d.OHW;
  return {img * d.OC * d.OHW + r, img * d.C * d.HW, (r / d.OW) * d.stride - d.pad, (r % d.OW) * d.stride - d.pad};
}
DBCORE_HOST_DEVICE inline ColEntry wgrad_col_entry(const ConvDims& d, int n) {
  const Tap t = tap_of(d, n);
  return {t.ch * d.HW, t.ky, t.kx};
}
DBCORE_HOST_DEVICE inline int wgrad_a_offset(const ConvDims& d, const KEntry& e, int m) { return e.a + m * d.OHW; }
DBCORE_HOST_DEVICE inline int wgrad_b_offset(const ConvDims& d, const KEntry& e, const ColEntry& col) {
  return input_offset(d, e.b + col.off, e.y + col.y, e.x + col.x);
}

// ---- split-K plan (host): how many K slices a product is cut into so the grid fills the GPU ----
// Block tile of both kernels (the workspace size must not depend on the precision).
constexpr int kConvTileM = 128, kConvTileN = 128;
constexpr int kConvTargetBlocks = 264;  // two waves on a 132-SM H100/H200; more slices only add reduction traffic
constexpr int kConvMinSlice = 256;      // K per slice at least this (a multiple of every kernel's K tile)

struct SplitK {
  int slices;  // K ranges [s·chunk, min(K, (s+1)·chunk)), none empty
  int chunk;
};

// Slices for a product of `batch` (M, Ncols) outputs over K: one when the tiles already fill the GPU; never more
// than K / kConvMinSlice. A pure function of the shape, so results never depend on the device.
inline SplitK plan_split(int M, int Ncols, int K, int batch) {
  const int64_t tiles = static_cast<int64_t>((M + kConvTileM - 1) / kConvTileM) *
                        ((Ncols + kConvTileN - 1) / kConvTileN) * batch;
  int64_t slices = tiles >= kConvTargetBlocks ? 1 : (kConvTargetBlocks + tiles - 1) / tiles;
  const int64_t max_slices = (K + kConvMinSlice - 1) / kConvMinSlice;
  if (slices > max_slices) slices = max_slices;
  if (slices < 1) slices = 1;
  int64_t chunk = (K + slices - 1) / slices;
  chunk = (chunk + kConvMinSlice - 1) / kConvMinSlice * kConvMinSlice;
  if (slices == 1) chunk = K;
  return {static_cast<int>(chunk > 0 ? (K + chunk - 1) / chunk : 1), static_cast<int>(chunk)};
}

// The three products of a shape: GEMM sizes and their split plans.
struct ConvGemm {
  int M, Ncols, K, batch;
  SplitK split;
  // Floats of partial sums when split (slices · batch · M · Ncols), else 0.
  size_t workspace_floats() const {
    return split.slices > 1 ? static_cast<size_t>(split.slices) * batch * M * Ncols : 0;
  }
};
inline ConvGemm make_gemm(int M, int Ncols, int K, int batch) { return {M, Ncols, K, batch, plan_split(M, Ncols, K, batch)}; }
inline ConvGemm forward_gemm(const ConvDims& d) { return make_gemm(d.OC, d.OHW, d.C * d.KK, d.N); }
inline ConvGemm dgrad_gemm(const ConvDims& d) { return make_gemm(d.C, d.HW, d.OC * d.KK, d.N); }
inline ConvGemm wgrad_gemm(const ConvDims& d) { return make_gemm(d.OC, d.C * d.KK, d.N * d.OHW, 1); }

}  // namespace dbcore::cuda
