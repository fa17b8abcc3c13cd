#pragma once
// glimpse::cpu — the fast CPU backend: Eigen for the math, OpenMP across rows,
// heads and query tiles, and (when the build found one, GLIMPSE_HAVE_CBLAS) a
// CBLAS sgemm for the large projection GEMMs, which measured ~12 % faster than
// Eigen's own GEMM on the AVX-512 machines we target (docs/benchmarks.md); with
// OpenBLAS it runs single-threaded on one slab per OpenMP thread (openblas_serial).
//
// Storage dtypes of weights are honoured without keeping f32 copies: a bf16/f16
// operand of gemm is widened one panel of `kPanel` rows at a time into a
// per-call scratch, so memory stays at the bf16 size while the math is f32.
//
// set_matmul_precision(matmul_precision::bf16) rounds gemm inputs to bf16 and runs them on
// AMX tiles where the CPU has them (cpu/bf16_gemm.hpp), on an emulation elsewhere.
//
// Attention is a fused, flash-style kernel (detail::cpu_impl::attn_tiles): a tile
// of kTileQ queries of one head walks its keys in blocks with an online softmax,
// in its own SIMD micro-kernels rather than GEMM calls (a 64 x 80 x S product is
// too thin for a BLAS to reach its rate, and the score tile must stay in L1).
// Scratch is O(kPackBytes + threads * kTileQ * d) without maps; the maps a caller
// asks for are accumulated tile by tile from O(threads * kTileQ * S) of kept
// probabilities, and no H x S x S tensor exists unless `maps.per_head` asks.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#if defined(GLIMPSE_HAVE_CBLAS)
#include <cblas.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "glimpse/backend/cpu/bf16_gemm.hpp"
#include "glimpse/backend/host_memory.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse {

namespace detail::cpu_impl {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapC = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using MapM = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using ArrMap = Eigen::Map<Eigen::ArrayXf>;
using ArrMapC = Eigen::Map<const Eigen::ArrayXf>;

inline bool in_parallel() {
#if defined(_OPENMP)
    return omp_in_parallel() != 0;
#else
    return true;
#endif
}

#if defined(GLIMPSE_HAVE_CBLAS)
inline void cblas_rm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                     std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
                c, static_cast<int>(ldc));
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
                    cblas_rm(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
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
    MapM C(c, m, n, Eigen::OuterStride<>(ldc));
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
    if (!ta && !tb) run(Araw, Braw);
    else if (!ta && tb) run(Araw, Braw.transpose());
    else if (ta && !tb) run(Araw.transpose(), Braw);
    else run(Araw.transpose(), Braw.transpose());
}

// Widen n elements of one contiguous row of dtype t to f32.
inline void widen_row(const std::byte* row, dtype t, std::int64_t n, float* o) {
    switch (t) {
        case dtype::f32: std::memcpy(o, row, static_cast<std::size_t>(n) * sizeof(float)); return;
        case dtype::bf16: {
            const auto* p = reinterpret_cast<const bf16_t*>(row);
            for (std::int64_t j = 0; j < n; ++j) o[j] = to_f32(p[j]);
            return;
        }
        case dtype::f16: {
            const auto* p = reinterpret_cast<const f16_t*>(row);
            for (std::int64_t j = 0; j < n; ++j) o[j] = to_f32(p[j]);
            return;
        }
    }
}

// Widen rows [r0, r1) x cols [c0, c1) of a 2-D view (or a 1-D one, r1 = 1) to a dense f32 buffer.
inline void widen(const cview& v, std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1, float* out) {
    const std::int64_t ld = v.rank() == 1 ? 0 : v.stride(0);
    for (std::int64_t i = r0; i < r1; ++i)
        widen_row(v.data() + (i * ld + c0) * static_cast<std::int64_t>(itemsize(v.type())), v.type(), c1 - c0,
                  out + (i - r0) * (c1 - c0));
}

