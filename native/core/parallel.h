// Threading and vector-ISA helpers shared by the CPU kernels.
#pragma once
#include <cstdint>

namespace dbcore {

// Sets the thread count used by OpenMP loops and by OpenBLAS (n <= 0: all cores).
void set_num_threads(int n);
int num_threads();

}  // namespace dbcore

// Hot loops are compiled twice, for the x86-64 baseline and for AVX2+FMA, and the loader picks the clone the
// CPU supports (GCC/Clang function multiversioning). Elsewhere the macro is empty and the baseline is used.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(_WIN32)
#define DBCORE_SIMD_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define DBCORE_SIMD_CLONES
#endif
