// Fused multi-head attention, FlashAttention-2 (Dao 2023) on the CPU.
// Dimension letters: B batch, Tq query / Tk key tokens, NH heads, D head size, C = NH·D (row stride of Q, K, V,
// out); Br × Bc the query × key tile. Accumulation: out, lse, dq, dk, dv are written (=).
//
// Every product is an OpenBLAS sgemm on tiles: head h of a (B, T, C) buffer is a (T, D) matrix with leading dimension
// C, so tiles are used in place, except that the score products Q Kᵀ and dO Vᵀ read a per-call transposed copy of K (V)
// when their tiles are small enough for OpenBLAS' unpacked small-matrix kernels (query tiles are sized for that,
// possible up to d ≈ 240 forward, 480 backward; TransposedOperand). Work is split over OpenMP threads; the sgemm calls
// run inside the parallel region, where the OpenMP build of OpenBLAS runs single-threaded (num_cpu_avail() returns 1
// when omp_in_parallel(); measured: inside the region all CPU time of a 1024³ sgemm is on the calling thread, outside
// it is split over the threads; the pthreads build of OpenBLAS would oversubscribe instead). Scratch is per thread
// (tile buffers) or per calling thread (Di of size B·NH·Tq, when heads are split about threads·Tq·D partial dQ, and the
// transposed K and V of size B·NH·D·Tk each), grown on first use and reused, so the steady state allocates nothing.
// Causal masking is top-left aligned: query i sees keys j ≤ i; tiles entirely above the diagonal are skipped.
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "fast_math.h"
#include "gemm.h"

