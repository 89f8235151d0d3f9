#include "parallel.h"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <thread>

namespace dbcore {

namespace {
std::atomic<int> g_threads{0};  // read by worker threads
}

void set_num_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

void use_num_threads_here() {
  const int n = g_threads.load();
  if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
}

int threads_here() { return omp_get_max_threads(); }

int num_threads() {
  const int n = g_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

// The same preprocessor conditions as DBCORE_SIMD_CLONES in parallel.h, and the loader's test for each clone.
const char* simd_clone() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
  __builtin_cpu_init();
#if defined(__clang__) || __GNUC__ < 12
  return __builtin_cpu_supports("avx2") ? "avx2" : "baseline";
#else
  return __builtin_cpu_supports("x86-64-v3") ? "x86-64-v3 (AVX2, FMA)" : "baseline";
#endif
#else
  return "baseline";
#endif
}

}  // namespace dbcore
