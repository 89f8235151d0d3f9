// Kernel-level exports for tests: matmul (sync and async), the autocast operand rounding, softmax, in-place scaling, sums, random fills.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "async.h"
#include "core/half.h"
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

namespace {

// x rounded to `precision` by core/half.h's scalar conversions (the definition), as bits.
uint32_t reference_rounding(uint32_t bits, Precision precision) {
  const float x = bits_float(bits);
  return float_bits(precision == Precision::F16 ? half_to_float(float_to_half(x)) : bf16_to_float(float_to_bf16(x)));
}

struct RoundingCheck {
  uint64_t mismatches = 0;
  uint64_t first = UINT64_MAX;  // the smallest mismatching bit pattern; UINT64_MAX when none
};

// cpu::round_to_precision on the float bit patterns first + i·stride (mod 2^32), i < count, in blocks of kBlock
// (one per thread at a time), each compared bit for bit with reference_rounding. The passes are separate loops so
// that all but the reference's (branchy) one vectorize.
RoundingCheck check_operand_rounding(Precision precision, uint32_t first_pattern, uint64_t count, uint32_t stride) {
  constexpr uint64_t kBlock = 1 << 14;
  const int64_t blocks = int64_t((count + kBlock - 1) / kBlock);
  uint64_t mismatches = 0, first = UINT64_MAX;
#pragma omp parallel reduction(+ : mismatches) reduction(min : first)
  {
    std::vector<uint32_t> patterns(kBlock), want(kBlock);
    std::vector<float> in(kBlock), out(kBlock);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const uint64_t i0 = uint64_t(b) * kBlock;
      const int n = int(std::min(kBlock, count - i0));
      for (int j = 0; j < n; ++j) patterns[j] = first_pattern + uint32_t(i0 + j) * stride;  // wraps mod 2^32
      for (int j = 0; j < n; ++j) in[j] = bits_float(patterns[j]);
      cpu::round_to_precision(out.data(), in.data(), 1, n, n, precision);
      for (int j = 0; j < n; ++j) want[j] = reference_rounding(patterns[j], precision);
      uint64_t block_mismatches = 0;
      for (int j = 0; j < n; ++j) block_mismatches += float_bits(out[j]) != want[j];
      if (block_mismatches == 0) continue;
      mismatches += block_mismatches;
      for (int j = 0; j < n; ++j)
        if (float_bits(out[j]) != want[j]) first = std::min<uint64_t>(first, patterns[j]);
    }
  }
  return {mismatches, first};
}

// Integer argument `index` of an operandRoundingMismatches call, checked against [lo, hi].
uint64_t rounding_check_arg(const Napi::CallbackInfo& info, size_t index, const char* what, int64_t lo, int64_t hi) {
  const int64_t v = int_arg(info, index, what);
  DBCORE_CHECK(v >= lo && v <= hi, "EINVAL", "operandRoundingMismatches: %s must be in [%lld, %lld], got %lld", what,
               static_cast<long long>(lo), static_cast<long long>(hi), static_cast<long long>(v));
  return uint64_t(v);
}

}  // namespace

// ops.operandRoundingMismatches(format 'fp16' | 'bf16', first, count, stride) → {mismatches, first}: the autocast
// operand rounding (cpu::round_to_precision, vectorized) against core/half.h's round trip on the float bit patterns
// first + i·stride (mod 2^32) for i < count, bit for bit, NaN payloads included ((0, 2^32, 1): every float).
// first: null, or the smallest mismatching pattern with what each side gave, {bits, got, want} (bit patterns).
DBCORE_OP(operandRoundingMismatches) {
  Napi::Env env = info.Env();
  DBCORE_CHECK(info.Length() >= 1 && info[0].IsString(), "EINVAL",
               "operandRoundingMismatches: format must be 'fp16' or 'bf16'");
  const std::string format = info[0].As<Napi::String>().Utf8Value();
  DBCORE_CHECK(format == "fp16" || format == "bf16", "EINVAL",
               "operandRoundingMismatches: format must be 'fp16' or 'bf16', got '%s'", format.c_str());
  constexpr int64_t kPatterns = int64_t(1) << 32;
  const uint32_t first_pattern = uint32_t(rounding_check_arg(info, 1, "first", 0, kPatterns - 1));
  const uint64_t count = rounding_check_arg(info, 2, "count", 0, kPatterns);
  const uint32_t stride = uint32_t(rounding_check_arg(info, 3, "stride", 1, kPatterns - 1));
  const Precision precision = format == "fp16" ? Precision::F16 : Precision::BF16;
  const RoundingCheck check = check_operand_rounding(precision, first_pattern, count, stride);
  Napi::Object result = Napi::Object::New(env);
  result.Set("mismatches", Napi::Number::New(env, double(check.mismatches)));
  if (check.first == UINT64_MAX) {
    result.Set("first", env.Null());
  } else {
    const uint32_t bits = uint32_t(check.first);
    float x = bits_float(bits), got;
    cpu::round_to_precision(&got, &x, 1, 1, 1, precision);
    Napi::Object first = Napi::Object::New(env);
    first.Set("bits", Napi::Number::New(env, bits));
    first.Set("got", Napi::Number::New(env, float_bits(got)));
    first.Set("want", Napi::Number::New(env, reference_rounding(bits, precision)));
    result.Set("first", first);
  }
  return result;
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
