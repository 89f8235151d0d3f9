// backendInfo(): what this build of the addon contains and what it can use on this machine (`dbcore info`).
//   { version, compiler, cpu: { threads, simd, blas, blasCore },
//     cuda: { compiled, available, reason, name, computeCapability, totalMemory, freeMemory,
//             driverVersion, runtimeVersion } }
// Never throws for a missing driver or GPU: those are reported in cuda.reason.
#include <cblas.h>

#include "core/error.h"
#include "core/memory.h"
#include "core/parallel.h"
#include "js_tensor.h"
#include "registry.h"
#ifdef DBCORE_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef DBCORE_VERSION
#error "DBCORE_VERSION (the package version) must be defined by the build (CMakeLists.txt / binding.gyp)"
#endif

namespace dbcore::js {
namespace {

std::string compiler_name() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return format("MSVC %d", _MSC_FULL_VER);
#else
  return "unknown";
#endif
}

Napi::Object cpu_info(Napi::Env env) {
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("threads", num_threads());
  cpu.Set("simd", simd_clone());
  cpu.Set("blas", openblas_get_config());
  cpu.Set("blasCore", openblas_get_corename());
  return cpu;
}

#ifdef DBCORE_WITH_CUDA
// CUDA versions (1000 · major + 10 · minor) as "major.minor" strings, or null where there is nothing to report.
Napi::Value version_or_null(Napi::Env env, int v) {
  if (v <= 0) return env.Null();
  return Napi::String::New(env, format("%d.%d", v / 1000, (v % 1000) / 10));
}
#endif

Napi::Object cuda_info(Napi::Env env) {
  Napi::Object cuda = Napi::Object::New(env);
  Napi::Value null = env.Null();
#ifdef DBCORE_WITH_CUDA
  cuda::DeviceInfo d;
  try {
    d = cuda::query_device(0);
  } catch (const std::exception& e) {
    d.available = false;
    d.reason = std::string("querying the GPU failed: ") + e.what();
  }
  cuda.Set("compiled", true);
  cuda.Set("available", d.available);
  cuda.Set("reason", d.available ? null : Napi::String::New(env, d.reason));
  cuda.Set("name", d.name.empty() ? null : Napi::String::New(env, d.name));
  cuda.Set("computeCapability",
           d.compute_major ? Napi::String::New(env, format("%d.%d", d.compute_major, d.compute_minor)) : null);
  cuda.Set("totalMemory", d.available ? Napi::Number::New(env, static_cast<double>(d.total_memory)) : null);
  cuda.Set("freeMemory", d.available ? Napi::Number::New(env, static_cast<double>(d.free_memory)) : null);
  cuda.Set("driverVersion", version_or_null(env, d.driver_version));
  cuda.Set("runtimeVersion", version_or_null(env, d.runtime_version));
#else
  cuda.Set("compiled", false);
  cuda.Set("available", false);
  cuda.Set("reason", "this build of the dbcore addon has no CUDA backend (it was compiled without the CUDA toolkit)");
  for (const char* key : {"name", "computeCapability", "totalMemory", "freeMemory", "driverVersion", "runtimeVersion"})
    cuda.Set(key, null);
#endif
  return cuda;
}

}  // namespace

namespace {
Napi::Object counters_to_js(Napi::Env env, const MemoryCounters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("current", double(c.current));
  o.Set("peak", double(c.peak));
  return o;
}
}  // namespace

// memoryStats({resetPeak?}) → {cpu: {current, peak}, cuda: {current, peak}}: bytes dbcore itself holds on each
// device (parameter and gradient blocks, arenas, optimizer states, staging), and the most it held at once since
// the process started or the last reset (the CUDA peak is the allocator high-water mark `dbcore train` reports).
DBCORE_EXPORT(memoryStats) {
  Napi::Env env = info.Env();
  Napi::Object opts = object_arg(info, 0, "options", true);
  if (get_bool(opts, "resetPeak", false, "options")) {
    reset_memory_peak(Device::CPU);
    reset_memory_peak(Device::CUDA);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("cpu", counters_to_js(env, memory_counters(Device::CPU)));
  out.Set("cuda", counters_to_js(env, memory_counters(Device::CUDA)));
  return out;
}

DBCORE_EXPORT(backendInfo) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("version", DBCORE_VERSION);
  out.Set("compiler", compiler_name());
  out.Set("cpu", cpu_info(env));
  out.Set("cuda", cuda_info(env));
  return out;
}

}  // namespace dbcore::js
