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

}  // namespace dbcore