namespace dbcore::cpu {

namespace {

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// OpenBLAS (Skylake-X / Cooper Lake kernels) runs a product with M·N·K ≤ 10^6 on its small-matrix kernels, which
// neither pack the operands nor make a separate pass for beta = 0, except a row-major NT product (col-major TN),
// which it always packs at tile sizes. Measured at d = 40: a tile product 20 to 25 % faster on the small kernels.
constexpr double kSmallGemmLimit = 1e6;
bool small_gemm(int M, int N, int K) { return static_cast<double>(M) * N * K <= kSmallGemmLimit; }

// Tile sizes, measured with scripts/bench-attention.js (2 threads) at SD 1.5's shapes: key tiles of 256 (forward)
// and 128 (backward) tokens, and as many query rows (a multiple of 8, 16 to 128) as keep the tile products on
// OpenBLAS' small kernels: forward 96 x 256 at d = 40, 48 x 256 at d = 80, 24 x 256 at d = 160; backward 128,
// 96, 48 x 128. Against fixed 128 x 256 / 64 x 256 tiles: 8 to 10 % faster at d = 40 and 80, equal within the
// noise at 160.
constexpr int kFwdKeyTile = 256;
constexpr int kBwdKeyTile = 128;
constexpr int kMinQueryTile = 16, kMaxQueryTile = 128;

int query_tile(int key_tile, int Tk, int D) {
  const double rows = kSmallGemmLimit / (static_cast<double>(std::min(key_tile, Tk)) * D);
  return std::clamp(static_cast<int>(std::min<double>(rows, kMaxQueryTile)) / 8 * 8, kMinQueryTile, kMaxQueryTile);
}

// Scratch of an OpenMP worker thread (tile buffers), kept for the thread's lifetime.
float* tile_scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Scratch of the calling thread for whole-call buffers (row statistics, partial dQ). Separate from
// tile_scratch because the calling thread is also worker 0 of the parallel region.
float* call_scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

struct Dims {
  int B, Tq, Tk, NH, D;
  long C;  // NH·D
  float scale;
  bool causal;
  Precision precision;  // of the tile products (cpu/gemm.h)
  int Br, Bc;           // query × key tile of the pass
  // Element offset of (batch b, token t, head h) in a (B, T, C) buffer.
  long at(int b, int T, int t, int h) const { return (static_cast<long>(b) * T + t) * C + static_cast<long>(h) * D; }
  // Element offset of (b, h, t) in a (B, NH, Tq) statistics buffer.
  long stat(int b, int h, int t) const { return (static_cast<long>(b) * NH + h) * Tq + t; }
};

// Keys of a tile starting at first_key that query row `query` may see (top-left causal mask), in [0, cols].
int visible_keys(int query, int first_key, int cols, bool causal) {
  if (!causal) return cols;
  return std::clamp(query - first_key + 1, 0, cols);
}

// The right operand Xᵀ of a tile product A Xᵀ, X (T, D) one head of a (B, T, C) buffer (keys or values): read in
// place as an NT product, or from xt (B·NH, D, T), every head transposed once per call, as an NN product when that
// product is small enough for OpenBLAS' small-matrix kernels (see kSmallGemmLimit).
struct TransposedOperand {
  const float* x;
  const float* xt;  // null: read x in place
  int T;
};

// Whether the pass's (Br, Bc) tile products A Xᵀ over X (T, D) read X transposed (see TransposedOperand).
bool transpose_operand(int T, const Dims& g) { return small_gemm(g.Br, std::min(g.Bc, T), g.D); }

// Floats of scratch transposed_operand needs.
long transposed_size(int T, const Dims& g) {
  return transpose_operand(T, g) ? static_cast<long>(g.B) * g.NH * g.D * T : 0;
}

// X (B, T, C) as the right operand of the pass's tile products: transposed into `scratch` (transposed_size floats),
// xt[b·NH + h][d][t] = x[b, t, h·D + d], when transpose_operand says so, else read in place.
TransposedOperand transposed_operand(const float* x, int T, const Dims& g, float* scratch) {
  if (!transpose_operand(T, g)) return {x, nullptr, T};
  constexpr int kTokens = 64;  // per block: 64 source rows of D floats stay in L1 while D output runs are written
  const int blocks = ceil_div(T, kTokens);
#pragma omp parallel for schedule(static)
  for (long task = 0; task < static_cast<long>(g.B) * g.NH * blocks; ++task) {
    const long bh = task / blocks;
    const int b = static_cast<int>(bh / g.NH), h = static_cast<int>(bh % g.NH);
    const int t0 = static_cast<int>(task % blocks) * kTokens, t1 = std::min(T, t0 + kTokens);
    const float* src = x + g.at(b, T, 0, h);
    float* dst = scratch + bh * g.D * T;
    for (int d = 0; d < g.D; ++d)
      for (int t = t0; t < t1; ++t) dst[static_cast<long>(d) * T + t] = src[t * g.C + d];
  }
  return {x, scratch, T};
}

// c (rows, n) = alpha · A (rows, D) · X[j0, j0 + n)ᵀ for head (b, h).
void times_transposed(float* c, int ldc, const float* a, long lda, const TransposedOperand& op, const Dims& g, int b,
                      int h, int j0, int rows, int n, float alpha) {
  if (op.xt)
    sgemm(false, false, rows, n, g.D, alpha, a, lda, op.xt + (static_cast<long>(b) * g.NH + h) * g.D * op.T + j0,
          op.T, 0.f, c, ldc, g.precision);
  else
    sgemm(false, true, rows, n, g.D, alpha, a, lda, op.x + g.at(b, op.T, j0, h), g.C, 0.f, c, ldc, g.precision);
}

// max_j x_j over n ≥ 1 values. `a > b ? a : b` is exactly vmaxps, and the OpenMP max reduction lets GCC reorder
// it into vector lanes without -ffast-math.
DBCORE_INLINE float row_max(const float* x, int n) {
  float mx = x[0];
#pragma omp simd reduction(max : mx)
  for (int j = 0; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
  return mx;
}

// One block of the online softmax (FlashAttention-2 Alg. 1, lines 8-10). s (rows, lds) holds scale·Q Kᵀ and is
// turned into P in place: for row r, m' = max(m_r, max_j s_rj), p_rj = exp(s_rj − m'), masked p_rj = 0,
// l_r = exp(m_r − m')·l_r + Σ_j p_rj, and the output accumulator row is rescaled by exp(m_r − m').
DBCORE_SIMD_CLONES
void online_softmax_block(float* s, float* m, float* l, float* acc, int rows, int cols, int lds, int D,
                          int first_query, int first_key, bool causal) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<long>(r) * lds;
    int n = visible_keys(first_query + r, first_key, cols, causal);
    std::fill(row + n, row + cols, 0.f);
    if (n == 0) continue;
    const float mx = std::max(m[r], row_max(row, n));
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; ++j) {
      float p = fast_exp_le88(row[j] - mx);
      row[j] = p;
      sum += p;
    }
    float alpha = fast_exp_le88(m[r] - mx);  // ≤ 0; 0 on the first visible block (m = -inf)
    l[r] = l[r] * alpha + sum;
    m[r] = mx;
    float* a = acc + static_cast<long>(r) * D;
#pragma omp simd
    for (int d = 0; d < D; ++d) a[d] *= alpha;
  }
}

