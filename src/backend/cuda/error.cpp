// CUDA / cuBLAS status codes -> glimpse::error naming the failing call (cuda/error.hpp).

#include "glimpse/backend/cuda/error.hpp"

#include <cstdlib>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "glimpse/core/error.hpp"

namespace glimpse::detail::cuda_impl {

namespace {
const char* base_name(const char* file) {
    // Paths relative to the repository where possible: from "src/" or "include/" on.
    for (const char* anchor : {"/src/", "/include/"})
        if (const char* p = std::strstr(file, anchor)) return p + 1;
    return file;
}

bool sync_check() {
    static const bool on = [] {
        const char* v = std::getenv("GLIMPSE_CUDA_SYNC_CHECK");
        return v && *v && std::strcmp(v, "0") != 0;
    }();
    return on;
}
}  // namespace

void check_cuda(int code, const char* call, const char* file, int line) {
    if (code == 0) return;
    const auto e = static_cast<cudaError_t>(code);
    (void)cudaGetLastError();  // clear a non-sticky error so the next call is not blamed for it
    fail(call, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") at ", base_name(file), ":", line);
}

void check_cublas(int status, const char* call, const char* file, int line) {
    if (status == 0) return;
    const auto s = static_cast<cublasStatus_t>(status);
    fail(call, " failed: ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ") at ", base_name(file), ":",
         line);
}

void check_launch(const char* kernel, const char* file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && sync_check()) e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
        fail("kernel ", kernel, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") launched at ",
             base_name(file), ":", line);
}

}  // namespace glimpse::detail::cuda_impl
