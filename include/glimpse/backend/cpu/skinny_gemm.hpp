#pragma once
// The cpu backend's f32 GEMM for few rows of op(A) (m <= kMaxRows) on AVX-512, without packing:
// C [m, n] = alpha op(A) op(B) + beta C (+ bias [n]), op(A) and op(B) read where they lie.
//
// Why: packing op(B) (cpu/packed_gemm.hpp) pays off when each packed panel feeds many row tiles.
// With a handful of rows (the heatmap head's folded path: U values x H heads = 32 rows against
// S x D features; its output projections at m = U = 2; a decoder's step) packing costs a read and
// a write of all of op(B) for little reuse, and op(B) is the whole of the traffic. Measured at
// m = 32, n = 16384, k = 1280 (folded P = G X^T): packed 120 GFLOP/s, these kernels ~3x that.
//
// Two layouts, both read op(B) once from memory:
//   dot   A [m, K] rows, B [N, K] rows (a Linear's layout; B f32 or bf16): C[i, j] = A_i . B_j,
//         a kDotRows x kDotCols block of dot products in zmm accumulators, each reduced at the
//         end. The kDotCols rows of B stay in L1 while every row block of A (L2) passes them.
//   axpy  A [m, K] rows, B [K, N] rows (f32): C[i, :] += A[i, k] B[k, :], 6 rows x 64 columns of
//         C in registers per K block of kAxpyKc, the K block of B (32 KiB) in L1 for all rows.
// Summation order differs from the packed kernels (dot: 16 lane sums, then a tree), within f32
// rounding of the same products.

#include <algorithm>
#include <cstdint>

#include "glimpse/backend/cpu/gemm_operand.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)

