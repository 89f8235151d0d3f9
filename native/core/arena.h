// Bump allocator for activations. A step allocates from it in a fixed order; reset() rewinds it. The first step
// sizes it: it grows by chunks, and release() frees the chunks past the released position, so that cycle holds
// little more than its live data; reset() then merges everything into one block of the high-water mark, and later
// steps of the same shapes reuse that block without allocating.
// Blocks are 64-byte aligned. Pointers stay valid until reset(). The memory is on the arena's device (host memory
// for the CPU backend, device memory for CUDA).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "memory.h"

namespace dbcore {

class Arena {
 public:
  explicit Arena(Device device = Device::CPU) : device_(device) {}
  Device device() const { return device_; }
  float* alloc_floats(int64_t n) { return static_cast<float*>(alloc_bytes(static_cast<size_t>(n) * 4)); }
  void* alloc_bytes(size_t bytes);
  // Rewinds to empty. If the last cycle had to grow, its chunks are merged into one block sized for the high-water
  // mark, so the next cycle runs without allocating.
  void reset();
  // Stack discipline for temporaries: release(mark()) frees everything allocated after the mark (chunks past the
  // mark's are returned to the device).
  struct Mark {
    size_t chunk, used, cycle_bytes;
  };
  Mark mark() const { return {chunk_, used_, cycle_bytes_}; }
  void release(const Mark& m);
  size_t high_water() const { return high_water_; }

 private:
  void add_chunk(size_t min_bytes);
  Device device_;
  std::vector<DeviceBlock> chunks_;
  size_t chunk_ = 0, used_ = 0;   // current chunk and bytes used in it
  size_t cycle_bytes_ = 0, high_water_ = 0;
  bool grown_ = false;  // a chunk was added since the last reset()
};

}  // namespace dbcore
