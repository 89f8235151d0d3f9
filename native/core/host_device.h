// DBCORE_HOST_DEVICE marks functions compiled for both the CPU and the GPU (index math, quantization, tiling) in
// headers that plain C++ and nvcc both include: __host__ __device__ under nvcc, nothing otherwise.
#pragma once

#ifdef __CUDACC__
#define DBCORE_HOST_DEVICE __host__ __device__
#else
#define DBCORE_HOST_DEVICE
#endif