template <class F>
void parallel_rows(std::int64_t n, std::int64_t work_per_row, F&& f) {
    // Small problems are not worth waking the team for.
    const bool par = n > 1 && n * work_per_row > 32768;
#pragma omp parallel for schedule(static) if (par)
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

// A 2-D [M, N] view of x with unit inner stride whose rows are its leading dims.
inline bool rows_view(const cview& x, std::int64_t& m, std::int64_t& n, std::int64_t& ld) {
    if (x.rank() == 0 || x.stride(-1) != 1) return false;
    n = x.size(-1);
    m = n == 0 ? 0 : x.numel() / n;
    if (x.rank() == 1) {
        ld = n;
        return true;
    }
    // Leading dims must collapse into one row index with a single stride.
    ld = x.stride(-2);
    for (int i = x.rank() - 3; i >= 0; --i)
        if (x.stride(i) != x.stride(i + 1) * x.size(i + 1)) return false;
    return true;
}


// ---- fused attention ----------------------------------------------------------------------
// Flash-style: a tile of kTq queries of one head walks the keys in blocks of kBk with an
// online softmax, so the scores stay in L1 and no Sq x Sk row is stored unless maps are
// asked for. Queries lie in SIMD lanes and scores are kept transposed (keys x queries): the
// per-query max and sum are lane-wise, and K and V are read as broadcasts, so neither needs a
// transposed copy. Written with GCC/Clang vector extensions, so the same code is built, and
// tested, at any x86-64 level (the dev preset's SSE2 included); -march=native gives AVX-512.
#if defined(__AVX512F__)
inline constexpr int kLanes = 16;
#elif defined(__AVX__)
inline constexpr int kLanes = 8;
#else
inline constexpr int kLanes = 4;
#endif
typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef std::int32_t vint __attribute__((vector_size(kLanes * sizeof(float))));

// Register tiles: kQv vectors of queries by kMr keys (scores) or kMr value columns (output).
// 6 x 4 accumulators + 4 operands + 1 broadcast fill AVX-512's 32 registers (measured at ~90 %
// of the FMA peak when hot in L1); the 16-register ISAs get 2 x 4.
inline constexpr int kQv = 4;
inline constexpr std::int64_t kTq = kQv * kLanes;  // queries per tile
inline constexpr int kMr = kLanes == 16 ? 6 : 2;
// Keys per block: the kBk x kTq score block (32 KiB with AVX-512) is written, exponentiated
// and read back by the value product while in L1/L2. 32..256 measured within noise of
// each other on the AVX-512 machines.
inline constexpr std::int64_t kBk = 128;
// Budget for the per-call packed copies of Q, K, V (heads are packed a group at a time).
inline constexpr std::int64_t kPackBytes = std::int64_t{16} << 20;

#define GLIMPSE_CPU_INLINE inline __attribute__((always_inline))

GLIMPSE_CPU_INLINE vfloat vload(const float* p) {
    vfloat v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
GLIMPSE_CPU_INLINE void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
GLIMPSE_CPU_INLINE vfloat vsplat(float x) {
    // Not `vfloat{} + x`: 0 + x is not folded (signed zeros), which costs an add and a
    // register shuffle per broadcast in the inner loops; set1 is one broadcast load.
#if defined(__AVX512F__)
    return _mm512_set1_ps(x);
#elif defined(__AVX__)
    return _mm256_set1_ps(x);
#else
    vfloat v;
    for (int i = 0; i < kLanes; ++i) v[i] = x;
    return v;
#endif
}
GLIMPSE_CPU_INLINE vfloat vfma(vfloat a, vfloat b, vfloat c) {
    // Explicit: under -std=c++20 (not gnu++20) GCC does not contract a * b + c.
#if defined(__AVX512F__)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__AVX__) && defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
}
GLIMPSE_CPU_INLINE vfloat vselect(vint mask, vfloat a, vfloat b) {
    return reinterpret_cast<vfloat>((reinterpret_cast<vint>(a) & mask) | (reinterpret_cast<vint>(b) & ~mask));
}
// NaN in a propagates (the comparison is false).
GLIMPSE_CPU_INLINE vfloat vmax(vfloat a, vfloat b) { return vselect(a < b, b, a); }

// 2^x for x in [-inf, 127]; -inf and anything below -127 give 0, NaN stays NaN.
// x = n + f with n = round(x), |f| <= 1/2; 2^f by Cephes' exp2f polynomial (rel. error
// 1.7e-7), 2^n by writing the exponent field, which is 0 (a 0 result) at n = -127.
GLIMPSE_CPU_INLINE vfloat vexp2(vfloat x) {
    const vfloat lo = vsplat(-127.0f);
    x = vselect(x < lo, lo, x);
    const vfloat magic = vsplat(12582912.0f);  // 1.5 * 2^23: x + magic rounds x to an integer
    const vfloat t = x + magic;
    const vfloat f = x - (t - magic);
    vfloat p = vsplat(1.535336188319500e-4f);
    p = vfma(p, f, vsplat(1.339887440266574e-3f));
    p = vfma(p, f, vsplat(9.618437357674640e-3f));
    p = vfma(p, f, vsplat(5.550332471162809e-2f));
    p = vfma(p, f, vsplat(2.402264791363012e-1f));
    p = vfma(p, f, vsplat(6.931472028550421e-1f));
    p = vfma(p, f, vsplat(1.0f));
    const vint e = (reinterpret_cast<vint>(t) - reinterpret_cast<vint>(magic) + 127) << 23;
    return p * reinterpret_cast<vfloat>(e);
}

GLIMPSE_CPU_INLINE float hsum(vfloat v) {
    float s = 0.0f;
    for (int i = 0; i < kLanes; ++i) s += v[i];
    return s;
}

// st[r, :] = sum_c k[r, c] qt[c, :] for M keys (their scores against the tile's queries), and
// mx = max(mx, those scores), so the softmax needs no separate pass for its max.
template <int M>
GLIMPSE_CPU_INLINE void qk_rows(const float* k, std::int64_t ldk, std::int64_t d, const float* qt, float* st,
                                vfloat* mx) {
    vfloat acc[M][kQv];
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) acc[r][j] = vfloat{};
    for (std::int64_t c = 0; c < d; ++c) {
        vfloat q[kQv];
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) q[j] = vload(qt + c * kTq + j * kLanes);
#pragma GCC unroll 16
        for (int r = 0; r < M; ++r) {
            const vfloat kb = vsplat(k[r * ldk + c]);
#pragma GCC unroll 4
            for (int j = 0; j < kQv; ++j) acc[r][j] = vfma(kb, q[j], acc[r][j]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) {
            vstore(st + r * kTq + j * kLanes, acc[r][j]);
            mx[j] = vmax(mx[j], acc[r][j]);
        }
}

// ot[m, :] += sum_r v[r, m] st[r, :] for M value columns (the tile's output, transposed).
template <int M>
GLIMPSE_CPU_INLINE void pv_cols(const float* st, std::int64_t nk, const float* v, std::int64_t ldv, float* ot) {
    vfloat acc[M][kQv];
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) acc[m][j] = vload(ot + m * kTq + j * kLanes);
    for (std::int64_t r = 0; r < nk; ++r) {
        vfloat p[kQv];
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) p[j] = vload(st + r * kTq + j * kLanes);
#pragma GCC unroll 16
        for (int m = 0; m < M; ++m) {
            const vfloat vb = vsplat(v[r * ldv + m]);
#pragma GCC unroll 4
            for (int j = 0; j < kQv; ++j) acc[m][j] = vfma(vb, p[j], acc[m][j]);
        }
    }
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m)
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) vstore(ot + m * kTq + j * kLanes, acc[m][j]);
}

// f.template operator()<M>() for the remainder 0 < m < kMr, known only at run time.
template <class F>
GLIMPSE_CPU_INLINE void with_rows(std::int64_t m, F&& f) {
    [&]<int... I>(std::integer_sequence<int, I...>) {
        (void)((m == I + 1 && (f.template operator()<I + 1>(), true)) || ...);
    }(std::make_integer_sequence<int, kMr - 1>{});
}

// The problem of one attention call: f32, unit inner strides, strides in elements.
struct attn_problem {
    const float *q, *k, *v;
    float* o;
    std::int64_t q_ld, q_hs, k_ld, k_hs, v_ld, v_hs, o_ld, o_hs;
    std::int64_t d, dv;
    float scale2;  // scale * log2(e): the softmax is taken in base 2
    const float* mask;
    std::int64_t mask_ld;
};

// One query tile (at most kTq queries) in flight: its packed Q^T, output accumulator (O^T),
// score / probability buffer and online-softmax state. One per sub-tile per thread.
struct tile_state {
    std::vector<float> qt, ot, st, fac;
    std::vector<float> mean;  // the head-mean map of the tile's queries so far, [keys, kTq]
    vfloat m[kQv], l[kQv];
    std::int64_t q0 = 0, q1 = 0;
    tile_state(const attn_problem& p, std::int64_t max_keys, bool maps, bool mean_map)
        : qt(static_cast<std::size_t>(p.d * kTq)), ot(static_cast<std::size_t>(p.dv * kTq)),
          st(static_cast<std::size_t>((maps ? std::max<std::int64_t>(max_keys, kBk) : kBk) * kTq)),
          fac(maps ? static_cast<std::size_t>((max_keys + kBk - 1) / kBk * kTq) : 0),
          mean(mean_map ? static_cast<std::size_t>(max_keys * kTq) : 0) {}
};

// One head's queries, keys and values: rows of d (dv) floats, ld apart.
struct head_rows {
    const float* q;
    std::int64_t ldq;
    const float* k;
    std::int64_t ldk;
    const float* v;
    std::int64_t ldv;
};

// Starts queries [q0, q1) of head rows hr.
inline void tile_begin(const attn_problem& p, const head_rows& hr, std::int64_t q0, std::int64_t q1, tile_state& s) {
    s.q0 = q0;
    s.q1 = q1;
    // Q^T, pre-scaled; padding lanes stay 0 (their scores are harmless and never written out).
    if (q1 - q0 < kTq) std::fill(s.qt.begin(), s.qt.end(), 0.0f);
    for (std::int64_t i = 0; i < q1 - q0; ++i)
        for (std::int64_t c = 0; c < p.d; ++c) s.qt[static_cast<std::size_t>(c * kTq + i)] = hr.q[(q0 + i) * hr.ldq + c] * p.scale2;
    std::fill(s.ot.begin(), s.ot.end(), 0.0f);
    for (int j = 0; j < kQv; ++j) s.m[j] = vsplat(-INFINITY), s.l[j] = vfloat{};
}

