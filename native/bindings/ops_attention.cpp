// Kernel-level exports of the fused attention (cpu/attention.h) for tests and benchmarks:
//   ops.attention(q, k, v, {heads, scale?, causal?, bf16?}) → {out, lse}
//   ops.attentionBackward(dout, q, k, v, out, lse, {heads, scale?, causal?, bf16?}) → {dq, dk, dv}
//   ops.attentionTiledHost(q, k, v, out, dout, {heads, scale?, causal?}) → {out, lse, dq, dk, dv}: test-only replay
//     of the CUDA tensor-core kernels' tile loops on the host (see below), with `out` the forward output the
//     backward's Di is taken from.
// q, out, dout (B, Tq, NH·D); k, v (B, Tk, NH·D); lse (B, NH, Tq). scale defaults to 1/√D. bf16: the tile products
// on bf16-rounded operands (mixed_precision bf16).
#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "cpu/attention.h"
#include "cuda/attention_tiles.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct AttentionArgs {
  Tensor q, k, v;
  int B, Tq, Tk, NH, D;
  float scale;
  bool causal;
  Precision precision;
};

int checked_int(int64_t x, const char* what) {
  DBCORE_CHECK(x <= INT_MAX, "ESHAPE", "attention: %s = %lld is too large", what, static_cast<long long>(x));
  return static_cast<int>(x);
}

// q, k, v are arguments first, first+1, first+2; the options object is argument `opts`.
AttentionArgs attention_args(const Napi::CallbackInfo& info, size_t first, size_t opts) {
  AttentionArgs a;
  a.q = tensor_arg(info, first, "q", DType::F32, 3);
  a.k = tensor_arg(info, first + 1, "k", DType::F32, 3);
  a.v = tensor_arg(info, first + 2, "v", DType::F32, 3);
  DBCORE_CHECK(opts < info.Length() && info[opts].IsObject(), "EINVAL",
               "attention: argument %zu must be an options object {heads, scale?, causal?}", opts + 1);
  double heads = number_option(info, opts, "heads", -1);
  DBCORE_CHECK(heads >= 1 && heads == std::floor(heads) && heads <= INT_MAX, "EINVAL",
               "attention: option 'heads' must be a positive integer, got %g", heads);
  check_shape(a.v, a.k.shape, "v");
  DBCORE_CHECK(a.k.dim(0) == a.q.dim(0) && a.k.dim(2) == a.q.dim(2), "ESHAPE",
               "attention: k %s must be (B, Tk, %lld) with q's B and width, q is %s", a.k.describe().c_str(),
               static_cast<long long>(a.q.dim(2)), a.q.describe().c_str());
  const int64_t width = a.q.dim(2);
  a.NH = static_cast<int>(heads);
  DBCORE_CHECK(width > 0 && width % a.NH == 0, "ESHAPE",
               "attention: q's last dimension %lld is not a positive multiple of heads = %d",
               static_cast<long long>(width), a.NH);
  a.B = checked_int(a.q.dim(0), "B");
  a.Tq = checked_int(a.q.dim(1), "Tq");
  a.Tk = checked_int(a.k.dim(1), "Tk");
  a.D = checked_int(width / a.NH, "D");
  DBCORE_CHECK(a.B > 0 && a.Tq > 0 && a.Tk > 0, "ESHAPE", "attention: empty input: q %s, k %s",
               a.q.describe().c_str(), a.k.describe().c_str());
  double scale = number_option(info, opts, "scale", 1.0 / std::sqrt(static_cast<double>(a.D)));
  DBCORE_CHECK(std::isfinite(scale), "EINVAL", "attention: option 'scale' must be a finite number, got %g", scale);
  a.scale = static_cast<float>(scale);
  a.causal = bool_option(info, opts, "causal", false);
  a.precision = bool_option(info, opts, "bf16", false) ? Precision::BF16 : Precision::F32;
  DBCORE_CHECK(!a.causal || a.Tq == a.Tk, "ESHAPE",
               "attention: a causal mask needs as many queries as keys, got Tq = %d and Tk = %d", a.Tq, a.Tk);
  return a;
}

Shape lse_shape(const AttentionArgs& a) { return {a.B, a.NH, a.Tq}; }

// ---- Host replay of the tensor-core kernels (native/cuda/attention_tc.cu) -----------------------------------
// The same tile plans, padded head, causal tile ranges and online-softmax recurrence (cuda/attention_tiles.h), in
// fp32 without the 16-bit rounding, one (batch, head) at a time: checks that bookkeeping against cpu::attention on
// machines without a GPU. Per-warp tile skips are not replayed: a skipped tile is one whose scores are all masked,
// which the recurrence leaves unchanged (rescale_to gives 1, or 0 on an empty row).
namespace tiles = cuda::attn_tiles;