// Output rows of one query tile: O = O_acc / l, lse = m + log l (Alg. 1, lines 12-13).
void finish_query_tile(float* out, float* lse, const float* acc, const float* m, const float* l, int rows, int D,
                       long ldo) {
  for (int r = 0; r < rows; ++r) {
    float inv = 1.f / l[r];
    for (int d = 0; d < D; ++d) out[r * ldo + d] = acc[static_cast<long>(r) * D + d] * inv;
    lse[r] = m[r] + std::log(l[r]);
  }
}

void forward_query_tile(float* out, float* lse, const float* q, const TransposedOperand& keys, const float* v,
                        const Dims& g, int b, int h, int i0, float* scratch) {
  const int Br = g.Br, Bc = g.Bc, D = g.D;
  const int br = std::min(Br, g.Tq - i0);
  float* s = scratch;           // (Br, Bc) scores, then probabilities
  float* acc = s + Br * Bc;     // (Br, D) unnormalized output
  float* m = acc + Br * D;      // (Br) running max
  float* l = m + Br;            // (Br) running sum
  std::fill(acc, acc + static_cast<long>(br) * D, 0.f);
  std::fill(m, m + br, -INFINITY);
  std::fill(l, l + br, 0.f);
  const float* qt = q + g.at(b, g.Tq, i0, h);
  const int key_end = g.causal ? std::min(g.Tk, i0 + br) : g.Tk;
  for (int j0 = 0; j0 < key_end; j0 += Bc) {
    const int bc = std::min(Bc, g.Tk - j0);
    const float* vt = v + g.at(b, g.Tk, j0, h);
    times_transposed(s, Bc, qt, g.C, keys, g, b, h, j0, br, bc, g.scale);  // S = scale·Q Kᵀ
    online_softmax_block(s, m, l, acc, br, bc, Bc, D, i0, j0, g.causal);
    sgemm(false, false, br, D, bc, 1.f, s, Bc, vt, g.C, 1.f, acc, D, g.precision);  // O_acc += P V
  }
  finish_query_tile(out + g.at(b, g.Tq, i0, h), lse + g.stat(b, h, i0), acc, m, l, br, D, g.C);
}

// Di = rowsum(dO ∘ O) per (b, h, query) (Alg. 2, line 4), in the (B, NH, Tq) layout of lse.
void output_gradient_dots(float* Di, const float* dout, const float* out, const Dims& g) {
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < static_cast<long>(g.B) * g.Tq; ++bt) {
    const int b = static_cast<int>(bt / g.Tq), t = static_cast<int>(bt % g.Tq);
    for (int h = 0; h < g.NH; ++h) {
      const float* x = dout + g.at(b, g.Tq, t, h);
      const float* y = out + g.at(b, g.Tq, t, h);
      float dot = 0.f;
      for (int d = 0; d < g.D; ++d) dot += x[d] * y[d];
      Di[g.stat(b, h, t)] = dot;
    }
  }
}

