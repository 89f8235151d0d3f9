// Kernel-level exports for tests: matmul (sync and async), softmax, in-place scaling, sums, random fills.
#include <cmath>
#include <memory>

#include "async.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cpu/softmax.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

struct MatmulArgs {
  Tensor a, b;
  bool trans_a, trans_b;
  int batch, M, N, K;
  Precision precision;
};

// a (…, M, K) or its transpose, b (…, K, N) or its transpose; leading dimensions must match (rank 2 or 3).
MatmulArgs matmul_args(const Napi::CallbackInfo& info) {
  MatmulArgs m;
  m.a = tensor_arg(info, 0, "a", DType::F32);
  m.b = tensor_arg(info, 1, "b", DType::F32);
  m.trans_a = bool_option(info, 2, "transA", false);
  m.trans_b = bool_option(info, 2, "transB", false);
  const bool bf16 = bool_option(info, 2, "bf16", false), fp16 = bool_option(info, 2, "fp16", false);
  DBCORE_CHECK(!(bf16 && fp16), "EINVAL", "matmul: options bf16 and fp16 exclude each other");
  m.precision = bf16 ? Precision::BF16 : fp16 ? Precision::F16 : Precision::F32;
  DBCORE_CHECK(m.a.ndim() == m.b.ndim() && (m.a.ndim() == 2 || m.a.ndim() == 3), "ESHAPE",
               "matmul: a and b must both be rank 2 or both rank 3, got %s and %s", m.a.describe().c_str(),
               m.b.describe().c_str());
  m.batch = m.a.ndim() == 3 ? static_cast<int>(m.a.dim(0)) : 1;
  DBCORE_CHECK(m.a.ndim() == 2 || m.a.dim(0) == m.b.dim(0), "ESHAPE", "matmul: batch sizes differ: %s vs %s",
               m.a.describe().c_str(), m.b.describe().c_str());
  m.M = static_cast<int>(m.trans_a ? m.a.dim(-1) : m.a.dim(-2));
  m.K = static_cast<int>(m.trans_a ? m.a.dim(-2) : m.a.dim(-1));
  int kb = static_cast<int>(m.trans_b ? m.b.dim(-1) : m.b.dim(-2));
  m.N = static_cast<int>(m.trans_b ? m.b.dim(-2) : m.b.dim(-1));
  DBCORE_CHECK(m.K == kb, "ESHAPE", "matmul: inner dimensions differ (%d vs %d) for %s and %s", m.K, kb,
               m.a.describe().c_str(), m.b.describe().c_str());
  return m;
}

void run_matmul(const MatmulArgs& m, float* c) {
  int lda = static_cast<int>(m.a.dim(-1)), ldb = static_cast<int>(m.b.dim(-1));
  cpu::sgemm_batched(m.trans_a, m.trans_b, m.M, m.N, m.K, 1.f, m.a.f32(), lda, long(m.M) * m.K, m.b.f32(), ldb,
                     long(m.K) * m.N, 0.f, c, m.N, long(m.M) * m.N, m.batch, m.precision);
}

Shape matmul_out_shape(const MatmulArgs& m) {
  return m.a.ndim() == 3 ? Shape{m.batch, m.M, m.N} : Shape{m.M, m.N};
}

}  // namespace

// ops.matmul(a, b, {transA, transB, bf16, fp16}) → c (bf16 / fp16: operands rounded to bfloat16 / fp16, fp32
// accumulation)
DBCORE_OP(matmul) {
  MatmulArgs m = matmul_args(info);
  JsTensor c = new_js_tensor(info.Env(), DType::F32, matmul_out_shape(m));
  run_matmul(m, c.tensor.f32());
  return c.object;
}

// ops.matmulAsync(a, b, opts) → Promise<c>: the same product computed on the thread pool.
DBCORE_OP(matmulAsync) {
  MatmulArgs m = matmul_args(info);
  JsTensor c = new_js_tensor(info.Env(), DType::F32, matmul_out_shape(m));
  float* out = c.tensor.f32();
  return run_async(info.Env(), [m, out]() { run_matmul(m, out); }, c.object, {info[0], info[1]});
}

