#include "arena.h"

#include <algorithm>

#include "error.h"

namespace dbcore {

namespace {
constexpr size_t kAlign = 64;
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

void Arena::add_chunk(size_t min_bytes) {
  grown_ = true;
  chunks_.emplace_back(device_, round_up(std::max<size_t>(min_bytes, 1 << 20)));  // aligned by device_alloc
}

void* Arena::alloc_bytes(size_t bytes) {
  bytes = round_up(std::max<size_t>(bytes, 1));
  while (chunk_ < chunks_.size() && used_ + bytes > chunks_[chunk_].bytes()) {
    ++chunk_;
    used_ = 0;
  }
  if (chunk_ == chunks_.size()) {
    add_chunk(bytes);
    used_ = 0;
  }
  void* p = chunks_[chunk_].as<uint8_t>() + used_;
  used_ += bytes;
  cycle_bytes_ += bytes;
  high_water_ = std::max(high_water_, cycle_bytes_);
  return p;
}

void Arena::release(const Mark& m) {
  chunk_ = m.chunk;
  used_ = m.used;
  cycle_bytes_ = m.cycle_bytes;
  // Chunks past the current one hold nothing live (allocations after the mark are released).
  if (chunks_.size() > chunk_ + 1) chunks_.resize(chunk_ + 1);
}

void Arena::reset() {
  if (grown_ && (chunks_.size() != 1 || chunks_[0].bytes() < high_water_)) {
    chunks_.clear();
    add_chunk(high_water_);
  }
  grown_ = false;
  chunk_ = 0;
  used_ = 0;
  cycle_bytes_ = 0;
}

}  // namespace dbcore