// Recomputed probabilities P = exp(S − lse) (Alg. 2, line 11), masked entries 0, in place over S.
DBCORE_SIMD_CLONES
void probabilities_block(float* s, const float* lse, int rows, int cols, int lds, int first_query, int first_key,
                         bool causal) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<long>(r) * lds;
    int n = visible_keys(first_query + r, first_key, cols, causal);
    const float shift = lse[r];
#pragma omp simd
    for (int j = 0; j < n; ++j) row[j] = fast_exp_le88(row[j] - shift);
    std::fill(row + n, row + cols, 0.f);
  }
}

// dS = P ∘ (dP − Di) (Alg. 2, line 14), in place over dP.
DBCORE_SIMD_CLONES
void score_gradient_block(float* dp, const float* p, const float* Di, int rows, int cols, int ld) {
  for (int r = 0; r < rows; ++r) {
    float* drow = dp + static_cast<long>(r) * ld;
    const float* prow = p + static_cast<long>(r) * ld;
    const float di = Di[r];
#pragma omp simd
    for (int j = 0; j < cols; ++j) drow[j] = prow[j] * (drow[j] - di);
  }
}

void zero_rows(float* x, int rows, int cols, long ld) {
  for (int r = 0; r < rows; ++r) std::fill(x + r * ld, x + r * ld + cols, 0.f);
}

// Gradients of one key tile [j0, j0 + bc) of head (b, h) over all query tiles that see it (Alg. 2 with the
// loops swapped as in FlashAttention-2: keys outer, so dK and dV rows are owned by this task). dQ is accumulated
// into dq_head (Tq rows, leading dimension ldq), which the caller makes private to this task.
void backward_key_tile(float* dq_head, long ldq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const TransposedOperand& keys, const TransposedOperand& values,
                       const float* lse, const float* Di, const Dims& g, int b, int h, int j0, float* scratch) {
  const int Br = g.Br, Bc = g.Bc, D = g.D;
  const int bc = std::min(Bc, g.Tk - j0);
  float* p = scratch;        // (Br, Bc) probabilities
  float* dp = p + Br * Bc;   // (Br, Bc) dP, then dS
  const float* kt = k + g.at(b, g.Tk, j0, h);
  float* dkt = dk + g.at(b, g.Tk, j0, h);
  float* dvt = dv + g.at(b, g.Tk, j0, h);
  zero_rows(dkt, bc, D, g.C);
  zero_rows(dvt, bc, D, g.C);
  const int first_query = g.causal ? (j0 / Br) * Br : 0;
  for (int i0 = first_query; i0 < g.Tq; i0 += Br) {
    const int br = std::min(Br, g.Tq - i0);
    const float* qt = q + g.at(b, g.Tq, i0, h);
    const float* dot = dout + g.at(b, g.Tq, i0, h);
    times_transposed(p, Bc, qt, g.C, keys, g, b, h, j0, br, bc, g.scale);  // S = scale·Q Kᵀ
    probabilities_block(p, lse + g.stat(b, h, i0), br, bc, Bc, i0, j0, g.causal);
    sgemm(true, false, bc, D, br, 1.f, p, Bc, dot, g.C, 1.f, dvt, g.C, g.precision);      // dV += Pᵀ dO
    times_transposed(dp, Bc, dot, g.C, values, g, b, h, j0, br, bc, 1.f);               // dP = dO Vᵀ
    score_gradient_block(dp, p, Di + g.stat(b, h, i0), br, bc, Bc);
    sgemm(true, false, bc, D, br, g.scale, dp, Bc, qt, g.C, 1.f, dkt, g.C, g.precision);  // dK += scale·dSᵀ Q
    sgemm(false, false, br, D, bc, g.scale, dp, Bc, kt, g.C, 1.f, dq_head + i0 * ldq, ldq, g.precision);  // dQ += scale·dS K
  }
}

