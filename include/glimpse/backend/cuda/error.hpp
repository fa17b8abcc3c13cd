#pragma once
// Every CUDA runtime and cuBLAS call of the cuda backend goes through one of these checks,
// which turn a failure into a glimpse::error naming the call, the code, the CUDA message,
// and the source line: "cudaMalloc(&p, bytes) failed: cudaErrorMemoryAllocation (out of
// memory) at src/backend/cuda/arena.cpp:41".
//
// The codes are passed as plain ints so this header needs no CUDA headers (plain C++
// translation units include it); the checks are defined in src/backend/cuda/error.cpp.
// A kernel launch is checked with GLIMPSE_CUDA_CHECK_LAUNCH(name): cudaGetLastError, and
// under GLIMPSE_CUDA_SYNC_CHECK=1 in the environment also a synchronize (so an illegal
// address is reported at the kernel that caused it, as compute-sanitizer would).

namespace glimpse::detail::cuda_impl {

// Throws glimpse::error when code != 0 (cudaSuccess / CUBLAS_STATUS_SUCCESS).
void check_cuda(int code, const char* call, const char* file, int line);
void check_cublas(int status, const char* call, const char* file, int line);
// After a kernel launch: the launch error, and (GLIMPSE_CUDA_SYNC_CHECK=1) the execution error.
void check_launch(const char* kernel, const char* file, int line);

}  // namespace glimpse::detail::cuda_impl

#define GLIMPSE_CUDA_CHECK(call) \
    ::glimpse::detail::cuda_impl::check_cuda(static_cast<int>(call), #call, __FILE__, __LINE__)
#define GLIMPSE_CUBLAS_CHECK(call) \
    ::glimpse::detail::cuda_impl::check_cublas(static_cast<int>(call), #call, __FILE__, __LINE__)
#define GLIMPSE_CUDA_CHECK_LAUNCH(kernel) ::glimpse::detail::cuda_impl::check_launch(kernel, __FILE__, __LINE__)