// One head of a (B, T, NH·D) tensor as a (T rounded up to 64, Dp) matrix, zero beyond T rows and D columns (the
// kernels' shared tiles).
std::vector<float> head_matrix(const float* x, int b, int h, int T, int Dp, const AttentionArgs& a) {
  std::vector<float> m(static_cast<size_t>(tiles::ceil_div(T, 64) * 64) * Dp, 0.f);
  const long C = static_cast<long>(a.NH) * a.D;
  for (int t = 0; t < T; ++t)
    std::copy_n(x + (static_cast<long>(b) * T + t) * C + static_cast<long>(h) * a.D, a.D, m.begin() + t * Dp);
  return m;
}

float dot(const float* x, const float* y, int n) {
  float s = 0.f;
  for (int d = 0; d < n; ++d) s += x[d] * y[d];
  return s;
}

// Forward of one head: out and lse rows (row stride Dp, lse contiguous).
void replay_forward(float* out, float* lse, const std::vector<float>& Q, const std::vector<float>& K,
                    const std::vector<float>& V, int Dp, const AttentionArgs& a) {
  const tiles::TilePlan plan = tiles::forward_plan(Dp);
  std::vector<float> acc(Dp), s(plan.keys);
  for (int q0 = 0; q0 < a.Tq; q0 += plan.rows)
    for (int i = q0; i < q0 + plan.rows; ++i) {  // rows past Tq run too, as in a CTA; they are not stored
      float m = -INFINITY, l = 0.f;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int j0 = 0; j0 < tiles::key_end(q0, plan.rows, a.Tk, a.causal); j0 += plan.keys) {
        float tile_max = -INFINITY;
        for (int j = 0; j < plan.keys; ++j) {
          s[j] = tiles::visible(i, j0 + j, a.Tk, a.causal) ? a.scale * dot(&Q[i * Dp], &K[(j0 + j) * Dp], Dp) : -INFINITY;
          tile_max = std::max(tile_max, s[j]);
        }
        const float alpha = tiles::rescale_to(m, tile_max), shift = tiles::exp_shift(m);
        l *= alpha;
        for (float& x : acc) x *= alpha;
        for (int j = 0; j < plan.keys; ++j) {
          const float p = std::exp(s[j] - shift);
          l += p;
          for (int d = 0; d < Dp; ++d) acc[d] += p * V[(j0 + j) * Dp + d];
        }
      }
      if (i >= a.Tq) continue;
      for (int d = 0; d < Dp; ++d) out[i * Dp + d] = acc[d] * tiles::row_inverse(l);
      lse[i] = tiles::row_lse(m, l);
    }
}

// Backward of one head: the dK/dV kernel's loops (key blocks outer) and the dQ kernel's (query blocks outer).
void replay_backward(float* dq, float* dk, float* dv, const std::vector<float>& dO, const std::vector<float>& Q,
                     const std::vector<float>& K, const std::vector<float>& V, const float* lse, const float* Di,
                     int Dp, const AttentionArgs& a) {
  const tiles::TilePlan plan = tiles::backward_plan(Dp);
  // P_ij and dS_ij of a visible pair (0 otherwise).
  auto p_ds = [&](int i, int j, float& p, float& ds) {
    if (i >= a.Tq || !tiles::visible(i, j, a.Tk, a.causal)) {
      p = ds = 0.f;
      return;
    }
    p = std::exp(a.scale * dot(&Q[i * Dp], &K[j * Dp], Dp) - lse[i]);
    ds = p * (dot(&dO[i * Dp], &V[j * Dp], Dp) - Di[i]);
  };
  float p, ds;
  for (int j0 = 0; j0 < a.Tk; j0 += plan.keys)
    for (int i0 = tiles::query_begin(j0, plan.rows, a.causal); i0 < a.Tq; i0 += plan.rows)
      for (int j = j0; j < std::min(j0 + plan.keys, a.Tk); ++j)
        for (int i = i0; i < i0 + plan.rows; ++i) {
          p_ds(i, j, p, ds);
          for (int d = 0; d < Dp; ++d) {
            dv[j * Dp + d] += p * dO[i * Dp + d];
            dk[j * Dp + d] += a.scale * ds * Q[i * Dp + d];
          }
        }
  for (int i0 = 0; i0 < a.Tq; i0 += plan.rows)
    for (int j0 = 0; j0 < tiles::key_end(i0, plan.rows, a.Tk, a.causal); j0 += plan.keys)
      for (int i = i0; i < std::min(i0 + plan.rows, a.Tq); ++i)
        for (int j = j0; j < j0 + plan.keys; ++j) {
          p_ds(i, j, p, ds);
          for (int d = 0; d < Dp; ++d) dq[i * Dp + d] += a.scale * ds * K[j * Dp + d];
        }
}

// Rows (T, Dp) of one head back into a (B, T, NH·D) tensor (the first D columns).
void scatter_head(float* x, const std::vector<float>& m, int b, int h, int T, int Dp, const AttentionArgs& a) {
  const long C = static_cast<long>(a.NH) * a.D;
  for (int t = 0; t < T; ++t)
    std::copy_n(m.begin() + t * Dp, a.D, x + (static_cast<long>(b) * T + t) * C + static_cast<long>(h) * a.D);
}

}  // namespace

