// 2-D convolution as GEMM (ref: torch.nn.Conv2d; Chellapilla et al. 2006, "High performance convolutional neural
// networks for document processing": im2col + one matrix product per image).
// Dimension letters: N batch, C in channels, H W input size, OC out channels, KH KW kernel, OH OW output size,
// CKK = C·KH·KW (rows of the column matrix), OHW = OH·OW.
// Per image n:   out_n (OC, OHW)  = weight (OC, CKK) · col_n (CKK, OHW) + bias
//                dweight        += dout_n (OC, OHW) · col_nᵀ
//                dcol_n          = weightᵀ · dout_n, scattered back by col2im into dinp_n
// A 1x1 stride-1 unpadded convolution needs no column matrix: col_n is inp_n itself (C, HW).
// Accumulation: dweight, dbias +=; dinp = (skipped when null).
#include "conv2d.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "gemm.h"
#include "reduce.h"

namespace dbcore::cpu {

namespace {

constexpr long kParallelMin = 1 << 15;  // below this many elements a loop runs on one thread (fork costs more)

bool is_pointwise(const Conv2dShape& s) { return s.KH == 1 && s.KW == 1 && s.stride == 1 && s.pad == 0; }

// Output columns ow whose input column ow·stride - pad + kw lies inside [0, W): the range [lo, hi).
void valid_columns(const Conv2dShape& s, int kw, int* lo, int* hi) {
  const int first = s.pad - kw;  // ow·stride >= first
  *lo = first <= 0 ? 0 : (first + s.stride - 1) / s.stride;
  const int last = s.W - 1 + s.pad - kw;  // ow·stride <= last
  *hi = last < 0 ? 0 : std::min(s.OW(), last / s.stride + 1);
  if (*lo > *hi) *lo = *hi;
}

// col (CKK, OHW): row (c, kh, kw), column (oh, ow) = inp (c, oh·stride - pad + kh, ow·stride - pad + kw), 0 outside.
DBCORE_SIMD_CLONES
void im2col(float* col, const float* inp, const Conv2dShape& s) {
  const int OH = s.OH(), OW = s.OW(), KK = s.KH * s.KW;
  const long rows = static_cast<long>(s.C) * KK;
#pragma omp parallel for schedule(static) if (rows * OH * OW > kParallelMin)
  for (long r = 0; r < rows; ++r) {
    const int c = static_cast<int>(r / KK), kh = static_cast<int>(r % KK) / s.KW, kw = static_cast<int>(r % s.KW);
    int lo, hi;
    valid_columns(s, kw, &lo, &hi);
    const float* plane = inp + static_cast<long>(c) * s.H * s.W;
    float* dst = col + r * OH * OW;
    for (int oh = 0; oh < OH; ++oh, dst += OW) {
      const int ih = oh * s.stride - s.pad + kh;
      if (ih < 0 || ih >= s.H) {
        std::fill(dst, dst + OW, 0.f);
        continue;
      }
      const float* src = plane + static_cast<long>(ih) * s.W - s.pad + kw;  // src[ow·stride] = inp (c, ih, iw)
      std::fill(dst, dst + lo, 0.f);
      if (s.stride == 1) {
        std::memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
      } else {
        for (int ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s.stride];
      }
      std::fill(dst + hi, dst + OW, 0.f);
    }
  }
}

// The adjoint of im2col: dinp (C, H, W) = Σ over the column entries that read each input pixel. Parallel over
// channels, so every thread writes only its own planes.
DBCORE_SIMD_CLONES
void col2im(float* dinp, const float* col, const Conv2dShape& s) {
  const int OH = s.OH(), OW = s.OW();
#pragma omp parallel for schedule(static) if (static_cast<long>(s.C) * s.KH * s.KW * OH * OW > kParallelMin)
  for (int c = 0; c < s.C; ++c) {
    float* plane = dinp + static_cast<long>(c) * s.H * s.W;
    std::fill(plane, plane + static_cast<long>(s.H) * s.W, 0.f);
    for (int kh = 0; kh < s.KH; ++kh)
      for (int kw = 0; kw < s.KW; ++kw) {
        int lo, hi;
        valid_columns(s, kw, &lo, &hi);
        const float* src = col + ((static_cast<long>(c) * s.KH + kh) * s.KW + kw) * OH * OW;
        for (int oh = 0; oh < OH; ++oh, src += OW) {
          const int ih = oh * s.stride - s.pad + kh;
          if (ih < 0 || ih >= s.H) continue;
          float* dst = plane + static_cast<long>(ih) * s.W - s.pad + kw;  // dst[ow·stride] = dinp (c, ih, iw)
          if (s.stride == 1) {
#pragma omp simd
            for (int ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
          } else {
            for (int ow = lo; ow < hi; ++ow) dst[ow * s.stride] += src[ow];
          }
        }
      }
  }
}

// out_n (OC, OHW) rows start at bias[oc], so the product adds onto them.
void fill_bias(float* out_n, const float* bias, int OC, long OHW) {
#pragma omp parallel for schedule(static) if (OC * OHW > kParallelMin)
  for (int oc = 0; oc < OC; ++oc) std::fill(out_n + oc * OHW, out_n + (oc + 1) * OHW, bias[oc]);
}

// dbias (OC) += Σ_n Σ_ohw dout (N, OC, OHW): float sums per row, double across images.
DBCORE_SIMD_CLONES
void accumulate_bias_grad(float* dbias, const float* dout, int N, int OC, long OHW) {
#pragma omp parallel for schedule(static) if (N * OC * OHW > kParallelMin)
  for (int oc = 0; oc < OC; ++oc) {
    double acc = 0.0;
    for (int n = 0; n < N; ++n) acc += row_sum(dout + (static_cast<long>(n) * OC + oc) * OHW, OHW);
    dbias[oc] += static_cast<float>(acc);
  }
}

}  // namespace

size_t conv2d_workspace_floats(const Conv2dShape& s) {
  if (is_pointwise(s)) return 0;
  return static_cast<size_t>(s.C) * s.KH * s.KW * s.OH() * s.OW();
}

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, float* workspace,
                    const Conv2dShape& s, Precision precision) {
  check_conv2d_shape(s);
  const int CKK = s.C * s.KH * s.KW;
  const long HW = static_cast<long>(s.H) * s.W, OHW = static_cast<long>(s.OH()) * s.OW();
  for (int n = 0; n < s.N; ++n) {
    const float* inp_n = inp + n * s.C * HW;
    float* out_n = out + n * s.OC * OHW;
    const float* col = inp_n;
    if (!is_pointwise(s)) {
      im2col(workspace, inp_n, s);
      col = workspace;
    }
    if (bias) fill_bias(out_n, bias, s.OC, OHW);
    sgemm(false, false, s.OC, static_cast<int>(OHW), CKK, 1.f, weight, CKK, col, static_cast<int>(OHW),
          bias ? 1.f : 0.f, out_n, static_cast<int>(OHW), precision);
  }
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, float* workspace, const Conv2dShape& s, Precision precision) {
  check_conv2d_shape(s);
  const int CKK = s.C * s.KH * s.KW;
  const long HW = static_cast<long>(s.H) * s.W, OHW = static_cast<long>(s.OH()) * s.OW();
  const int ohw = static_cast<int>(OHW);
  const bool pointwise = is_pointwise(s);
  for (int n = 0; n < s.N; ++n) {
    const float* inp_n = inp + n * s.C * HW;
    const float* dout_n = dout + n * s.OC * OHW;
    float* dinp_n = dinp ? dinp + n * s.C * HW : nullptr;
    if (dweight) {
      const float* col = inp_n;
      if (!pointwise) {
        im2col(workspace, inp_n, s);
        col = workspace;
      }
      sgemm(false, true, s.OC, CKK, ohw, 1.f, dout_n, ohw, col, ohw, 1.f, dweight, CKK, precision);
    }
    if (!dinp_n) continue;
    if (pointwise) {
      sgemm(true, false, s.C, ohw, s.OC, 1.f, weight, CKK, dout_n, ohw, 0.f, dinp_n, ohw, precision);
    } else {
      sgemm(true, false, CKK, ohw, s.OC, 1.f, weight, CKK, dout_n, ohw, 0.f, workspace, ohw, precision);
      col2im(dinp_n, workspace, s);
    }
  }
  if (dbias) accumulate_bias_grad(dbias, dout, s.N, s.OC, OHW);
}

}  // namespace dbcore::cpu
