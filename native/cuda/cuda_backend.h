// The CUDA backend as seen from plain C++ (no CUDA headers needed to include this). Everything here is
// defined in native/cuda/*.cu and exists only in builds with DBCORE_WITH_CUDA.
#pragma once
#include <cstddef>
#include <string>

namespace dbcore::cuda {

struct DeviceInfo {
  bool available = false;
  std::string reason;  // why CUDA is unavailable (no driver, no device, driver too old…)
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_memory = 0, free_memory = 0;
  int driver_version = 0, runtime_version = 0;
};

DeviceInfo query_device(int ordinal = 0);

// Device memory and copies (throw dbcore::Error "ECUDA" on failure).
void* device_alloc(size_t bytes);
void device_free(void* ptr);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void synchronize();

// Row-wise softmax, the CUDA twin of cpu::softmax_forward / softmax_backward (device pointers).
void softmax_forward(float* out, const float* inp, int M, int N);
void softmax_backward(float* dinp, const float* dout, const float* out, int M, int N);

}  // namespace dbcore::cuda
