// Kernel-level exports of the fused attention (cpu/attention.h) for tests and benchmarks:
//   ops.attention(q, k, v, {heads, scale?, causal?}) → {out, lse}
//   ops.attentionBackward(dout, q, k, v, out, lse, {heads, scale?, causal?}) → {dq, dk, dv}
// q, out, dout (B, Tq, NH·D); k, v (B, Tk, NH·D); lse (B, NH, Tq). scale defaults to 1/√D.
#include <climits>
#include <cmath>

#include "cpu/attention.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct AttentionArgs {
  Tensor q, k, v;
  int B, Tq, Tk, NH, D;
  float scale;
  bool causal;
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
  DBCORE_CHECK(!a.causal || a.Tq == a.Tk, "ESHAPE",
               "attention: a causal mask needs as many queries as keys, got Tq = %d and Tk = %d", a.Tq, a.Tk);
  return a;
}

Shape lse_shape(const AttentionArgs& a) { return {a.B, a.NH, a.Tq}; }

}  // namespace

DBCORE_OP(attention) {
  AttentionArgs a = attention_args(info, 0, 3);
  Napi::Env env = info.Env();
  JsTensor out = new_js_tensor(env, DType::F32, a.q.shape);
  JsTensor lse = new_js_tensor(env, DType::F32, lse_shape(a));
  cpu::attention_forward(out.tensor.f32(), lse.tensor.f32(), a.q.f32(), a.k.f32(), a.v.f32(), a.B, a.Tq, a.Tk, a.NH,
                         a.D, a.scale, a.causal);
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
                          a.v.f32(), out.f32(), lse.f32(), a.B, a.Tq, a.Tk, a.NH, a.D, a.scale, a.causal);
  Napi::Object result = Napi::Object::New(env);
  result.Set("dq", dq.object);
  result.Set("dk", dk.object);
  result.Set("dv", dv.object);
  return result;
}

}  // namespace dbcore::js