// Adds keys [k0 + kb, k0 + kb + nb) (at most kBk); kr and vr are their first rows (ldk, ldv
// apart). With `keep_probs` the block's probabilities stay in s.st at row kb (see tile_end).
inline void tile_block(const attn_problem& p, const float* kr, std::int64_t ldk, const float* vr, std::int64_t ldv,
                       std::int64_t k0, std::int64_t kb, std::int64_t nb, bool keep_probs, tile_state& s) {
    const std::int64_t d = p.d, dv = p.dv, tq = s.q1 - s.q0;
    const vfloat ninf = vsplat(-INFINITY);
    float* st = keep_probs ? s.st.data() + kb * kTq : s.st.data();
    float* ot = s.ot.data();
    vfloat mx[kQv];
    for (int j = 0; j < kQv; ++j) mx[j] = s.m[j];
    std::int64_t r = 0;
    for (; r + kMr <= nb; r += kMr) qk_rows<kMr>(kr + r * ldk, ldk, d, s.qt.data(), st + r * kTq, mx);
    with_rows(nb - r, [&]<int M>() { qk_rows<M>(kr + r * ldk, ldk, d, s.qt.data(), st + r * kTq, mx); });
    if (p.mask) {
        constexpr float log2e = 1.4426950408889634f;
        for (std::int64_t i = 0; i < tq; ++i) {
            const float* mr = p.mask + (s.q0 + i) * p.mask_ld + k0 + kb;
            for (std::int64_t t = 0; t < nb; ++t) st[t * kTq + i] += mr[t] * log2e;
        }
        for (int j = 0; j < kQv; ++j) mx[j] = s.m[j];
        for (std::int64_t t = 0; t < nb; ++t)
            for (int j = 0; j < kQv; ++j) mx[j] = vmax(mx[j], vload(st + t * kTq + j * kLanes));
    }
    // Online softmax: the new running max, what was summed so far rescaled, the block
    // exponentiated.
    vfloat ms[kQv], alpha[kQv], sum[kQv];
    bool rescale = false;
    for (int j = 0; j < kQv; ++j) {
        // A query masked out so far (max -inf) exponentiates against 0: its terms are 0.
        ms[j] = vselect(mx[j] == ninf, vfloat{}, mx[j]);
        alpha[j] = vexp2(s.m[j] - ms[j]);
        for (int i = 0; i < kLanes; ++i) rescale |= kb > 0 && s.m[j][i] != mx[j][i];
        s.m[j] = mx[j];
        sum[j] = vfloat{};
    }
    for (std::int64_t t = 0; t < nb; ++t)
#pragma GCC unroll 4
        for (int j = 0; j < kQv; ++j) {
            const vfloat e = vexp2(vload(st + t * kTq + j * kLanes) - ms[j]);
            vstore(st + t * kTq + j * kLanes, e);
            sum[j] += e;
        }
    for (int j = 0; j < kQv; ++j) s.l[j] = s.l[j] * alpha[j] + sum[j];
    if (rescale)
        for (std::int64_t c = 0; c < dv; ++c)
            for (int j = 0; j < kQv; ++j)
                vstore(ot + c * kTq + j * kLanes, vload(ot + c * kTq + j * kLanes) * alpha[j]);
    if (keep_probs)
        for (int j = 0; j < kQv; ++j) vstore(s.fac.data() + kb / kBk * kTq + j * kLanes, ms[j]);
    std::int64_t c = 0;
    for (; c + kMr <= dv; c += kMr) pv_cols<kMr>(st, nb, vr + c, ldv, ot + c * kTq);
    with_rows(dv - c, [&]<int M>() { pv_cols<M>(st, nb, vr + c, ldv, ot + c * kTq); });
}

// Writes the tile's output rows (head h). With `keep_probs` s.st holds the probabilities as
// [nk, kTq] (key-major), each block of kBk keys still to be multiplied by its s.fac[block, :].
inline void tile_end(const attn_problem& p, std::int64_t h, std::int64_t nk, bool keep_probs, tile_state& s) {
    vfloat inv_l[kQv];
    for (int j = 0; j < kQv; ++j) inv_l[j] = 1.0f / s.l[j];
    for (std::int64_t i = 0; i < s.q1 - s.q0; ++i) {
        float* orow = p.o + (s.q0 + i) * p.o_ld + h * p.o_hs;
        const float il = inv_l[i / kLanes][i % kLanes];
        for (std::int64_t c = 0; c < p.dv; ++c) orow[c] = s.ot[static_cast<std::size_t>(c * kTq + i)] * il;
    }
    if (!keep_probs) return;
    // Each block was exponentiated against the running max of its time: its factor brings it
    // to the final max and normalises.
    const vfloat ninf = vsplat(-INFINITY);
    for (std::int64_t b = 0; b * kBk < nk; ++b)
        for (int j = 0; j < kQv; ++j) {
            float* f = s.fac.data() + b * kTq + j * kLanes;
            vstore(f, vexp2(vload(f) - vselect(s.m[j] == ninf, vfloat{}, s.m[j])) * inv_l[j]);
        }
}

// Up to kSub tiles of one head against the same keys [k0, k1): each key block is used by all
// of them while it is in L1/L2, which halves the traffic from L3 that two threads streaming
// K and V otherwise share.
inline constexpr int kSub = 2;
inline void attn_tiles(const attn_problem& p, std::int64_t h, const head_rows& hr,
                       const std::int64_t* q0, const std::int64_t* q1, const bool* keep_probs, int ns, std::int64_t k0,
                       std::int64_t k1, tile_state* s) {
    for (int u = 0; u < ns; ++u) tile_begin(p, hr, q0[u], q1[u], s[u]);
    for (std::int64_t kb = 0; kb < k1 - k0; kb += kBk) {
        const std::int64_t nb = std::min(kBk, k1 - k0 - kb);
        for (int u = 0; u < ns; ++u)
            tile_block(p, hr.k + (k0 + kb) * hr.ldk, hr.ldk, hr.v + (k0 + kb) * hr.ldv, hr.ldv, k0, kb, nb, keep_probs[u],
                       s[u]);
    }
    for (int u = 0; u < ns; ++u) tile_end(p, h, k1 - k0, keep_probs[u], s[u]);
}

}  // namespace detail::cpu_impl

class cpu : public detail::host_memory<cpu> {
public:
    static constexpr std::string_view name() { return "cpu"; }

    // Query-tile height of the attention op and panel height of weight widening.
    static constexpr std::int64_t kTileQ = detail::cpu_impl::kTq;
    static constexpr std::int64_t kPanel = 256;

    cpu() = default;
    explicit cpu(glimpse::matmul_precision p) : precision_(p) {}

    // f32 (the default) or bf16 inputs for gemm; see core/backend.hpp.
    void set_matmul_precision(glimpse::matmul_precision p) { precision_ = p; }
    glimpse::matmul_precision matmul_precision() const { return precision_; }
    // Whether bf16 gemms run on AMX tiles here (else on the emulation: same results, f32 speed).
    static bool bf16_gemm_native() { return detail::cpu_impl::amx_bf16_available(); }