DBCORE_OP(attention) {
  AttentionArgs a = attention_args(info, 0, 3);
  Napi::Env env = info.Env();
  JsTensor out = new_js_tensor(env, DType::F32, a.q.shape);
  JsTensor lse = new_js_tensor(env, DType::F32, lse_shape(a));
  cpu::attention_forward(out.tensor.f32(), lse.tensor.f32(), a.q.f32(), a.k.f32(), a.v.f32(), a.B, a.Tq, a.Tk, a.NH,
                         a.D, a.scale, a.causal, a.precision);
  Napi::Object result = Napi::Object::New(env);
  result.Set("out", out.object);
  result.Set("lse", lse.object);
  return result;
}

DBCORE_OP(attentionBackward) {
  AttentionArgs a = attention_args(info, 1, 6);
  Tensor dout = tensor_arg(info, 0, "dout", DType::F32);
  Tensor out = tensor_arg(info, 4, "out", DType::F32);
  Tensor lse = tensor_arg(info, 5, "lse", DType::F32);
  check_shape(dout, a.q.shape, "dout");
  check_shape(out, a.q.shape, "out");
  check_shape(lse, lse_shape(a), "lse");
  Napi::Env env = info.Env();
  JsTensor dq = new_js_tensor(env, DType::F32, a.q.shape);
  JsTensor dk = new_js_tensor(env, DType::F32, a.k.shape);
  JsTensor dv = new_js_tensor(env, DType::F32, a.v.shape);
  cpu::attention_backward(dq.tensor.f32(), dk.tensor.f32(), dv.tensor.f32(), dout.f32(), a.q.f32(), a.k.f32(),
                          a.v.f32(), out.f32(), lse.f32(), a.B, a.Tq, a.Tk, a.NH, a.D, a.scale, a.causal,
                          a.precision);
  Napi::Object result = Napi::Object::New(env);
  result.Set("dq", dq.object);
  result.Set("dk", dk.object);
  result.Set("dv", dv.object);
  return result;
}

DBCORE_OP(attentionTiledHost) {
  AttentionArgs a = attention_args(info, 0, 5);
  Tensor out_in = tensor_arg(info, 3, "out", DType::F32);
  Tensor dout = tensor_arg(info, 4, "dout", DType::F32);
  check_shape(out_in, a.q.shape, "out");
  check_shape(dout, a.q.shape, "dout");
  const int Dp = tiles::padded_head(a.D);
  DBCORE_CHECK(Dp > 0, "EINVAL", "attention: head size D = %d is outside [1, %d]", a.D, tiles::kMaxHead);
  Napi::Env env = info.Env();
  JsTensor out = new_js_tensor(env, DType::F32, a.q.shape), lse = new_js_tensor(env, DType::F32, lse_shape(a));
  JsTensor dq = new_js_tensor(env, DType::F32, a.q.shape), dk = new_js_tensor(env, DType::F32, a.k.shape);
  JsTensor dv = new_js_tensor(env, DType::F32, a.v.shape);
  for (int b = 0; b < a.B; ++b)
    for (int h = 0; h < a.NH; ++h) {
      const auto Q = head_matrix(a.q.f32(), b, h, a.Tq, Dp, a), K = head_matrix(a.k.f32(), b, h, a.Tk, Dp, a);
      const auto V = head_matrix(a.v.f32(), b, h, a.Tk, Dp, a), dO = head_matrix(dout.f32(), b, h, a.Tq, Dp, a);
      const auto O = head_matrix(out_in.f32(), b, h, a.Tq, Dp, a);
      std::vector<float> o(Q.size()), dQ(Q.size(), 0.f), dK(K.size(), 0.f), dV(K.size(), 0.f), Di(a.Tq);
      float* lse_h = lse.tensor.f32() + (static_cast<long>(b) * a.NH + h) * a.Tq;
      replay_forward(o.data(), lse_h, Q, K, V, Dp, a);
      for (int i = 0; i < a.Tq; ++i) Di[i] = dot(&dO[i * Dp], &O[i * Dp], Dp);  // Di from the given out
      replay_backward(dQ.data(), dK.data(), dV.data(), dO, Q, K, V, lse_h, Di.data(), Dp, a);
      scatter_head(out.tensor.f32(), o, b, h, a.Tq, Dp, a);
      scatter_head(dq.tensor.f32(), dQ, b, h, a.Tq, Dp, a);
      scatter_head(dk.tensor.f32(), dK, b, h, a.Tk, Dp, a);
      scatter_head(dv.tensor.f32(), dV, b, h, a.Tk, Dp, a);
    }
  Napi::Object result = Napi::Object::New(env);
  result.Set("out", out.object);
  result.Set("lse", lse.object);
  result.Set("dq", dq.object);
  result.Set("dk", dk.object);
  result.Set("dv", dv.object);
  return result;
}

}  // namespace dbcore::js
