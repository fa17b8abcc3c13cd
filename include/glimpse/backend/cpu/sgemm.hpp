#pragma once
// The cpu backend's f32 sgemm on raw row-major pointers, for the layouts and levels the packed
// kernels (cpu/packed_gemm.hpp) do not take: a CBLAS sgemm when the build found one
// (GLIMPSE_HAVE_CBLAS; OpenBLAS single-threaded on one slab per OpenMP thread, see
// openblas_serial), else, and inside our own parallel regions, Eigen's product.

#include <algorithm>
#include <cstdint>
#include <mutex>

#include <Eigen/Core>

#if defined(GLIMPSE_HAVE_CBLAS)
#include <cblas.h>
#endif

#include "glimpse/backend/cpu/row_loops.hpp"

namespace glimpse::detail::cpu_impl {

#if defined(GLIMPSE_HAVE_CBLAS)
inline void cblas_rm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
}
#endif

#if defined(GLIMPSE_HAVE_CBLAS) && defined(OPENBLAS_VERSION) && defined(_OPENMP)
// OpenBLAS's own threads (a pthreads pool) and ours (OpenMP) take turns on the same cores, and
// each pool spins for a while after its work: with OpenBLAS threading its GEMMs, the folded
// head path spent half its CPU time in the two pools' spin-waits (sched_yield and libgomp).
// So OpenBLAS runs single-threaded while this guard lives and the backend splits a GEMM over
// its own OpenMP threads. Counted, so nested and concurrent users restore the setting once.
class openblas_serial {
public:
    openblas_serial() {
        const std::lock_guard<std::mutex> lock(mu());
        if (depth()++ == 0) {
            saved() = openblas_get_num_threads();
            if (saved() != 1) openblas_set_num_threads(1);
        }
    }
    ~openblas_serial() {
        const std::lock_guard<std::mutex> lock(mu());
        if (--depth() == 0 && saved() != 1) openblas_set_num_threads(saved());
    }
    openblas_serial(const openblas_serial&) = delete;
    openblas_serial& operator=(const openblas_serial&) = delete;

private:
    static std::mutex& mu() {
        static std::mutex m;
        return m;
    }
    static int& depth() {
        static int d = 0;
        return d;
    }
    static int& saved() {
        static int s = 1;
        return s;
    }
};
#define GLIMPSE_CPU_SPLIT_BLAS 1
#endif

// Row-major sgemm on raw pointers: C = alpha op(A) op(B) + beta C.
inline void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
#if defined(GLIMPSE_CPU_SPLIT_BLAS)
    // Inside our own parallel regions Eigen (serial when nested) keeps to its thread.
    if (!in_parallel()) {
        const openblas_serial serial;
        const int nth = omp_get_max_threads();
        // Below ~1 ms of work a second thread costs more than it brings.
        if (nth < 2 || static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < 4.0e6) {
            cblas_rm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // Split the longer of M and N into one slab per thread, multiples of 16 (the kernels'
        // register-tile width), each slab a single-threaded BLAS call.
        const bool by_rows = m >= n;
        const std::int64_t len = by_rows ? m : n;
#pragma omp parallel num_threads(nth)
        {
            const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            const std::int64_t chunk = ((len + nt - 1) / nt + 15) / 16 * 16;
            const std::int64_t lo = std::min(len, t * chunk), hi = std::min(len, lo + chunk);
            if (hi > lo) {
                if (by_rows)
                    cblas_rm(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc,
                             ldc);
                else
                    cblas_rm(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
            }
        }
        return;
    }
#elif defined(GLIMPSE_HAVE_CBLAS)
    // BLAS threads itself; inside our own parallel regions Eigen (serial when
    // nested) avoids oversubscribing the cores.
    if (!in_parallel()) {
        cblas_rm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#endif
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using MapC = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
    Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
    auto run = [&](const auto& A, const auto& B) {
        if (beta == 0.0f)
            C.noalias() = alpha * (A * B);
        else {
            C *= beta;
            C.noalias() += alpha * (A * B);
        }
    };
    const MapC Araw(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
    const MapC Braw(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
    if (!ta && !tb)
        run(Araw, Braw);
    else if (!ta && tb)
        run(Araw, Braw.transpose());
    else if (ta && !tb)
        run(Araw.transpose(), Braw);
    else
        run(Araw.transpose(), Braw.transpose());
}

}  // namespace glimpse::detail::cpu_impl