// dq = Σ_s partial_s, where partial (B·NH·splits, Tq, D) holds the dQ of each key split of each head.
void reduce_query_gradients(float* dq, const float* partial, int splits, const Dims& g) {
  const long head_size = static_cast<long>(g.Tq) * g.D;
#pragma omp parallel for schedule(static)
  for (long bt = 0; bt < static_cast<long>(g.B) * g.Tq; ++bt) {
    const int b = static_cast<int>(bt / g.Tq), t = static_cast<int>(bt % g.Tq);
    for (int h = 0; h < g.NH; ++h) {
      float* dst = dq + g.at(b, g.Tq, t, h);
      const float* src = partial + (static_cast<long>(b) * g.NH + h) * splits * head_size + static_cast<long>(t) * g.D;
      std::copy(src, src + g.D, dst);
      for (int s = 1; s < splits; ++s)
        for (int d = 0; d < g.D; ++d) dst[d] += src[s * head_size + d];
    }
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int NH, int D, float scale, bool causal, Precision precision) {
  if (B <= 0 || Tq <= 0 || Tk <= 0 || NH <= 0 || D <= 0) return;
  const Dims g{B, Tq, Tk, NH, D, static_cast<long>(NH) * D, scale, causal, precision,
               query_tile(kFwdKeyTile, Tk, D), kFwdKeyTile};
  const int q_tiles = ceil_div(Tq, g.Br);
  const long heads = static_cast<long>(B) * NH;
  const TransposedOperand keys = transposed_operand(k, Tk, g, call_scratch(transposed_size(Tk, g)));
#pragma omp parallel
  {
    float* scratch = tile_scratch(g.Br * (g.Bc + D + 2));
    // Last query tiles first: under a causal mask they see the most keys, so dynamic scheduling balances.
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < heads * q_tiles; ++task) {
      const int qt = q_tiles - 1 - static_cast<int>(task / heads);
      const int bh = static_cast<int>(task % heads);
      forward_query_tile(out, lse, q, keys, v, g, bh / NH, bh % NH, qt * g.Br, scratch);
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int NH, int D,
                        float scale, bool causal, Precision precision) {
  if (B <= 0 || Tq <= 0 || Tk <= 0 || NH <= 0 || D <= 0) return;
  const Dims g{B, Tq, Tk, NH, D, static_cast<long>(NH) * D, scale, causal, precision,
               query_tile(kBwdKeyTile, Tk, D), kBwdKeyTile};
  const long heads = static_cast<long>(B) * NH;
  const int k_tiles = ceil_div(Tk, g.Bc);
  // Tasks are (head, key split): a split owns the key tiles s, s + splits, … (dK, dV written by it alone). With
  // fewer heads than threads, heads are split and each split accumulates dQ privately, then dQ is reduced.
  const int splits = static_cast<int>(std::clamp<long>((num_threads() + heads - 1) / heads, 1, k_tiles));
  const long head_size = static_cast<long>(Tq) * D;
  const long partial_size = splits > 1 ? heads * splits * head_size : 0;
  const long kv_size = transposed_size(Tk, g);
  float* Di = call_scratch(heads * Tq + partial_size + 2 * kv_size);
  float* partial = Di + heads * Tq;
  float* kv_scratch = partial + partial_size;
  const TransposedOperand keys = transposed_operand(k, Tk, g, kv_scratch);
  const TransposedOperand values = transposed_operand(v, Tk, g, kv_scratch + kv_size);
  output_gradient_dots(Di, dout, out, g);
#pragma omp parallel
  {
    float* scratch = tile_scratch(2 * g.Br * g.Bc);
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < heads * splits; ++task) {
      const int bh = static_cast<int>(task / splits), s = static_cast<int>(task % splits);
      const int b = bh / NH, h = bh % NH;
      float* dq_head = splits > 1 ? partial + task * head_size : dq + g.at(b, Tq, 0, h);
      const long ldq = splits > 1 ? D : g.C;
      zero_rows(dq_head, Tq, D, ldq);
      for (int kt = s; kt < k_tiles; kt += splits)
        backward_key_tile(dq_head, ldq, dk, dv, dout, q, k, keys, values, lse, Di, g, b, h, kt * g.Bc,
                          scratch);
    }
  }
  if (splits > 1) reduce_query_gradients(dq, partial, splits, g);
}

}  // namespace dbcore::cpu
