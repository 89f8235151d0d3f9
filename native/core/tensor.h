// Tensor: shape, dtype, device and a data pointer. No autograd, no ownership: memory belongs to
// whoever made the tensor (a JS ArrayBuffer, an Arena, a parameter block).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "error.h"

namespace dbcore {

enum class DType : uint8_t { F32, F16, BF16, I32, I64, U8 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
// Parses "F32", "float32", "F16", … ; throws EDTYPE naming the string otherwise.
DType dtype_from_name(const std::string& name);
const char* device_name(Device device);

using Shape = std::vector<int64_t>;
std::string shape_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Shape shape;

  Tensor() = default;
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::CPU)
      : data(data), dtype(dtype), device(device), shape(std::move(shape)) {}

  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const;  // negative i counts from the end; throws on out-of-range

  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  float* f32() const;  // throws EDTYPE unless dtype is F32
  std::string describe() const;  // "F32[2,4,16,16]"
};

// Argument checks shared by every op entry point. `what` names the argument in the message.
void check_dtype(const Tensor& t, DType dtype, const char* what);
void check_rank(const Tensor& t, int rank, const char* what);
void check_shape(const Tensor& t, const Shape& shape, const char* what);

}  // namespace dbcore