// ops.softmax(x) → softmax over the last dimension.
DBCORE_OP(softmax) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  DBCORE_CHECK(x.ndim() >= 1, "ESHAPE", "softmax: x must have at least one dimension");
  int N = static_cast<int>(x.dim(-1)), M = N ? static_cast<int>(x.numel() / N) : 0;
  JsTensor y = new_js_tensor(info.Env(), DType::F32, x.shape);
  cpu::softmax_forward(y.tensor.f32(), x.f32(), M, N);
  return y.object;
}

// ops.softmaxBackward(dy, y) → dx
DBCORE_OP(softmaxBackward) {
  Tensor dy = tensor_arg(info, 0, "dy", DType::F32);
  Tensor y = tensor_arg(info, 1, "y", DType::F32);
  check_shape(dy, y.shape, "dy");
  DBCORE_CHECK(y.ndim() >= 1, "ESHAPE", "softmaxBackward: y must have at least one dimension");
  int N = static_cast<int>(y.dim(-1)), M = N ? static_cast<int>(y.numel() / N) : 0;
  JsTensor dx = new_js_tensor(info.Env(), DType::F32, y.shape);
  cpu::softmax_backward(dx.tensor.f32(), dy.f32(), y.f32(), M, N);
  return dx.object;
}

// ops.scaleInPlace(x, s): x *= s, written straight into the caller's buffer (no copy either way).
DBCORE_OP(scaleInPlace) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  cpu::scale_inplace(x.f32(), static_cast<float>(number_option(info, 1, "scale", 1.0)), x.numel());
  return info.Env().Undefined();
}

// ops.sum(x) → Σ x in float64 (reads the caller's buffer in place).
DBCORE_OP(sum) {
  Tensor x = tensor_arg(info, 0, "x", DType::F32);
  double s = 0;
  const float* p = x.f32();
  for (int64_t i = 0; i < x.numel(); ++i) s += p[i];
  return Napi::Number::New(info.Env(), s);
}

// ops.randn(shape, seed, offset) / ops.rand(shape, seed, offset): Philox streams.
static Napi::Value random_fill(const Napi::CallbackInfo& info, bool normal) {
  DBCORE_CHECK(info.Length() >= 2 && info[0].IsArray(), "EINVAL", "expected (shape, seed, offset?)");
  Shape shape;
  Napi::Array arr = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    DBCORE_CHECK(arr.Get(i).IsNumber(), "EINVAL", "shape[%u] is not a number", i);
    double d = arr.Get(i).As<Napi::Number>().DoubleValue();
    DBCORE_CHECK(d >= 0 && d == std::floor(d) && d < 1e10, "EINVAL", "shape[%u] = %g is invalid", i, d);
    shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t seed = static_cast<uint64_t>(int_arg(info, 1, "seed"));
  uint64_t offset = info.Length() > 2 ? static_cast<uint64_t>(int_arg(info, 2, "offset")) : 0;
  JsTensor t = new_js_tensor(info.Env(), DType::F32, shape);
  (normal ? normal_fill : uniform_fill)(t.tensor.f32(), t.tensor.numel(), seed, offset);
  return t.object;
}
DBCORE_OP(randn) { return random_fill(info, true); }
DBCORE_OP(rand) { return random_fill(info, false); }

// setNumThreads(n): OpenMP and OpenBLAS threads (n <= 0: all cores). numThreads() reads it back.
DBCORE_EXPORT(setNumThreads) {
  set_num_threads(static_cast<int>(int_arg(info, 0, "n")));
  return info.Env().Undefined();
}
DBCORE_EXPORT(numThreads) { return Napi::Number::New(info.Env(), num_threads()); }

// workerThreads() → Promise<number>: the OpenMP thread count that async work (forward, backward, …) runs with,
// read on a worker thread.
DBCORE_EXPORT(workerThreads) {
  auto n = std::make_shared<int>(0);
  return run_async(info.Env(), [n]() { *n = threads_here(); },
                   [n](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *n); }, {});
}

}  // namespace dbcore::js
