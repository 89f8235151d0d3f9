// Device discovery, memory and copies.
#include <algorithm>
#include <vector>

#include "common.cuh"
#include "cuda_backend.h"

namespace dbcore::cuda {

namespace {

// CUDA encodes versions as 1000 · major + 10 · minor.
std::string cuda_version_string(int v) { return format("%d.%d", v / 1000, (v % 1000) / 10); }

}  // namespace

DeviceInfo query_device(int ordinal) {
  DeviceInfo info;
  cudaRuntimeGetVersion(&info.runtime_version);
  // With the static runtime and no driver library (libcuda.so.1 / nvcuda.dll) this returns 0, not an error.
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess || info.driver_version == 0) {
    info.reason = "no NVIDIA driver was found (the CUDA driver library could not be loaded); install the NVIDIA "
                  "driver to use the CUDA backend";
    return info;
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  cudaGetLastError();
  if (err == cudaErrorInsufficientDriver) {
    info.reason = format("the NVIDIA driver supports CUDA %s but this build needs CUDA %s; update the driver",
                         cuda_version_string(info.driver_version).c_str(),
                         cuda_version_string(info.runtime_version).c_str());
    return info;
  }
  if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
    info.reason = "the NVIDIA driver is installed but no CUDA GPU was found";
    return info;
  }
  if (err != cudaSuccess) {
    info.reason = std::string("CUDA could not list the GPUs: ") + cudaGetErrorString(err);
    return info;
  }
  if (ordinal >= count) {
    info.reason = format("GPU %d was requested but only %d present", ordinal, count);
    return info;
  }
  cudaDeviceProp prop;
  DBCORE_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  if (prop.major < 7 || (prop.major == 7 && prop.minor < 5)) {
    info.reason = format("%s has compute capability %d.%d; dbcore needs 7.5 (Turing) or newer", prop.name,
                         prop.major, prop.minor);
    return info;
  }
  DBCORE_CUDA_CHECK(cudaSetDevice(ordinal));
  DBCORE_CUDA_CHECK(cudaMemGetInfo(&info.free_memory, &info.total_memory));
  info.available = true;
  return info;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("ENOMEM", format("cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(err)));
  }
  return p;
}

void device_free(void* ptr) {
  if (ptr) cudaFree(ptr);
}

void* thread_scratch(size_t bytes) {
  struct Scratch {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  thread_local Scratch s;
  if (bytes > s.bytes) {
    void* grown = device_alloc(bytes);
    device_free(s.ptr);  // cudaFree waits for the kernels still reading the old buffer
    s.ptr = grown;
    s.bytes = bytes;
  }
  return s.ptr;
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  DBCORE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  DBCORE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  DBCORE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void fill_bytes(void* dst, int byte, size_t bytes) { DBCORE_CUDA_CHECK(cudaMemset(dst, byte, bytes)); }

void synchronize() { DBCORE_CUDA_CHECK(cudaDeviceSynchronize()); }

double time_ms(const std::function<void()>& launch, int warmup, int reps) {
  DBCORE_CHECK(reps > 0 && warmup >= 0, "EINVAL", "time_ms: reps must be positive, warmup non-negative");
  for (int i = 0; i < warmup; ++i) launch();
  cudaEvent_t start, stop;
  DBCORE_CUDA_CHECK(cudaEventCreate(&start));
  DBCORE_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> times(reps);
  cudaError_t err = cudaSuccess;
  try {
    for (int i = 0; i < reps && err == cudaSuccess; ++i) {
      DBCORE_CUDA_CHECK(cudaEventRecord(start));
      launch();
      DBCORE_CUDA_CHECK(cudaEventRecord(stop));
      DBCORE_CUDA_CHECK(cudaEventSynchronize(stop));
      err = cudaEventElapsedTime(&times[i], start, stop);
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  DBCORE_CUDA_CHECK(err);
  std::sort(times.begin(), times.end());
  return times[reps / 2];
}

}  // namespace dbcore::cuda
