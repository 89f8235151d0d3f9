#include "tensor.h"

#include <limits>

#include <cctype>

namespace dbcore {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  std::string n;
  for (char c : name) n.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (n == "F32" || n == "FLOAT32") return DType::F32;
  if (n == "F16" || n == "FLOAT16") return DType::F16;
  if (n == "BF16" || n == "BFLOAT16") return DType::BF16;
  if (n == "I32" || n == "INT32") return DType::I32;
  if (n == "I64" || n == "INT64") return DType::I64;
  if (n == "U8" || n == "UINT8") return DType::U8;
  throw Error("EDTYPE", format("unknown dtype '%s' (expected F32, F16, BF16, I32, I64 or U8)", name.c_str()));
}

const char* device_name(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    DBCORE_CHECK(d >= 0 && (d == 0 || n <= std::numeric_limits<int64_t>::max() / d), "ESHAPE",
                 "shape %s has a negative dimension or more than 2^63 elements", shape_string(shape).c_str());
    n *= d;
  }
  return n;
}

int64_t Tensor::dim(int i) const {
  int r = ndim();
  int j = i < 0 ? i + r : i;
  DBCORE_CHECK(j >= 0 && j < r, "ESHAPE", "dimension %d out of range for %s", i, describe().c_str());
  return shape[j];
}

float* Tensor::f32() const {
  DBCORE_CHECK(dtype == DType::F32, "EDTYPE", "expected an F32 tensor, got %s", describe().c_str());
  return static_cast<float*>(data);
}

std::string Tensor::describe() const { return std::string(dtype_name(dtype)) + shape_string(shape); }

void check_dtype(const Tensor& t, DType dtype, const char* what) {
  DBCORE_CHECK(t.dtype == dtype, "EDTYPE", "%s: expected dtype %s, got %s", what, dtype_name(dtype),
               t.describe().c_str());
}

void check_rank(const Tensor& t, int rank, const char* what) {
  DBCORE_CHECK(t.ndim() == rank, "ESHAPE", "%s: expected a rank-%d tensor, got %s", what, rank,
               t.describe().c_str());
}

void check_shape(const Tensor& t, const Shape& shape, const char* what) {
  DBCORE_CHECK(t.shape == shape, "ESHAPE", "%s: expected shape %s, got %s", what, shape_string(shape).c_str(),
               t.describe().c_str());
}

}  // namespace dbcore
