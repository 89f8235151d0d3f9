// Sums of squares of gradients (for their L2 norms) accumulated on the gradients' device with one synchronization
// for many tensors: a few slots of doubles on the device (host memory on the CPU), allocated once; a step zeroes
// the slots it uses, adds any number of tensors into them (ops::sum_of_squares_into: kernels queued without a
// synchronization or an allocation on CUDA), then downloads them at once.
#pragma once
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "ops/ops.h"

namespace dbcore {

class SquareSums {
 public:
  SquareSums() = default;
  SquareSums(Device device, size_t slots) : block_(device, slots * sizeof(double)), host_(slots) {}

  size_t size() const { return host_.size(); }
  // Slots [first, first + count) = 0.
  void zero(size_t first, size_t count) {
    check(first, count);
    zero_bytes(block_.device(), slot(first), count * sizeof(double));
  }
  // Slot += Σ x² (x: n floats on the device).
  void add(size_t index, const float* x, int64_t n) {
    check(index, 1);
    ops::sum_of_squares_into(ops::Context{block_.device()}, slot(index), x, n);
  }
  // Slots [first, first + count) copied to the host (waits for the queued sums); valid until the next read.
  const double* read(size_t first, size_t count) {
    check(first, count);
    ops::download(ops::Context{block_.device()}, host_.data() + first, slot(first), int64_t(count));
    return host_.data() + first;
  }

 private:
  double* slot(size_t i) const { return block_.as<double>() + i; }
  void check(size_t first, size_t count) const {
    DBCORE_CHECK(first + count <= size(), "EINVAL", "square sums: slots [%zu, %zu) outside the %zu allocated", first,
                 first + count, size());
  }
  DeviceBlock block_;
  std::vector<double> host_;
};

}  // namespace dbcore
