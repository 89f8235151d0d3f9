// Bridging tensors between JS and native WITHOUT copies.
//   JS tensor object: { dtype: 'F32'|'F16'|'BF16'|'I32'|'I64'|'U8', shape: number[], data: ArrayBuffer | TypedArray | Buffer }
// tensor_from_js() returns a dbcore::Tensor whose data pointer is the JS buffer's own memory.
// new_js_tensor() allocates a JS-owned ArrayBuffer and returns both the JS object and a Tensor over it, so
// native code writes results straight into memory that JS owns (no finalizer, no dangling pointer).
#pragma once
#include <napi.h>

#include "core/tensor.h"

namespace dbcore::js {

// `what` names the argument in error messages ("a", "weight", …). Throws dbcore::Error (EINVAL/ESHAPE/EDTYPE).
Tensor tensor_from_js(const Napi::Value& value, const char* what);
// Same, with the expected dtype and rank checked (rank -1: any).
Tensor tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* what, DType dtype, int rank = -1);

struct JsTensor {
  Napi::Object object;
  Tensor tensor;
};
JsTensor new_js_tensor(Napi::Env env, DType dtype, const Shape& shape);

// Reads optional fields of an options object (arguments[index]); missing or undefined gives the fallback.
double number_option(const Napi::CallbackInfo& info, size_t index, const char* key, double fallback);
bool bool_option(const Napi::CallbackInfo& info, size_t index, const char* key, bool fallback);
// Fields of a plain JS object (a parsed config.json): missing/undefined/null gives the fallback; a field of the
// wrong type throws EINVAL naming `what`.key.
double get_number(const Napi::Object& obj, const char* key, double fallback, const char* what);
double require_number(const Napi::Object& obj, const char* key, const char* what);  // EINVAL when missing
std::string get_string(const Napi::Object& obj, const char* key, const std::string& fallback, const char* what);
bool get_bool(const Napi::Object& obj, const char* key, bool fallback, const char* what);
Napi::Object object_arg(const Napi::CallbackInfo& info, size_t index, const char* what, bool optional = false);

int64_t int_arg(const Napi::CallbackInfo& info, size_t index, const char* what);

}  // namespace dbcore::js
