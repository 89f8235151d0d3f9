// Bump allocator for activations. A step allocates from it in a fixed order; reset() rewinds it. The first step
// (or an explicit reserve()) sizes it; later steps of the same shapes reuse the memory without allocating.
// Blocks are 64-byte aligned. Pointers stay valid until reset().
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace dbcore {

class Arena {
 public:
  float* alloc_floats(int64_t n) { return static_cast<float*>(alloc_bytes(static_cast<size_t>(n) * 4)); }
  void* alloc_bytes(size_t bytes);
  // Rewinds to empty. If the last cycle overflowed into extra chunks, they are merged into one block sized for
  // the high-water mark, so the next cycle runs without allocating.
  void reset();
  // Stack discipline for temporaries: release(mark()) frees everything allocated after the mark.
  struct Mark {
    size_t chunk, used, cycle_bytes;
  };
  Mark mark() const { return {chunk_, used_, cycle_bytes_}; }
  void release(const Mark& m) {
    chunk_ = m.chunk;
    used_ = m.used;
    cycle_bytes_ = m.cycle_bytes;
  }
  size_t high_water() const { return high_water_; }

 private:
  struct Chunk {
    std::unique_ptr<uint8_t[]> raw;
    uint8_t* base = nullptr;
    size_t size = 0;
  };
  void add_chunk(size_t min_bytes);
  std::vector<Chunk> chunks_;
  size_t chunk_ = 0, used_ = 0;   // current chunk and bytes used in it
  size_t cycle_bytes_ = 0, high_water_ = 0;
};

}  // namespace dbcore