namespace glimpse::detail::cpu_impl::skinny {

// At most this many rows of op(A) take these kernels (above, packing op(B) is repaid).
inline constexpr std::int64_t kMaxRows = 48;
inline constexpr int kDotRows = 4, kDotCols = 6;  // 24 accumulators + 6 B + 1 A registers
inline constexpr int kAxpyRows = 6;
inline constexpr std::int64_t kAxpyCols = 64, kAxpyKc = 128;

#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"

// 16 values of a B row from k (the first `valid` of them; the rest 0), as f32.
template <bool Bf16>
GLIMPSE_AVX512_TARGET inline __attribute__((always_inline)) __m512 load_b(const void* row, std::int64_t k,
                                                                          __mmask16 valid) {
    if constexpr (Bf16) {
        const __m256i h = _mm256_maskz_loadu_epi16(valid, static_cast<const std::uint16_t*>(row) + k);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
        return _mm512_maskz_loadu_ps(valid, static_cast<const float*>(row) + k);
    }
}

// acc[i][j] += the 16 products of A_i and B_j from kk (the `valid` ones).
template <int R, int C, bool Bf16>
GLIMPSE_AVX512_TARGET inline __attribute__((always_inline)) void dot_step(__m512 (&acc)[R][C], const float* a,
                                                                          std::int64_t lda, const unsigned char* b,
                                                                          std::int64_t ldb_bytes, std::int64_t kk,
                                                                          __mmask16 valid) {
    __m512 bv[C];
#pragma GCC unroll 6
    for (int j = 0; j < C; ++j) bv[j] = load_b<Bf16>(b + j * ldb_bytes, kk, valid);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
        const __m512 av = _mm512_maskz_loadu_ps(valid, a + i * lda + kk);
#pragma GCC unroll 6
        for (int j = 0; j < C; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
}

// C[i, j] (i < R, j < C) = alpha A_i . B_j + beta C[i, j] (+ bias[j]); A rows of k f32 (stride
// lda), B rows of k f32 or bf16 (stride ldb, in elements).
template <int R, int C, bool Bf16>
GLIMPSE_AVX512_TARGET void dot_tile(const float* a, std::int64_t lda, const void* b, std::int64_t ldb, std::int64_t k,
                                    float* c, std::int64_t ldc, float alpha, float beta, const float* bias) {
    const std::int64_t ldb_bytes = ldb * (Bf16 ? 2 : 4);
    const auto* bb = static_cast<const unsigned char*>(b);
    __m512 acc[R][C];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 6
        for (int j = 0; j < C; ++j) acc[i][j] = _mm512_setzero_ps();
    std::int64_t kk = 0;
    for (; kk + 16 <= k; kk += 16) dot_step<R, C, Bf16>(acc, a, lda, bb, ldb_bytes, kk, 0xffff);
    if (kk < k) dot_step<R, C, Bf16>(acc, a, lda, bb, ldb_bytes, kk, static_cast<__mmask16>((1u << (k - kk)) - 1u));
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 6
        for (int j = 0; j < C; ++j) {
            float v = alpha * _mm512_reduce_add_ps(acc[i][j]);
            if (beta != 0.0f) v += beta * c[i * ldc + j];
            if (bias) v += bias[j];
            c[i * ldc + j] = v;
        }
}

template <bool Bf16>
using dot_fn = void (*)(const float*, std::int64_t, const void*, std::int64_t, std::int64_t, float*, std::int64_t,
                        float, float, const float*);

// The tile for r <= kDotRows rows and c <= kDotCols columns.
template <bool Bf16>
inline dot_fn<Bf16> dot_tile_for(int r, int c) {
    static constexpr dot_fn<Bf16> table[kDotRows][kDotCols] = {
        {dot_tile<1, 1, Bf16>, dot_tile<1, 2, Bf16>, dot_tile<1, 3, Bf16>, dot_tile<1, 4, Bf16>, dot_tile<1, 5, Bf16>,
         dot_tile<1, 6, Bf16>},
        {dot_tile<2, 1, Bf16>, dot_tile<2, 2, Bf16>, dot_tile<2, 3, Bf16>, dot_tile<2, 4, Bf16>, dot_tile<2, 5, Bf16>,
         dot_tile<2, 6, Bf16>},
        {dot_tile<3, 1, Bf16>, dot_tile<3, 2, Bf16>, dot_tile<3, 3, Bf16>, dot_tile<3, 4, Bf16>, dot_tile<3, 5, Bf16>,
         dot_tile<3, 6, Bf16>},
        {dot_tile<4, 1, Bf16>, dot_tile<4, 2, Bf16>, dot_tile<4, 3, Bf16>, dot_tile<4, 4, Bf16>, dot_tile<4, 5, Bf16>,
         dot_tile<4, 6, Bf16>},
    };
    return table[r - 1][c - 1];
}

// 6 x 64 tile of C (the valid mr x nr part) += A[:, k0 .. k0 + ks) B[k0 .. k0 + ks, :], stored as
// alpha acc + beta_here C (+ bias); A rows f32 (stride lda), B rows f32 (stride ldb), both already
// offset to (row, k0) and (k0, column).
GLIMPSE_AVX512_TARGET inline void axpy_tile(const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                                            std::int64_t ks, float* c, std::int64_t ldc, std::int64_t mr,
                                            std::int64_t nr, float alpha, float beta_here, const float* bias) {
    __mmask16 mask[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
        const std::int64_t cols = nr - 16 * q;
        mask[q] = cols >= 16 ? __mmask16(0xffff) : cols <= 0 ? __mmask16(0) : __mmask16((1u << cols) - 1u);
    }
    __m512 acc[kAxpyRows][4];
#pragma GCC unroll 6
    for (int r = 0; r < kAxpyRows; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
    // Rows past mr read row 0 again (harmless, never stored): no branch in the loop.
    const float* ar[kAxpyRows];
#pragma GCC unroll 6
    for (int r = 0; r < kAxpyRows; ++r) ar[r] = a + (r < mr ? r : 0) * lda;
    for (std::int64_t s = 0; s < ks; ++s, b += ldb) {
        const __m512 b0 = _mm512_maskz_loadu_ps(mask[0], b), b1 = _mm512_maskz_loadu_ps(mask[1], b + 16);
        const __m512 b2 = _mm512_maskz_loadu_ps(mask[2], b + 32), b3 = _mm512_maskz_loadu_ps(mask[3], b + 48);
#pragma GCC unroll 6
        for (int r = 0; r < kAxpyRows; ++r) {
            const __m512 x = _mm512_set1_ps(ar[r][s]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(x, b3, acc[r][3]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta_here);
#pragma GCC unroll 6
    for (int r = 0; r < kAxpyRows; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
            if (r >= mr || mask[q] == 0) continue;
            float* p = c + r * ldc + 16 * q;
            __m512 v = _mm512_mul_ps(va, acc[r][q]);
            if (beta_here != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[q], p), v);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[q], bias + 16 * q));
            _mm512_mask_storeu_ps(p, mask[q], v);
        }
}

#pragma GCC diagnostic pop

// C = alpha A B^T + beta C (+ bias): A [m, k] f32 rows (lda), B [n, k] rows f32 or bf16 (ldb).
inline void dot(const float* a, std::int64_t lda, const std::byte* b, dtype bt, std::int64_t ldb, std::int64_t m,
                std::int64_t n, std::int64_t k, float alpha, float beta, float* c, std::int64_t ldc,
                const float* bias) {
    const bool bf16 = bt == dtype::bf16;
    const std::int64_t bsz = bf16 ? 2 : 4, blocks = (n + kDotCols - 1) / kDotCols;
    const int nth = gemm_threads(m, n, k);
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (std::int64_t jb = 0; jb < blocks; ++jb) {
        const std::int64_t j0 = jb * kDotCols;
        const int cols = static_cast<int>(std::min<std::int64_t>(kDotCols, n - j0));
        const std::byte* brow = b + j0 * ldb * bsz;
        for (std::int64_t i0 = 0; i0 < m; i0 += kDotRows) {
            const int rows = static_cast<int>(std::min<std::int64_t>(kDotRows, m - i0));
            float* cc = c + i0 * ldc + j0;
            const float* bias_here = bias ? bias + j0 : nullptr;
            if (bf16)
                dot_tile_for<true>(rows, cols)(a + i0 * lda, lda, brow, ldb, k, cc, ldc, alpha, beta, bias_here);
            else
                dot_tile_for<false>(rows, cols)(a + i0 * lda, lda, brow, ldb, k, cc, ldc, alpha, beta, bias_here);
        }
    }
}

// C = alpha A B + beta C (+ bias): A [m, k] f32 rows (lda), B [k, n] f32 rows (ldb).
inline void axpy(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t m, std::int64_t n,
                 std::int64_t k, float alpha, float beta, float* c, std::int64_t ldc, const float* bias) {
    const std::int64_t panels = (n + kAxpyCols - 1) / kAxpyCols;
    const int nth = gemm_threads(m, n, k);
    // Each thread owns a range of C's column panels and walks K once for all of them, a K block at
    // a time: B is read once, each of its rows as one run of the thread's columns (a panel at a
    // time down all of K read 256-byte pieces 4 KiB apart: 35 % slower from memory), and the
    // thread's C (m x its columns) stays in L2 across the K blocks.
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        std::int64_t t = 0, nt = 1;
#if defined(_OPENMP)
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const std::int64_t p0 = panels * t / nt, p1 = panels * (t + 1) / nt;
        for (std::int64_t k0 = 0; k0 < k; k0 += kAxpyKc) {
            const std::int64_t ks = std::min(kAxpyKc, k - k0);
            const float beta_here = k0 == 0 ? beta : 1.0f;  // later K blocks add onto C
            for (std::int64_t p = p0; p < p1; ++p) {
                const std::int64_t j0 = p * kAxpyCols, cols = std::min(kAxpyCols, n - j0);
                const float* bias_here = k0 == 0 && bias ? bias + j0 : nullptr;
                // alpha applies per K block: alpha (sum of blocks) = sum of alpha (block).
                for (std::int64_t i0 = 0; i0 < m; i0 += kAxpyRows)
                    axpy_tile(a + i0 * lda + k0, lda, b + k0 * ldb + j0, ldb, ks, c + i0 * ldc + j0, ldc,
                              std::min<std::int64_t>(kAxpyRows, m - i0), cols, alpha, beta_here, bias_here);
            }
        }
    }
}

}  // namespace glimpse::detail::cpu_impl::skinny

#endif
