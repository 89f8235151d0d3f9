#include "params.h"

namespace dbcore {

int64_t ParamTable::add(const std::string& name, const Shape& shape) {
  DBCORE_CHECK(!index_.count(name), "EINVAL", "parameter '%s' declared twice", name.c_str());
  index_[name] = entries_.size();
  entries_.push_back({name, shape, total_});
  total_ += shape_numel(shape);
  return entries_.back().offset;
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  auto it = index_.find(name);
  DBCORE_CHECK(it != index_.end(), "EINVAL", "unknown parameter '%s'", name.c_str());
  return entries_[it->second];
}

ParamStore::ParamStore(ParamTable table, Device device) : table_(std::move(table)), device_(device) {}

namespace {
float* zeroed_block(DeviceBlock& block, Device device, int64_t floats) {
  if (block.empty() && floats > 0) {
    block = DeviceBlock(device, size_t(floats) * 4);
    zero_bytes(device, block.data(), block.bytes());
  }
  return block.as<float>();
}
}  // namespace

float* ParamStore::params() { return zeroed_block(params_, device_, table_.total()); }

float* ParamStore::grads() { return zeroed_block(grads_, device_, table_.total()); }

void ParamStore::zero_grads() {
  if (!grads_.empty()) zero_bytes(device_, grads_.data(), grads_.bytes());
}

void ParamStore::write(const ParamEntry& e, const float* host) {
  copy_bytes(device_, param(e.offset), Device::CPU, host, size_t(e.numel()) * 4);
}

void ParamStore::read(const ParamEntry& e, float* host, bool grad) {
  copy_bytes(Device::CPU, host, device_, grad ? this->grad(e.offset) : param(e.offset), size_t(e.numel()) * 4);
}

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace dbcore
