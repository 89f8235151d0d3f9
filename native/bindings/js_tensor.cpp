#include "js_tensor.h"

#include <cmath>
#include <limits>

#include "core/memory.h"

namespace dbcore::js {

namespace {

Shape shape_from_js(const Napi::Value& value, const char* what) {
  DBCORE_CHECK(value.IsArray(), "EINVAL", "%s.shape must be an array of non-negative integers", what);
  Napi::Array arr = value.As<Napi::Array>();
  DBCORE_CHECK(arr.Length() <= 8, "ESHAPE", "%s.shape has %u dimensions; at most 8 are supported", what,
               arr.Length());
  Shape shape;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    DBCORE_CHECK(d.IsNumber(), "EINVAL", "%s.shape[%u] is not a number", what, i);
    double v = d.As<Napi::Number>().DoubleValue();
    DBCORE_CHECK(v >= 0 && v == std::floor(v) && v < 9.0e15, "EINVAL",
                 "%s.shape[%u] = %g is not a non-negative integer", what, i, v);
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

// The bytes behind an ArrayBuffer, a TypedArray, a DataView or a Buffer.
void buffer_bytes(const Napi::Value& value, const char* what, void** data, size_t* length) {
  if (value.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = value.As<Napi::ArrayBuffer>();
    *data = ab.Data();
    *length = ab.ByteLength();
  } else if (value.IsTypedArray()) {
    Napi::TypedArray ta = value.As<Napi::TypedArray>();
    *data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    *length = ta.ByteLength();
  } else if (value.IsDataView()) {
    Napi::DataView dv = value.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *length = dv.ByteLength();
  } else {
    throw Error("EINVAL", format("%s.data must be an ArrayBuffer, a TypedArray or a Buffer", what));
  }
}

}  // namespace

Tensor tensor_from_js(const Napi::Value& value, const char* what) {
  DBCORE_CHECK(value.IsObject() && !value.IsArray(), "EINVAL",
               "%s must be a tensor object {dtype, shape, data}", what);
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value dtype = obj.Get("dtype");
  DBCORE_CHECK(dtype.IsString(), "EINVAL", "%s.dtype must be a string such as 'F32'", what);
  Tensor t;
  t.dtype = dtype_from_name(dtype.As<Napi::String>().Utf8Value());
  t.shape = shape_from_js(obj.Get("shape"), what);
  size_t length = 0;
  buffer_bytes(obj.Get("data"), what, &t.data, &length);
  DBCORE_CHECK(length == t.nbytes(), "ESHAPE", "%s: %s needs %zu bytes but its data has %zu", what,
               t.describe().c_str(), t.nbytes(), length);
  DBCORE_CHECK(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0, "EINVAL",
               "%s.data is not aligned to its element size", what);
  return t;
}

Tensor tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* what, DType dtype, int rank) {
  DBCORE_CHECK(index < info.Length(), "EINVAL", "missing argument %zu (%s)", index + 1, what);
  Tensor t = tensor_from_js(info[index], what);
  check_dtype(t, dtype, what);
  if (rank >= 0) check_rank(t, rank, what);
  return t;
}

JsTensor new_js_tensor(Napi::Env env, DType dtype, const Shape& shape) {
  const int64_t n = shape_numel(shape);
  const uint64_t memory = physical_memory_bytes();
  // V8 aborts the process when it cannot allocate an ArrayBuffer: a size that cannot fit is an error before that.
  DBCORE_CHECK(memory == 0 || uint64_t(n) <= memory / dtype_size(dtype), "ENOMEM",
               "a %s tensor of shape %s needs %.1f GiB; this machine has %.1f GiB", dtype_name(dtype),
               shape_string(shape).c_str(), double(n) * dtype_size(dtype) / (1 << 30), double(memory) / (1 << 30));
  const size_t nbytes = static_cast<size_t>(n) * dtype_size(dtype);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, nbytes);
  Napi::Array js_shape = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) js_shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, double(shape[i])));
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("dtype", dtype_name(dtype));
  obj.Set("shape", js_shape);
  obj.Set("data", ab);
  return {obj, Tensor(ab.Data(), dtype, shape)};
}

