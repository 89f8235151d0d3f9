// The inputs and outputs of one call on a network's device. On the CPU they are the JS buffers themselves (zero
// copy); on CUDA each input gets a buffer in the staging arena, filled when the work starts, and each output a
// buffer copied back into its JS tensor when the work ends (both on the worker thread, inside the work).
#pragma once
#include <functional>
#include <vector>

#include "core/arena.h"

namespace dbcore::js {

class Staging {
 public:
  explicit Staging(Device device) : arena_(device) {}
  // Starts a call: buffers staged before are released (callers only do this while no work reads them).
  void begin() {
    arena_.reset();
    uploads_.clear();
    downloads_.clear();
  }
  template <typename T>
  const T* input(const T* host, int64_t n) {
    return static_cast<const T*>(stage(uploads_, const_cast<T*>(host), size_t(n) * sizeof(T)));
  }
  template <typename T>
  T* output(T* host, int64_t n) {
    return static_cast<T*>(stage(downloads_, host, size_t(n) * sizeof(T)));
  }
  // The work of a call: the inputs copied in, `run`, the outputs copied back. The Staging must outlive the work
  // (it belongs to the network object, which stays busy until the work settles).
  std::function<void()> around(std::function<void()> run) const {
    return [this, run = std::move(run)]() {
      for (const Copy& c : uploads_) copy_bytes(arena_.device(), c.device, Device::CPU, c.host, c.bytes);
      run();
      for (const Copy& c : downloads_) copy_bytes(Device::CPU, c.host, arena_.device(), c.device, c.bytes);
    };
  }

 private:
  struct Copy {
    void* device;
    void* host;
    size_t bytes;
  };
  void* stage(std::vector<Copy>& list, void* host, size_t bytes) {
    if (arena_.device() == Device::CPU || !host) return host;
    void* d = arena_.alloc_bytes(bytes);
    list.push_back({d, host, bytes});
    return d;
  }
  Arena arena_;
  std::vector<Copy> uploads_, downloads_;
};

}  // namespace dbcore::js