    void copy(const cview& src, const view& dst) {
        detail::check(src.shape() == dst.shape(), "copy: ", src.shape().str(), " -> ", dst.shape().str());
        if (src.type() == dst.type() && src.is_contiguous() && dst.is_contiguous()) {
            if (src.numel()) std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * itemsize(src.type()));
            return;
        }
        std::int64_t m, n, lds, ldd;
        if (detail::cpu_impl::rows_view(src, m, n, lds) && detail::cpu_impl::rows_view(dst, m, n, ldd) &&
            dst.type() == dtype::f32) {
            const auto isz = static_cast<std::int64_t>(itemsize(src.type()));
            detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) {
                detail::cpu_impl::widen_row(src.data() + i * lds * isz, src.type(), n, dst.ptr<float>() + i * ldd);
            });
            return;
        }
        generic_copy(src, dst);
    }

    void fill(const view& v, float value) {
        std::int64_t m, n, ld;
        if (v.type() == dtype::f32 && detail::cpu_impl::rows_view(v, m, n, ld)) {
            float* p = v.ptr<float>();
            detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) { std::fill_n(p + i * ld, n, value); });
            return;
        }
        detail::for_each_offset(v, [&](std::int64_t, std::int64_t off) { store_f32(v.data(), v.type(), off, value); });
    }

    void gemm(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias) {
        const auto d = detail::check_gemm(a, b, c, g, bias);
        for (std::int64_t p = 0; p < d.batch; ++p) {
            const cview A = d.batched_a ? a.select(0, p) : a;
            const cview B = d.batched_b ? b.select(0, p) : b;
            const view C = c.rank() == 3 ? c.select(0, p) : c;
            // With beta = 0 the bias goes in first and the product adds onto it (beta = 1):
            // one pass over C instead of a second full read-modify-write after the GEMM.
            gemm_args gb = g;
            if (!bias.empty() && g.beta == 0.0f) {
                bias_rows(C, bias);
                gb.beta = 1.0f;
            }
            gemm2d(A, B, C, gb, d.m, d.n, d.k);
            if (!bias.empty() && g.beta != 0.0f) add_bias(C, bias);
#ifdef GLIMPSE_PLANT_GEMM_ERROR
            // Test-suite audit only (never in a normal build): every GEMM result off by
            // this relative amount, as a less accurate kernel would be. The suite must
            // fail at 1e-5 (see docs/design.md, "Builds and tests").
            detail::for_each_offset(C, [&](std::int64_t, std::int64_t off) {
                const float v = load_f32(C.data(), C.type(), off);
                store_f32(C.data(), C.type(), off, v * (1.0f + static_cast<float>(GLIMPSE_PLANT_GEMM_ERROR)));
            });
#endif
        }
    }

    void add(const cview& a, const cview& b, const view& out, float alpha) {
        detail::check_binary(a, b, out, "add");
        binary(a, b, out, [alpha](float x, float y) { return x + alpha * y; });
    }

    void mul(const cview& a, const cview& b, const view& out) {
        detail::check_binary(a, b, out, "mul");
        binary(a, b, out, [](float x, float y) { return x * y; });
    }

    void activate(activation act, const cview& x, const view& out) {
        detail::check_same(x, out, "activate");
        unary(x, out, [act](const float* in, float* o, std::int64_t n) {
            using detail::cpu_impl::ArrMap;
            using detail::cpu_impl::ArrMapC;
            ArrMapC X(in, n);
            ArrMap O(o, n);
            switch (act) {
                case activation::identity: O = X; break;
                case activation::silu: O = X / (1.0f + (-X).exp()); break;
                case activation::gelu_tanh:
                    O = 0.5f * X * (1.0f + (0.7978845608028654f * (X + 0.044715f * X.cube())).tanh());
                    break;
                case activation::gelu_erf:
                    for (std::int64_t i = 0; i < n; ++i) o[i] = 0.5f * in[i] * (1.0f + std::erf(in[i] * 0.70710678118654752f));
                    break;
            }
        });
    }

    void swiglu(const cview& gate, const cview& up, const view& out) {
        detail::check_same(gate, out, "swiglu");
        detail::check_same(up, out, "swiglu");
        std::int64_t m, n, ldg, ldu, ldo;
        if (gate.type() == dtype::f32 && up.type() == dtype::f32 && detail::cpu_impl::rows_view(gate, m, n, ldg) &&
            detail::cpu_impl::rows_view(up, m, n, ldu) && detail::cpu_impl::rows_view(out, m, n, ldo)) {
            const float* G = gate.ptr<float>();
            const float* U = up.ptr<float>();
            float* O = out.ptr<float>();
            detail::cpu_impl::parallel_rows(m, n * 8, [&](std::int64_t i) {
                detail::cpu_impl::ArrMapC g(G + i * ldg, n), u(U + i * ldu, n);
                detail::cpu_impl::ArrMap(O + i * ldo, n) = g / (1.0f + (-g).exp()) * u;
            });
            return;
        }
        tensor t = download(gate);
        activate(activation::silu, t.cv(), t.v());
        mul(t.cv(), up, out);
    }

    void softmax_rows(const view& x, float scale) {
        std::int64_t m, n, ld;
        detail::check_f32(x, "softmax_rows", "x");
        detail::check(detail::cpu_impl::rows_view(x, m, n, ld), "softmax_rows: x ", x.shape().str(),
                      " must have rows with unit stride");
        float* p = x.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) { softmax_row(p + i * ld, n, scale); });
    }

    void rms_norm(const cview& x, const cview& w, float eps, const view& out) {
        detail::check_norm(x, w, cview{}, out, "rms_norm");
        norm_rows(x, w, cview{}, out, [eps](detail::cpu_impl::ArrMapC X, float* o, const float* W, const float*) {
            const float inv = 1.0f / std::sqrt(static_cast<float>(X.square().cast<double>().mean()) + eps);
            detail::cpu_impl::ArrMap(o, X.size()) = (X * inv) * detail::cpu_impl::ArrMapC(W, X.size());
        });
    }

    void layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out) {
        detail::check_norm(x, w, b, out, "layer_norm");
        norm_rows(x, w, b, out, [eps](detail::cpu_impl::ArrMapC X, float* o, const float* W, const float* Bp) {
            const double mu = X.cast<double>().mean();
            const double var = (X.cast<double>() - mu).square().mean();
            const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
            detail::cpu_impl::ArrMap O(o, X.size());
            O = (X - static_cast<float>(mu)) * inv * detail::cpu_impl::ArrMapC(W, X.size());
            if (Bp) O += detail::cpu_impl::ArrMapC(Bp, X.size());
        });
    }

    void sum_rows(const cview& x, const view& out) {
        detail::check(x.rank() == 2 && out.rank() == 1 && out.size(0) == x.size(1), "sum_rows: x ", x.shape().str(),
                      " -> out ", out.shape().str());
        detail::check_f32(out, "sum_rows", "out");
        std::vector<double> acc(static_cast<std::size_t>(x.size(1)), 0.0);
        std::vector<float> row(static_cast<std::size_t>(x.size(1)));
        for (std::int64_t i = 0; i < x.size(0); ++i) {
            detail::cpu_impl::widen(x, i, i + 1, 0, x.size(1), row.data());
            for (std::size_t j = 0; j < row.size(); ++j) acc[j] += row[j];
        }
        for (std::size_t j = 0; j < acc.size(); ++j) out.set({static_cast<std::int64_t>(j)}, static_cast<float>(acc[j]));
    }

    void rotary(const view& x, const cview& cos, const cview& sin) {
        detail::check_rotary(x, cos, sin);
        const std::int64_t s = x.size(0), h = x.size(1), d = x.size(2), half = d / 2;
        detail::check(x.stride(2) == 1, "rotary: x needs unit inner stride");
        std::vector<float> cbuf(static_cast<std::size_t>(s * d)), sbuf(static_cast<std::size_t>(s * d));
        detail::cpu_impl::widen(cos, 0, s, 0, d, cbuf.data());
        detail::cpu_impl::widen(sin, 0, s, 0, d, sbuf.data());
        float* base = x.ptr<float>();
        detail::cpu_impl::parallel_rows(s, h * d * 4, [&](std::int64_t t) {
            const float* c = cbuf.data() + t * d;
            const float* sn = sbuf.data() + t * d;
            for (std::int64_t j = 0; j < h; ++j) {
                float* p = base + t * x.stride(0) + j * x.stride(1);
                for (std::int64_t i = 0; i < half; ++i) {
                    const float x1 = p[i], x2 = p[i + half];
                    p[i] = x1 * c[i] - x2 * sn[i];
                    p[i + half] = x2 * c[i + half] + x1 * sn[i + half];
                }
            }
        });
    }

    void gather_rows(const cview& src, std::span<const std::int64_t> idx, const view& out) {
        detail::check_gather(src, idx, out);
        detail::cpu_impl::parallel_rows(static_cast<std::int64_t>(idx.size()), src.numel() / std::max<std::int64_t>(1, src.size(0)),
                                        [&](std::int64_t i) { copy_serial(src.select(0, idx[static_cast<std::size_t>(i)]), out.select(0, i)); });
    }

    void attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a) {
        namespace ci = detail::cpu_impl;
        const auto d = detail::check_attention(q, k, v, out, a);
        // Inputs widened once to f32 (they are activations: usually f32 already).
        tensor qf, kf, vf;
        const cview Q = as_f32(q, qf), K = as_f32(k, kf), V = as_f32(v, vf);
        const auto& maps = a.maps;
        const std::int64_t R = maps.pooled.empty() ? 0 : maps.query_weights.size(0);
        tensor qw;
        const cview QW = R ? as_f32(maps.query_weights, qw) : cview{};
        if (!maps.per_head.empty()) fill(maps.per_head, 0.0f);
        if (!maps.mean.empty()) fill(maps.mean, 0.0f);
        if (R) fill(maps.pooled, 0.0f);

        // Work items: query tiles that never straddle a segment boundary.
        struct tile {
            std::int64_t q0, q1, k0, k1;
            bool pooled;  // some query of the tile has a non-zero pooling weight
        };
        std::vector<tile> tiles;
        std::int64_t max_keys = 0;
        {
            std::vector<std::int64_t> seg(a.segments.begin(), a.segments.end());
            if (seg.empty()) seg = {0, d.sq};
            for (std::size_t s = 0; s + 1 < seg.size(); ++s)
                for (std::int64_t q0 = seg[s]; q0 < seg[s + 1]; q0 += kTileQ) {
                    tile t{q0, std::min(q0 + kTileQ, seg[s + 1]), a.segments.empty() ? 0 : seg[s],
                           a.segments.empty() ? d.sk : seg[s + 1], false};
                    for (std::int64_t r = 0; r < R && !t.pooled; ++r)
                        for (std::int64_t i = t.q0; i < t.q1 && !t.pooled; ++i)
                            t.pooled = QW.ptr<float>()[r * QW.stride(0) + i] != 0.0f;
                    max_keys = std::max(max_keys, t.k1 - t.k0);
                    tiles.push_back(t);
                }
        }
        // Items: runs of up to kSub consecutive tiles over the same keys (ci::attn_tiles).
        std::vector<std::pair<std::size_t, int>> runs;
        for (std::size_t i = 0; i < tiles.size(); ++i)
            if (!runs.empty() && runs.back().second < ci::kSub && tiles[runs.back().first].k0 == tiles[i].k0 &&
                tiles[runs.back().first].k1 == tiles[i].k1)
                ++runs.back().second;
            else
                runs.emplace_back(i, 1);
        const std::int64_t nr = static_cast<std::int64_t>(runs.size());
        const ci::attn_problem p{Q.ptr<float>(), K.ptr<float>(), V.ptr<float>(), out.ptr<float>(),
                                 Q.stride(0), Q.stride(1), K.stride(0), K.stride(1), V.stride(0), V.stride(1),
                                 out.stride(0), out.stride(1), d.d, d.dv, a.scale * 1.4426950408889634f,
                                 a.mask.empty() ? nullptr : a.mask.ptr<float>(), a.mask.empty() ? 0 : a.mask.stride(0)};
        const bool any_maps = !maps.per_head.empty() || !maps.mean.empty() || R > 0;
        const float inv_h = 1.0f / static_cast<float>(d.h);
        int nthreads = 1;
#if defined(_OPENMP)
        nthreads = omp_get_max_threads();
#endif
        // Per-thread partial sums for the pooled maps (queries of all tiles add into them).
        std::vector<float> pooled_partial(R ? static_cast<std::size_t>(nthreads * R * d.h * d.sk) : 0, 0.0f);

        // Heads go a group at a time: the group's queries, keys and values are first packed
        // row-contiguous per head. Read in place, every row of a head sits in a page of its own
        // (rows are H * d floats apart) and TLB misses, not FMAs, set the pace. A group is as
        // many heads as fit kPackBytes, so there are few barriers (a thread the OS preempts
        // holds the others up at each). With a single run of tiles per head (a handful of
        // queries, as in the dedup fast path) every key is read once anyway: no packing.
        const bool pack = nr >= 2;
        const std::int64_t head_bytes = (d.sq * d.d + d.sk * (d.d + d.dv)) * static_cast<std::int64_t>(sizeof(float));
        const std::int64_t G =
            pack ? std::clamp<std::int64_t>(ci::kPackBytes / std::max<std::int64_t>(head_bytes, 1), 1, d.h) : d.h;
        // Not zero-filled: every element is written by the packing loop before it is read.
        const std::size_t pack_rows = pack ? static_cast<std::size_t>(G) : 0;
        const auto qpack = std::make_unique_for_overwrite<float[]>(pack_rows * static_cast<std::size_t>(d.sq * d.d));
        const auto kpack = std::make_unique_for_overwrite<float[]>(pack_rows * static_cast<std::size_t>(d.sk * d.d));
        const auto vpack = std::make_unique_for_overwrite<float[]>(pack_rows * static_cast<std::size_t>(d.sk * d.dv));
        // The head-mean map adds every head into the same rows: then an item is a tile with
        // all the group's heads, else a (head, tile) pair, head-major.
        const bool by_tile = !maps.mean.empty();
#pragma omp parallel if (nr * d.h > 1)
        {
            int tid = 0;
#if defined(_OPENMP)
            tid = omp_get_thread_num();
#endif
            std::vector<ci::tile_state> state;
            for (int u = 0; u < ci::kSub; ++u) state.emplace_back(p, max_keys, any_maps, by_tile);
            for (std::int64_t h0 = 0; h0 < d.h; h0 += G) {
                const std::int64_t g = std::min(G, d.h - h0), rows = pack ? std::max(d.sq, d.sk) : 0;
#pragma omp for schedule(dynamic, 64)
                for (std::int64_t j = 0; j < rows; ++j)
                    for (std::int64_t u = 0; u < g; ++u) {
                        const std::int64_t h = h0 + u;
                        if (j < d.sq)
                            std::memcpy(qpack.get() + (u * d.sq + j) * d.d, p.q + j * p.q_ld + h * p.q_hs,
                                        static_cast<std::size_t>(d.d) * sizeof(float));
                        if (j < d.sk) {
                            std::memcpy(kpack.get() + (u * d.sk + j) * d.d, p.k + j * p.k_ld + h * p.k_hs,
                                        static_cast<std::size_t>(d.d) * sizeof(float));
                            std::memcpy(vpack.get() + (u * d.sk + j) * d.dv, p.v + j * p.v_ld + h * p.v_hs,
                                        static_cast<std::size_t>(d.dv) * sizeof(float));
                        }
                    }
                const std::int64_t items = by_tile ? nr : g * nr;
#pragma omp for schedule(dynamic, 1)
                for (std::int64_t it = 0; it < items; ++it) {
                    const auto [first, ns] = runs[static_cast<std::size_t>(by_tile ? it : it % nr)];
                    const std::int64_t u0 = by_tile ? 0 : it / nr, u1 = by_tile ? g : u0 + 1;
                    std::int64_t q0[ci::kSub], q1[ci::kSub];
                    bool keep[ci::kSub];
                    for (int v = 0; v < ns; ++v) {
                        const tile& t = tiles[first + static_cast<std::size_t>(v)];
                        q0[v] = t.q0;
                        q1[v] = t.q1;
                        keep[v] = !maps.per_head.empty() || !maps.mean.empty() || t.pooled;
                    }
                    const std::int64_t k0 = tiles[first].k0, k1 = tiles[first].k1;
                    for (std::int64_t u = u0; u < u1; ++u) {
                        const std::int64_t h = h0 + u;
                        const ci::head_rows hr =
                            pack ? ci::head_rows{qpack.get() + u * d.sq * d.d, d.d, kpack.get() + u * d.sk * d.d, d.d,
                                                 vpack.get() + u * d.sk * d.dv, d.dv}
                                 : ci::head_rows{p.q + h * p.q_hs, p.q_ld, p.k + h * p.k_hs, p.k_ld, p.v + h * p.v_hs, p.v_ld};
                        ci::attn_tiles(p, h, hr, q0, q1, keep, ns, k0, k1, state.data());
                        for (int v = 0; v < ns; ++v)
                            if (keep[v])
                                add_maps(state[static_cast<std::size_t>(v)], maps, QW, R, h, q0[v], q1[v] - q0[v], k0,
                                         k1 - k0, d.sq, d.sk, d.h, inv_h,
                                         tiles[first + static_cast<std::size_t>(v)].pooled
                                             ? pooled_partial.data() + tid * R * d.h * d.sk
                                             : nullptr);
                    }
                    if (by_tile)
                        for (int v = 0; v < ns; ++v)
                            flush_mean(state[static_cast<std::size_t>(v)], maps.mean, q0[v], q1[v] - q0[v], k0, k1 - k0, d.sk);
                }
            }
        }
        if (R) {
            float* dst = maps.pooled.ptr<float>();
            const std::int64_t n = R * d.h * d.sk;
            for (int t = 0; t < nthreads; ++t)
                for (std::int64_t i = 0; i < n; ++i) dst[i] += pooled_partial[static_cast<std::size_t>(t * n + i)];
        }
    }

    // ---- backward ops (TrainingBackend) ----

    void softmax_rows_backward(const cview& p, const cview& dp, float scale, const view& dx) {
        detail::check_softmax_backward(p, dp, dx);
        tensor ph, gh;
        std::int64_t m, n, ldp, ldg, ldx;
        const cview P = f32_rows(p, ph, m, n, ldp), G = f32_rows(dp, gh, m, n, ldg);
        detail::check(detail::cpu_impl::rows_view(dx, m, n, ldx), "softmax_rows_backward: dx ", dx.shape().str(),
                      " must have rows with unit stride");
        const float* pp = P.ptr<float>();
        const float* gp = G.ptr<float>();
        float* op = dx.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) {
            detail::cpu_impl::ArrMapC pr(pp + i * ldp, n), gr(gp + i * ldg, n);
            const auto dot = static_cast<float>((pr.cast<double>() * gr.cast<double>()).sum());
            detail::cpu_impl::ArrMap(op + i * ldx, n) = scale * pr * (gr - dot);  // elementwise: dx may alias dp
        });
    }

    void activate_backward(activation act, const cview& x, const cview& dy, const view& dx) {
        detail::check_activate_backward(x, dy, dx);
        tensor xh, gh;
        std::int64_t m, n, ldx, ldg, ldo;
        const cview X = f32_rows(x, xh, m, n, ldx), G = f32_rows(dy, gh, m, n, ldg);
        detail::check(detail::cpu_impl::rows_view(dx, m, n, ldo), "activate_backward: dx ", dx.shape().str(),
                      " must have collapsible rows");
        const float* xp = X.ptr<float>();
        const float* gp = G.ptr<float>();
        float* op = dx.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n * 8, [&](std::int64_t i) {
            using detail::cpu_impl::ArrMapC;
            ArrMapC xr(xp + i * ldx, n), gr(gp + i * ldg, n);
            detail::cpu_impl::ArrMap o(op + i * ldo, n);
            constexpr float k = 0.7978845608028654f, c = 0.044715f;
            switch (act) {
                case activation::identity:
                    o = gr;
                    break;
                case activation::silu: {
                    const Eigen::ArrayXf sg = 1.0f / (1.0f + (-xr).exp());
                    o = gr * sg * (1.0f + xr * (1.0f - sg));
                    break;
                }
                case activation::gelu_tanh: {
                    const Eigen::ArrayXf t = (k * (xr + c * xr.cube())).tanh();
                    o = gr *
                        (0.5f * (1.0f + t) + 0.5f * xr * (1.0f - t.square()) * k * (1.0f + 3.0f * c * xr.square()));
                    break;
                }
                case activation::gelu_erf:
                    for (std::int64_t j = 0; j < n; ++j) {
                        const float v = xr[j];
                        o[j] = gr[j] * (0.5f * (1.0f + std::erf(v * 0.70710678118654752f)) +
                                        v * 0.3989422804014327f * std::exp(-0.5f * v * v));
                    }
                    break;
            }
        });
    }

    void rms_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx, const view& dw) {
        detail::check_norm_backward(x, w, dy, dx, dw, "rms_norm_backward");
        const auto row = [eps](detail::cpu_impl::ArrMapC xr, detail::cpu_impl::ArrMapC gr, const Eigen::ArrayXf& W,
                               float* o, double* acc) {
            const auto n = xr.size();
            const float r = 1.0f / std::sqrt(static_cast<float>(xr.square().cast<double>().mean()) + eps);
            const Eigen::ArrayXf xh = xr * r;
            const Eigen::ArrayXf g = gr * W;
            const auto c = static_cast<float>((g.cast<double>() * xh.cast<double>()).mean());
            if (acc) Eigen::Map<Eigen::ArrayXd>(acc, n) += (gr * xh).cast<double>();
            detail::cpu_impl::ArrMap(o, n) = r * (g - xh * c);
        };
        norm_backward_rows(x, w, dy, dx, dw, row);
    }

    void layer_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx,
                             const view& dw) {
        detail::check_norm_backward(x, w, dy, dx, dw, "layer_norm_backward");
        const auto row = [eps](detail::cpu_impl::ArrMapC xr, detail::cpu_impl::ArrMapC gr, const Eigen::ArrayXf& W,
                               float* o, double* acc) {
            const auto n = xr.size();
            const double mu = xr.cast<double>().mean();
            const double var = (xr.cast<double>() - mu).square().mean();
            const auto r = static_cast<float>(1.0 / std::sqrt(var + eps));
            const Eigen::ArrayXf xh = (xr - static_cast<float>(mu)) * r;
            const Eigen::ArrayXf g = gr * W;
            const auto gm = static_cast<float>(g.cast<double>().mean());
            const auto c = static_cast<float>((g.cast<double>() * xh.cast<double>()).mean());
            if (acc) Eigen::Map<Eigen::ArrayXd>(acc, n) += (gr * xh).cast<double>();
            detail::cpu_impl::ArrMap(o, n) = r * (g - gm - xh * c);
        };
        norm_backward_rows(x, w, dy, dx, dw, row);
    }

