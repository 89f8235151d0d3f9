// Threading and vector-ISA helpers shared by the CPU kernels.
#pragma once
#include <cstdint>

namespace dbcore {

// Sets the thread count used by OpenMP loops and by OpenBLAS (n <= 0: all cores).
void set_num_threads(int n);
int num_threads();
// OpenMP's thread count is a per-thread setting: a thread that did not call set_num_threads (a libuv worker
// running async work) starts with the default (all cores). Applies the count set last to the calling thread.
void use_num_threads_here();
// The number of threads an OpenMP region started by the calling thread would use.
int threads_here();

// The kernel clone DBCORE_SIMD_CLONES functions run on this CPU: "x86-64-v3 (AVX2, FMA)", "avx2" (compilers
// that clone on plain AVX2) or "baseline" (no clone matched, or a build without clones). Mirrors the macro below.
const char* simd_clone();

}  // namespace dbcore

// Hot loops are compiled twice, for the x86-64 baseline and for AVX2+FMA, and the loader picks the clone the
// CPU supports (GCC/Clang function multiversioning). Elsewhere the macro is empty and the baseline is used.
// The clone is named by ISA level, not by CPU: "arch=haswell" dispatches on __builtin_cpu_is("haswell"), so every
// AMD and every later Intel CPU got the baseline. GCC 12 dispatches "arch=x86-64-v3" (AVX2, FMA, …) on features;
// older compilers get plain "avx2" (no FMA contraction, still 8-wide).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#if defined(__clang__) || __GNUC__ < 12
#define DBCORE_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DBCORE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#else
#define DBCORE_SIMD_CLONES
#endif
