// Memory on a backend's device: allocation, copies and zeroing, with per-device byte counters (current and peak
// of what dbcore itself allocated; the CUDA counters are the allocator high-water mark `dbcore train` reports).
// CPU memory is 64-byte aligned host memory; CUDA memory comes from cudaMalloc. Builds without the CUDA backend
// throw EUNSUPPORTED for Device::CUDA.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor.h"

namespace dbcore {

void* device_alloc(Device device, size_t bytes);  // throws ENOMEM naming the size
void device_free(Device device, void* ptr, size_t bytes);
// Copies between any two devices (host ↔ CUDA, CUDA ↔ CUDA, host ↔ host). Synchronous.
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes);
void zero_bytes(Device device, void* ptr, size_t bytes);

struct MemoryCounters {
  size_t current = 0, peak = 0;
};
MemoryCounters memory_counters(Device device);
void reset_memory_peak(Device device);  // peak = current
// This machine's physical memory in bytes (0 when the system does not say).
uint64_t physical_memory_bytes();

// One allocation, freed when the owner goes away. Moves, never copies.
class DeviceBlock {
 public:
  DeviceBlock() = default;
  DeviceBlock(Device device, size_t bytes) : device_(device), bytes_(bytes), ptr_(device_alloc(device, bytes)) {}
  DeviceBlock(DeviceBlock&& o) noexcept { *this = std::move(o); }
  DeviceBlock& operator=(DeviceBlock&& o) noexcept;
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  ~DeviceBlock() { reset(); }

  void reset();
  void* data() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  bool empty() const { return ptr_ == nullptr; }
  Device device() const { return device_; }

 private:
  Device device_ = Device::CPU;
  size_t bytes_ = 0;
  void* ptr_ = nullptr;
};

}  // namespace dbcore
