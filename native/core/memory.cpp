#include "memory.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <unistd.h>
#endif

#ifdef DBCORE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace dbcore {

namespace {

constexpr size_t kAlign = 64;

struct Counter {
  std::atomic<size_t> current{0}, peak{0};
};
Counter& counter(Device device) {
  static Counter counters[2];
  return counters[device == Device::CUDA ? 1 : 0];
}

void count_alloc(Device device, size_t bytes) {
  Counter& c = counter(device);
  const size_t now = c.current.fetch_add(bytes) + bytes;
  size_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {
  }
}

#ifndef DBCORE_WITH_CUDA
[[noreturn]] void no_cuda() {
  throw Error("EUNSUPPORTED", "this build of dbcore has no CUDA backend (built without nvcc)");
}
#endif

void* host_alloc(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
#ifdef _WIN32
  void* p = _aligned_malloc(rounded, kAlign);
#else
  void* p = std::aligned_alloc(kAlign, rounded);
#endif
  DBCORE_CHECK(p, "ENOMEM", "cannot allocate %zu MiB of host memory", bytes >> 20);
  return p;
}

void host_free(void* p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  std::free(p);
#endif
}

}  // namespace

void* device_alloc(Device device, size_t bytes) {
  void* p = nullptr;
  if (device == Device::CPU) {
    p = host_alloc(bytes);
  } else {
#ifdef DBCORE_WITH_CUDA
    p = cuda::device_alloc(std::max<size_t>(bytes, 1));
#else
    no_cuda();
#endif
  }
  count_alloc(device, bytes);
  return p;
}

void device_free(Device device, void* ptr, size_t bytes) {
  if (!ptr) return;
  counter(device).current.fetch_sub(bytes);
  if (device == Device::CPU) {
    host_free(ptr);
    return;
  }
#ifdef DBCORE_WITH_CUDA
  cuda::device_free(ptr);
#endif
}

void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef DBCORE_WITH_CUDA
  if (src_device == Device::CPU)
    cuda::copy_to_device(dst, src, bytes);
  else if (dst_device == Device::CPU)
    cuda::copy_to_host(dst, src, bytes);
  else
    cuda::copy_on_device(dst, src, bytes);
#else
  no_cuda();
#endif
}

void zero_bytes(Device device, void* ptr, size_t bytes) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    std::memset(ptr, 0, bytes);
    return;
  }
#ifdef DBCORE_WITH_CUDA
  cuda::fill_bytes(ptr, 0, bytes);
#else
  no_cuda();
#endif
}

MemoryCounters memory_counters(Device device) {
  const Counter& c = counter(device);
  return {c.current.load(), c.peak.load()};
}

void reset_memory_peak(Device device) { counter(device).peak.store(counter(device).current.load()); }

DeviceBlock& DeviceBlock::operator=(DeviceBlock&& o) noexcept {
  if (this != &o) {
    reset();
    device_ = o.device_;
    bytes_ = o.bytes_;
    ptr_ = o.ptr_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBlock::reset() {
  device_free(device_, ptr_, bytes_);
  ptr_ = nullptr;
  bytes_ = 0;
}

uint64_t physical_memory_bytes() {
  static const uint64_t bytes = [] {  // asked once: every native result tensor checks its size against it
#ifdef _WIN32
    MEMORYSTATUSEX status;
    status.dwLength = sizeof(status);
    return GlobalMemoryStatusEx(&status) ? uint64_t(status.ullTotalPhys) : uint64_t(0);
#else
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? uint64_t(pages) * uint64_t(page_size) : uint64_t(0);
#endif
  }();
  return bytes;
}

}  // namespace dbcore