private:
    glimpse::matmul_precision precision_ = glimpse::matmul_precision::f32;

    // An f32 view with collapsible rows: v itself when it is one, else a contiguous f32 copy in `holder`.
    cview f32_rows(const cview& v, tensor& holder, std::int64_t& m, std::int64_t& n, std::int64_t& ld) {
        if (v.type() == dtype::f32 && detail::cpu_impl::rows_view(v, m, n, ld)) return v;
        holder = tensor(v.shape(), dtype::f32);
        copy(v, holder.v());
        detail::cpu_impl::rows_view(holder.cv(), m, n, ld);
        return holder.cv();
    }

    // Row-wise norm backward: f(x_row, dy_row, w, dx_row, dw_partial). The dw reduction runs
    // over fixed blocks of rows, each into its own f64 partial, summed in block order: the
    // result does not depend on the thread count.
    template <class F>
    void norm_backward_rows(const cview& x, const cview& w, const cview& dy, const view& dx, const view& dw, F f) {
        constexpr std::int64_t kRows = 64;
        tensor xh, gh;
        std::int64_t m, n, ldx, ldg, ldo;
        const cview X = f32_rows(x, xh, m, n, ldx), G = f32_rows(dy, gh, m, n, ldg);
        detail::check(detail::cpu_impl::rows_view(dx, m, n, ldo), "norm backward: dx ", dx.shape().str(),
                      " must have collapsible rows");
        Eigen::ArrayXf W(n);
        detail::cpu_impl::widen(w.reshape(shape{1, n}), 0, 1, 0, n, W.data());
        const std::int64_t nb = (m + kRows - 1) / kRows;
        std::vector<double> part(dw.empty() ? 0 : static_cast<std::size_t>(nb * n), 0.0);
        const float* xp = X.ptr<float>();
        const float* gp = G.ptr<float>();
        float* op = dx.ptr<float>();
        detail::cpu_impl::parallel_rows(nb, kRows * n * 8, [&](std::int64_t b) {
            double* acc = part.empty() ? nullptr : part.data() + b * n;
            for (std::int64_t i = b * kRows; i < std::min(m, (b + 1) * kRows); ++i)
                f(detail::cpu_impl::ArrMapC(xp + i * ldx, n), detail::cpu_impl::ArrMapC(gp + i * ldg, n), W,
                  op + i * ldo, acc);
        });
        if (dw.empty()) return;
        std::vector<double> total(static_cast<std::size_t>(n), 0.0);
        for (std::int64_t b = 0; b < nb; ++b)
            for (std::int64_t j = 0; j < n; ++j)
                total[static_cast<std::size_t>(j)] += part[static_cast<std::size_t>(b * n + j)];
        for (std::int64_t j = 0; j < n; ++j) dw.set({j}, static_cast<float>(total[static_cast<std::size_t>(j)]));
    }

    // Adds a tile's head-mean accumulator (tile_state::mean, [nk, kTq]) into its rows of the
    // [Sq, Sk] mean map, and clears it for the next item.
    static void flush_mean(detail::cpu_impl::tile_state& s, const view& mean, std::int64_t q0, std::int64_t tq,
                           std::int64_t k0, std::int64_t nk, std::int64_t sk) {
        constexpr std::int64_t T = detail::cpu_impl::kTq;
        for (std::int64_t kb = 0; kb < nk; kb += detail::cpu_impl::kBk) {
            const std::int64_t nb = std::min(detail::cpu_impl::kBk, nk - kb);
            const float* acc = s.mean.data() + kb * T;
            for (std::int64_t i = 0; i < tq; ++i) {
                float* dst = mean.ptr<float>() + (q0 + i) * sk + k0 + kb;
                for (std::int64_t j = 0; j < nb; ++j) dst[j] += acc[j * T + i];
            }
        }
        std::fill_n(s.mean.begin(), nk * T, 0.0f);
    }

    // The maps of one (tile, head) from its probabilities (tile_end's s.st, s.fac), a block of
    // kBk keys at a time so the block stays in L1 while the map rows are written. `pooled` is
    // this thread's [R, H, Sk] partial sum, or null when the tile has no pooling weight.
    static void add_maps(detail::cpu_impl::tile_state& s, const attention_maps& maps, const cview& QW,
                         std::int64_t R, std::int64_t h, std::int64_t q0, std::int64_t tq, std::int64_t k0,
                         std::int64_t nk, std::int64_t sq, std::int64_t sk, std::int64_t H, float inv_h,
                         float* pooled) {
        namespace ci = detail::cpu_impl;
        constexpr std::int64_t T = ci::kTq;
        for (std::int64_t kb = 0; kb < nk; kb += ci::kBk) {
            const std::int64_t nb = std::min(ci::kBk, nk - kb);
            const float* P = s.st.data() + kb * T;
            const float* F = s.fac.data() + kb / ci::kBk * T;
            if (!maps.per_head.empty())
                for (std::int64_t i = 0; i < tq; ++i) {
                    float* dst = maps.per_head.ptr<float>() + (h * sq + q0 + i) * sk + k0 + kb;
                    for (std::int64_t j = 0; j < nb; ++j) dst[j] = P[j * T + i] * F[i];
                }
            if (!maps.mean.empty()) {
                // Summed over the item's heads in the tile's own (key-major) layout, lane-wise;
                // flush_mean transposes once per item, not once per head.
                ci::vfloat f[ci::kQv];
                for (int u = 0; u < ci::kQv; ++u) f[u] = ci::vload(F + u * ci::kLanes) * inv_h;
                float* acc = s.mean.data() + kb * T;
                for (std::int64_t j = 0; j < nb; ++j)
                    for (int u = 0; u < ci::kQv; ++u) {
                        float* a = acc + j * T + u * ci::kLanes;
                        ci::vstore(a, ci::vfma(ci::vload(P + j * T + u * ci::kLanes), f[u], ci::vload(a)));
                    }
            }
            for (std::int64_t r = 0; r < R && pooled; ++r) {
                // The query weights times the block factors: then one dot product per key.
                alignas(64) float w[T] = {};
                for (std::int64_t i = 0; i < tq; ++i) {
                    const float wq = QW.ptr<float>()[r * QW.stride(0) + q0 + i];
                    w[i] = wq == 0.0f ? 0.0f : wq * F[i];  // a weightless query adds nothing, even a NaN row
                }
                ci::vfloat wv[ci::kQv];
                for (int j = 0; j < ci::kQv; ++j) wv[j] = ci::vload(w + j * ci::kLanes);
                float* dst = pooled + (r * H + h) * sk + k0 + kb;
                for (std::int64_t j = 0; j < nb; ++j) {
                    ci::vfloat acc = wv[0] * ci::vload(P + j * T);
                    for (int u = 1; u < ci::kQv; ++u) acc = ci::vfma(wv[u], ci::vload(P + j * T + u * ci::kLanes), acc);
                    dst[j] += ci::hsum(acc);
                }
            }
        }
    }

    static void softmax_row(float* row, std::int64_t n, float scale) {
        detail::cpu_impl::ArrMap r(row, n);
        if (scale != 1.0f) r *= scale;
        const float mx = r.maxCoeff();
        r = (r - mx).exp();
        r *= 1.0f / r.sum();
    }

    // View as f32: itself when it already is, else widened into `holder`.
    cview as_f32(const cview& v, tensor& holder) {
        if (v.type() == dtype::f32 && v.stride(-1) == 1) return v;
        holder = tensor(v.shape(), dtype::f32);
        copy(v, holder.v());
        return holder.cv();
    }

    void gemm2d(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m, std::int64_t n,
                std::int64_t k) {
        if (precision_ == glimpse::matmul_precision::bf16) {
            gemm2d_bf16(A, B, C, g, m, n, k);
            return;
        }
        tensor af;
        const cview Af = as_f32(A, af);
        float* c = C.ptr<float>();
        if (B.type() == dtype::f32) {
            detail::cpu_impl::sgemm(g.trans_a, g.trans_b, m, n, k, g.alpha, Af.ptr<float>(), Af.stride(0),
                                    B.ptr<float>(), B.stride(0), g.beta, c, C.stride(0));
            return;
        }
        // Narrow weights: widen one panel of output columns at a time.
        std::vector<float> panel(static_cast<std::size_t>(std::min(kPanel, n) * k));
        for (std::int64_t n0 = 0; n0 < n; n0 += kPanel) {
            const std::int64_t n1 = std::min(n, n0 + kPanel), nb = n1 - n0;
            if (g.trans_b)
                detail::cpu_impl::widen(B, n0, n1, 0, k, panel.data());  // rows of [N, K]
            else
                detail::cpu_impl::widen(B, 0, k, n0, n1, panel.data());  // columns of [K, N]
            detail::cpu_impl::sgemm(g.trans_a, g.trans_b, m, nb, k, g.alpha, Af.ptr<float>(), Af.stride(0), panel.data(),
                                    g.trans_b ? k : nb, g.beta, c + n0, C.stride(0));
        }
    }

    void gemm2d_bf16(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m,
                     std::int64_t n, std::int64_t k) {
        using detail::cpu_impl::gemm_operand;
        const gemm_operand a{A.data(), A.type(), A.stride(0), g.trans_a};
        const gemm_operand b{B.data(), B.type(), B.stride(0), g.trans_b};
        float* c = C.ptr<float>();
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
        if (detail::cpu_impl::amx_bf16_available() && k > 0) {
            detail::cpu_impl::bf16_gemm_amx(a, b, m, n, k, g.alpha, g.beta, c, C.stride(0));
            return;
        }
#endif
        // The emulation: the same rounded operands through sgemm, op(B) a panel of columns at a time.
        const std::vector<float> ar = detail::cpu_impl::rounded_dense(a, m, k);
        std::vector<float> panel(static_cast<std::size_t>(std::min(kPanel, n) * k));
        for (std::int64_t n0 = 0; n0 < n; n0 += kPanel) {
            const std::int64_t nb = std::min(kPanel, n - n0);
            detail::cpu_impl::parallel_rows(nb, k, [&](std::int64_t j) {
                for (std::int64_t kk = 0; kk < k; ++kk)
                    panel[static_cast<std::size_t>(j * k + kk)] =
                        detail::cpu_impl::round_bf16(detail::cpu_impl::operand_at(b, kk, n0 + j));
            });
            detail::cpu_impl::sgemm(false, true, m, nb, k, g.alpha, ar.data(), k, panel.data(), k, g.beta, c + n0,
                                    C.stride(0));
        }
    }

    // C[i, :] = bias for every row.
    void bias_rows(const view& C, const cview& bias) {
        std::vector<float> b(static_cast<std::size_t>(bias.size(0)));
        detail::cpu_impl::widen(bias.reshape(shape{1, bias.size(0)}), 0, 1, 0, bias.size(0), b.data());
        const std::int64_t m = C.size(0), n = C.size(1);
        float* c = C.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) {
            std::memcpy(c + i * C.stride(0), b.data(), static_cast<std::size_t>(n) * sizeof(float));
        });
    }

    void add_bias(const view& C, const cview& bias) {
        std::vector<float> b(static_cast<std::size_t>(bias.size(0)));
        detail::cpu_impl::widen(bias.reshape(shape{1, bias.size(0)}), 0, 1, 0, bias.size(0), b.data());
        const std::int64_t m = C.size(0), n = C.size(1);
        float* c = C.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) {
            detail::cpu_impl::ArrMap(c + i * C.stride(0), n) += detail::cpu_impl::ArrMapC(b.data(), n);
        });
    }

    // out = f(a, b) elementwise, b equal-shaped or a broadcast row.
    template <class F>
    void binary(const cview& a, const cview& b, const view& out, F f) {
        std::int64_t m, n, lda, ldo, ldb = 0, m2;
        const bool bcast = !(b.shape() == a.shape());
        if (a.type() == dtype::f32 && b.type() == dtype::f32 && detail::cpu_impl::rows_view(a, m, n, lda) &&
            detail::cpu_impl::rows_view(out, m, n, ldo) && (bcast ? b.stride(0) == 1 : detail::cpu_impl::rows_view(b, m2, n, ldb))) {
            const float* A = a.ptr<float>();
            const float* Bp = b.ptr<float>();
            float* O = out.ptr<float>();
            detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) {
                const float* br = bcast ? Bp : Bp + i * ldb;
                const float* ar = A + i * lda;
                float* orow = O + i * ldo;
                for (std::int64_t j = 0; j < n; ++j) orow[j] = f(ar[j], br[j]);
            });
            return;
        }
        tensor af = download(a), bf(b.shape(), dtype::f32), of(out.shape(), dtype::f32);
        tensor a32 = af.to(dtype::f32);
        copy(b, bf.v());
        const std::int64_t nn = a32.numel(), bn = bf.numel();
        for (std::int64_t i = 0; i < nn; ++i) of.ptr<float>()[i] = f(a32.ptr<float>()[i], bf.ptr<float>()[i % bn]);
        copy(of.cv(), out);
    }

    template <class F>
    void unary(const cview& x, const view& out, F f) {
        std::int64_t m, n, ldx, ldo;
        tensor holder;
        const cview X = as_f32(x, holder);
        if (detail::cpu_impl::rows_view(X, m, n, ldx) && detail::cpu_impl::rows_view(out, m, n, ldo)) {
            detail::cpu_impl::parallel_rows(m, n * 8, [&](std::int64_t i) { f(X.ptr<float>() + i * ldx, out.ptr<float>() + i * ldo, n); });
            return;
        }
        tensor xc = download(X);
        tensor oc(out.shape(), dtype::f32);
        f(xc.ptr<float>(), oc.ptr<float>(), xc.numel());
        copy(oc.cv(), out);
    }

    template <class F>
    void norm_rows(const cview& x, const cview& w, const cview& b, const view& out, F f) {
        std::int64_t m, n, ldx, ldo;
        tensor xh;
        const cview X = as_f32(x, xh);
        detail::check(detail::cpu_impl::rows_view(X, m, n, ldx) && detail::cpu_impl::rows_view(out, m, n, ldo),
                      "norm: x ", x.shape().str(), " / out must have collapsible rows");
        std::vector<float> W(static_cast<std::size_t>(n)), Bv(b.empty() ? 0 : static_cast<std::size_t>(n));
        detail::cpu_impl::widen(w.reshape(shape{1, n}), 0, 1, 0, n, W.data());
        if (!b.empty()) detail::cpu_impl::widen(b.reshape(shape{1, n}), 0, 1, 0, n, Bv.data());
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) {
            f(detail::cpu_impl::ArrMapC(X.ptr<float>() + i * ldx, n), out.ptr<float>() + i * ldo, W.data(),
              Bv.empty() ? nullptr : Bv.data());
        });
    }

    static void copy_serial(const cview& src, const view& dst) {
        std::int64_t m, n, lds, ldd;
        if (dst.type() == dtype::f32 && detail::cpu_impl::rows_view(src, m, n, lds) &&
            detail::cpu_impl::rows_view(dst, m, n, ldd)) {
            for (std::int64_t i = 0; i < m; ++i)
                detail::cpu_impl::widen_row(src.data() + i * lds * static_cast<std::int64_t>(itemsize(src.type())),
                                            src.type(), n, dst.ptr<float>() + i * ldd);
            return;
        }
        generic_copy(src, dst);
    }

    static void generic_copy(const cview& src, const view& dst) {
        // Offsets of src and dst differ only by their strides: walk both in step.
        std::vector<std::int64_t> doffs;
        doffs.reserve(static_cast<std::size_t>(dst.numel()));
        detail::for_each_offset(dst, [&](std::int64_t, std::int64_t off) { doffs.push_back(off); });
        detail::for_each_offset(src, [&](std::int64_t flat, std::int64_t off) {
            store_f32(dst.data(), dst.type(), doffs[static_cast<std::size_t>(flat)], load_f32(src.data(), src.type(), off));
        });
    }
};

static_assert(Backend<cpu>);
static_assert(TrainingBackend<cpu>);

}  // namespace glimpse
