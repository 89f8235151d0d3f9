// Parameters of a network in one contiguous allocation with a table of (name, shape, offset), names as in
// diffusers / transformers. Gradients mirror the table in a second block. Loading and saving are table walks.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/memory.h"
#include "core/tensor.h"

namespace dbcore {

struct ParamEntry {
  std::string name;
  Shape shape;
  int64_t offset = 0;  // in floats, into the parameter (and gradient) block
  int64_t numel() const { return shape_numel(shape); }
};

class ParamTable {
 public:
  // Appends a parameter; returns its offset. Names must be unique.
  int64_t add(const std::string& name, const Shape& shape);
  const std::vector<ParamEntry>& entries() const { return entries_; }
  int64_t total() const { return total_; }
  const ParamEntry& at(const std::string& name) const;  // throws EINVAL naming the parameter

 private:
  std::vector<ParamEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
};

// A parameter block laid out by a table, with its gradient block. Both are allocated on first use, so a network
// can be built just to read its table (e.g. to count SD 1.5's parameters) without its 3.4 GB of weights.
// Both blocks live on the store's device; read / write copy one tensor between it and host memory.
class ParamStore {
 public:
  explicit ParamStore(ParamTable table, Device device = Device::CPU);
  const ParamTable& table() const { return table_; }
  Device device() const { return device_; }
  float* params();  // allocates the parameter block (zeroed) on first use
  float* grads();   // allocates the gradient block (zeroed) on first use
  bool has_grads() const { return !grads_.empty(); }
  void zero_grads();
  float* param(int64_t offset) { return params() + offset; }
  float* grad(int64_t offset) { return grads() + offset; }
  // Host copies of one tensor's values (or gradient) in and out.
  void write(const ParamEntry& e, const float* host);
  void read(const ParamEntry& e, float* host, bool grad);

 private:
  ParamTable table_;
  Device device_;
  DeviceBlock params_, grads_;
};

// Builds names like "down_blocks.0.resnets.1" from parts.
std::string join_name(const std::string& prefix, const std::string& name);

}  // namespace dbcore