namespace {
Napi::Value option(const Napi::CallbackInfo& info, size_t index, const char* key) {
  if (index >= info.Length() || info[index].IsUndefined() || info[index].IsNull()) return info.Env().Undefined();
  DBCORE_CHECK(info[index].IsObject(), "EINVAL", "argument %zu must be an options object", index + 1);
  return info[index].As<Napi::Object>().Get(key);
}
}  // namespace

double number_option(const Napi::CallbackInfo& info, size_t index, const char* key, double fallback) {
  Napi::Value v = option(info, index, key);
  if (v.IsUndefined()) return fallback;
  DBCORE_CHECK(v.IsNumber(), "EINVAL", "option '%s' must be a number", key);
  return v.As<Napi::Number>().DoubleValue();
}

bool bool_option(const Napi::CallbackInfo& info, size_t index, const char* key, bool fallback) {
  Napi::Value v = option(info, index, key);
  if (v.IsUndefined()) return fallback;
  DBCORE_CHECK(v.IsBoolean(), "EINVAL", "option '%s' must be a boolean", key);
  return v.As<Napi::Boolean>().Value();
}

namespace {
Napi::Value field(const Napi::Object& obj, const char* key) {
  Napi::Value v = obj.Get(key);
  return v.IsNull() ? obj.Env().Undefined() : v;
}
}  // namespace

double get_number(const Napi::Object& obj, const char* key, double fallback, const char* what) {
  Napi::Value v = field(obj, key);
  if (v.IsUndefined()) return fallback;
  DBCORE_CHECK(v.IsNumber(), "EINVAL", "%s.%s must be a number", what, key);
  return v.As<Napi::Number>().DoubleValue();
}

double require_number(const Napi::Object& obj, const char* key, const char* what) {
  DBCORE_CHECK(!field(obj, key).IsUndefined(), "EINVAL", "%s.%s is required", what, key);
  return get_number(obj, key, 0, what);
}

std::string get_string(const Napi::Object& obj, const char* key, const std::string& fallback, const char* what) {
  Napi::Value v = field(obj, key);
  if (v.IsUndefined()) return fallback;
  DBCORE_CHECK(v.IsString(), "EINVAL", "%s.%s must be a string", what, key);
  return v.As<Napi::String>().Utf8Value();
}

bool get_bool(const Napi::Object& obj, const char* key, bool fallback, const char* what) {
  Napi::Value v = field(obj, key);
  if (v.IsUndefined()) return fallback;
  DBCORE_CHECK(v.IsBoolean(), "EINVAL", "%s.%s must be a boolean", what, key);
  return v.As<Napi::Boolean>().Value();
}

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t index, const char* what, bool optional) {
  if (index >= info.Length() || info[index].IsUndefined() || info[index].IsNull()) {
    DBCORE_CHECK(optional, "EINVAL", "missing argument %zu (%s)", index + 1, what);
    return Napi::Object::New(info.Env());
  }
  DBCORE_CHECK(info[index].IsObject() && !info[index].IsArray(), "EINVAL", "argument %zu (%s) must be an object",
               index + 1, what);
  return info[index].As<Napi::Object>();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  DBCORE_CHECK(index < info.Length() && info[index].IsNumber(), "EINVAL", "argument %zu (%s) must be an integer",
               index + 1, what);
  double v = info[index].As<Napi::Number>().DoubleValue();
  DBCORE_CHECK(v == std::floor(v) && std::fabs(v) < 9.0e15, "EINVAL", "argument %zu (%s) = %g is not an integer",
               index + 1, what, v);
  return static_cast<int64_t>(v);
}

}  // namespace dbcore::js
