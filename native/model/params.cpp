#include "params.h"

#include <algorithm>

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

ParamStore::ParamStore(ParamTable table) : table_(std::move(table)) {}

float* ParamStore::params() {
  if (params_.empty() && table_.total() > 0) params_.assign(table_.total(), 0.f);
  return params_.data();
}

float* ParamStore::grads() {
  if (grads_.empty()) grads_.assign(table_.total(), 0.f);
  return grads_.data();
}

void ParamStore::zero_grads() {
  if (!grads_.empty()) std::fill(grads_.begin(), grads_.end(), 0.f);
}

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace dbcore
