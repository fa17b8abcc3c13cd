#pragma once
// glimpse::cpu — the fast CPU backend: Eigen for the math, OpenMP across rows,
// heads and query tiles. GEMMs: on AVX-512 CPUs our own packed kernel
// (cpu/packed_gemm.hpp) for every Linear-shaped product (row-major op(A), [N, K]
// op(B)); the other layouts, and every GEMM below AVX-512, go to a CBLAS sgemm
// when the build found one (GLIMPSE_HAVE_CBLAS; with OpenBLAS single-threaded on
// one slab per OpenMP thread, openblas_serial), else to Eigen's.
//
// Storage dtypes of weights are honoured without keeping f32 copies: the packed
// kernel widens a bf16/f16 operand as it packs it; the BLAS path widens one panel
// of `kPanel` rows at a time into a per-call scratch, so memory stays at the bf16
// size while the math is f32.
//
// set_matmul_precision(matmul_precision::bf16) rounds gemm inputs to bf16 and sums the
// products in f32: on AMX tiles (level amx, cpu/bf16_gemm.hpp), on VDPBF16PS (level
// avx512_bf16, cpu/packed_gemm.hpp), on the packed f32 kernel with operands rounded as they
// are packed (level avx512), and on an emulation through sgemm below that.
//
// Attention is a fused, flash-style kernel (cpu/attention_kernel.inc): a tile of queries of
// one head walks its keys in blocks with an online softmax, in its own SIMD
// micro-kernels rather than GEMM calls (a 64 x 80 x S product is too thin for a BLAS
// to reach its rate, and the score tile must stay in L1). Scratch is O(kPackBytes +
// threads * tile * d) without maps; the maps a caller asks for are accumulated tile
// by tile from O(threads * tile * S) of kept probabilities, and no H x S x S tensor
// exists unless `maps.per_head` asks.
//
// The SIMD kernels (GEMM, attention, and the row-wise activations, norms, softmax and
// rotary of cpu/row_kernels.inc) are picked at run time per backend object from what the
// CPU has (cpu/isa.hpp, cpu/level_kernels.hpp): isa(), set_isa(), GLIMPSE_CPU_ISA.

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
#include "glimpse/backend/cpu/bf16_gemm.hpp"
#include "glimpse/backend/cpu/isa.hpp"
#include "glimpse/backend/cpu/level_kernels.hpp"
#include "glimpse/backend/cpu/packed_gemm.hpp"
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
    if (!ta && !tb)
        run(Araw, Braw);
    else if (!ta && tb)
        run(Araw, Braw.transpose());
    else if (ta && !tb)
        run(Araw.transpose(), Braw);
    else
        run(Araw.transpose(), Braw.transpose());
}

// Widen n elements of one contiguous row of dtype t to f32.
inline void widen_row(const std::byte* row, dtype t, std::int64_t n, float* o) {
    switch (t) {
        case dtype::f32:
            std::memcpy(o, row, static_cast<std::size_t>(n) * sizeof(float));
            return;
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

}  // namespace detail::cpu_impl

class cpu : public detail::host_memory<cpu> {
public:
    static constexpr std::string_view name() { return "cpu"; }

    // Panel height of weight widening.
    static constexpr std::int64_t kPanel = 256;

    // The SIMD level is GLIMPSE_CPU_ISA's, else the best this CPU has (cpu/isa.hpp).
    cpu() = default;
    explicit cpu(glimpse::matmul_precision p) : precision_(p) {}

    // Which kernels this backend runs; set_isa refuses a level the CPU lacks.
    cpu_isa isa() const { return isa_; }
    void set_isa(cpu_isa i) {
        detail::cpu_impl::require_isa(i, "cpu backend");
        isa_ = i;
    }
    // Queries per attention tile at the current level.
    std::int64_t attention_tile_q() const { return detail::cpu_impl::attention_kernel(isa_).tile_q; }

    // f32 (the default) or bf16 inputs for gemm; see core/backend.hpp.
    void set_matmul_precision(glimpse::matmul_precision p) { precision_ = p; }
    glimpse::matmul_precision matmul_precision() const { return precision_; }
    // Whether bf16 gemms run on bf16 hardware (AMX tiles or VDPBF16PS), else on f32 FMAs over
    // rounded operands: the same meaning, at f32 speed.
    bool bf16_gemm_native() const { return isa_ >= cpu_isa::avx512_bf16; }
    // Which kernel runs a Linear's gemm (rows of x and of W contiguous in K, the towers' and
    // the head's call) under the current matmul precision, for --verbose and benchmark labels:
    // route()'s answer, named.
    std::string_view gemm_kernel() const {
        switch (route_for(true, 1)) {
            case gemm_route::amx:
                return "bf16 on AMX tiles";
            case gemm_route::packed:
                if (precision_ == glimpse::matmul_precision::f32) return "f32 packed FMA (avx512)";
                return isa_ >= cpu_isa::avx512_bf16 ? "bf16 on VDPBF16PS (avx512_bf16)"
                                                    : "bf16 emulated: packed f32 FMA on rounded operands";
            case gemm_route::emulated:
                return "bf16 emulated: sgemm on rounded operands";
            case gemm_route::blas:
                break;
        }
        return "f32 BLAS sgemm";
    }

    void copy(const cview& src, const view& dst) {
        detail::check(src.shape() == dst.shape(), "copy: ", src.shape().str(), " -> ", dst.shape().str());
        if (src.type() == dst.type() && src.is_contiguous() && dst.is_contiguous()) {
            if (src.numel())
                std::memcpy(dst.data(), src.data(), static_cast<std::size_t>(src.numel()) * itemsize(src.type()));
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
        std::vector<float> bias_f32(static_cast<std::size_t>(bias.empty() ? 0 : d.n));
        if (!bias.empty()) detail::cpu_impl::widen(bias.reshape(shape{1, d.n}), 0, 1, 0, d.n, bias_f32.data());
        for (std::int64_t p = 0; p < d.batch; ++p) {
            const cview A = d.batched_a ? a.select(0, p) : a;
            const cview B = d.batched_b ? b.select(0, p) : b;
            const view C = c.rank() == 3 ? c.select(0, p) : c;
            // The packed kernels add the bias as they store C. Elsewhere, with beta = 0, it goes
            // in first and the product adds onto it (beta = 1): one pass over C instead of a
            // second full read-modify-write after the GEMM.
            gemm_args gb = g;
            const float* epilogue = nullptr;
            if (!bias.empty()) {
                if (route(A, B, g, d.k) == gemm_route::packed)
                    epilogue = bias_f32.data();
                else if (g.beta == 0.0f) {
                    bias_rows(C, bias_f32);
                    gb.beta = 1.0f;
                }
            }
            gemm2d(A, B, C, gb, d.m, d.n, d.k, epilogue);
            if (!bias.empty() && !epilogue && g.beta != 0.0f) add_bias(C, bias_f32);
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
        const auto f = rows().activate;
        unary(x, out, [act, f](const float* in, float* o, std::int64_t n) { f(act, in, o, n); });
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
            const auto f = rows().swiglu;
            detail::cpu_impl::parallel_rows(m, n * 8,
                                            [&](std::int64_t i) { f(G + i * ldg, U + i * ldu, O + i * ldo, n); });
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
        const auto f = rows().softmax;
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) { f(p + i * ld, n, scale); });
    }

    void rms_norm(const cview& x, const cview& w, float eps, const view& out) {
        detail::check_norm(x, w, cview{}, out, "rms_norm");
        norm_rows(x, w, cview{}, out,
                  [eps, f = rows().rms_norm](const float* X, float* o, const float* W, const float*, std::int64_t n) {
                      f(X, o, W, n, eps);
                  });
    }

    void layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out) {
        detail::check_norm(x, w, b, out, "layer_norm");
        norm_rows(x, w, b, out,
                  [eps, f = rows().layer_norm](const float* X, float* o, const float* W, const float* Bp,
                                               std::int64_t n) { f(X, o, W, Bp, n, eps); });
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
        for (std::size_t j = 0; j < acc.size(); ++j)
            out.set({static_cast<std::int64_t>(j)}, static_cast<float>(acc[j]));
    }

    void rotary(const view& x, const cview& cos, const cview& sin) {
        detail::check_rotary(x, cos, sin);
        const std::int64_t s = x.size(0), h = x.size(1), d = x.size(2), half = d / 2;
        detail::check(x.stride(2) == 1, "rotary: x needs unit inner stride");
        std::vector<float> cbuf(static_cast<std::size_t>(s * d)), sbuf(static_cast<std::size_t>(s * d));
        detail::cpu_impl::widen(cos, 0, s, 0, d, cbuf.data());
        detail::cpu_impl::widen(sin, 0, s, 0, d, sbuf.data());
        float* base = x.ptr<float>();
        const auto f = rows().rotary;
        detail::cpu_impl::parallel_rows(s, h * d * 4, [&](std::int64_t t) {
            for (std::int64_t j = 0; j < h; ++j)
                f(base + t * x.stride(0) + j * x.stride(1), cbuf.data() + t * d, sbuf.data() + t * d, half);
        });
    }

    void gather_rows(const cview& src, std::span<const std::int64_t> idx, const view& out) {
        detail::check_gather(src, idx, out);
        detail::cpu_impl::parallel_rows(
            static_cast<std::int64_t>(idx.size()), src.numel() / std::max<std::int64_t>(1, src.size(0)),
            [&](std::int64_t i) { copy_serial(src.select(0, idx[static_cast<std::size_t>(i)]), out.select(0, i)); });
    }

    void attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a) {
        namespace ci = detail::cpu_impl;
        const auto d = detail::check_attention(q, k, v, out, a);
        // Inputs widened once to f32 (they are activations: usually f32 already).
        tensor qf, kf, vf;
        const cview Q = as_f32(q, qf), K = as_f32(k, kf), V = as_f32(v, vf);
        const auto& maps = a.maps;
        tensor qw;
        const cview QW = maps.pooled.empty() ? cview{} : as_f32(maps.query_weights, qw);
        if (!maps.per_head.empty()) fill(maps.per_head, 0.0f);
        if (!maps.mean.empty()) fill(maps.mean, 0.0f);
        if (!maps.pooled.empty()) fill(maps.pooled, 0.0f);
        const ci::attn_problem p{Q.ptr<float>(),
                                 K.ptr<float>(),
                                 V.ptr<float>(),
                                 out.ptr<float>(),
                                 Q.stride(0),
                                 Q.stride(1),
                                 K.stride(0),
                                 K.stride(1),
                                 V.stride(0),
                                 V.stride(1),
                                 out.stride(0),
                                 out.stride(1),
                                 d.d,
                                 d.dv,
                                 a.scale * 1.4426950408889634f,
                                 a.mask.empty() ? nullptr : a.mask.ptr<float>(),
                                 a.mask.empty() ? 0 : a.mask.stride(0)};
        ci::attention_kernel(isa_).run(ci::attn_call{p, d, a.segments, maps, QW});
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
    cpu_isa isa_ = detail::cpu_impl::default_isa();

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

    const detail::cpu_impl::row_kernels& rows() const { return detail::cpu_impl::row_kernels_of(isa_); }

    // View as f32: itself when it already is, else widened into `holder`.
    cview as_f32(const cview& v, tensor& holder) {
        if (v.type() == dtype::f32 && v.stride(-1) == 1) return v;
        holder = tensor(v.shape(), dtype::f32);
        copy(v, holder.v());
        return holder.cv();
    }

    // Which kernel runs a 2-D gemm: AMX tiles, the packed AVX-512 kernels, or the BLAS (f32) and
    // its emulation of bf16 precision (levels below AVX-512).
    enum class gemm_route { amx, packed, blas, emulated };
    gemm_route route(const cview& A, const cview& B, const gemm_args& g, std::int64_t k) const {
        // A Linear's layout: rows of op(A) and columns of op(B) contiguous in K, f32 or bf16.
        const auto row_major = [](const cview& x, bool trans_is_rows) {
            return trans_is_rows && x.stride(-1) == 1 && (x.type() == dtype::f32 || x.type() == dtype::bf16);
        };
        return route_for(row_major(A, !g.trans_a) && row_major(B, g.trans_b), k);
    }
    gemm_route route_for(bool linear_layout, std::int64_t k) const {
        const bool bf16 = precision_ == glimpse::matmul_precision::bf16;
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
        if (bf16 && k > 0 && isa_ == cpu_isa::amx) return gemm_route::amx;
#endif
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (bf16 && k > 0 && isa_ >= cpu_isa::avx512) return gemm_route::packed;
        // f32: a Linear's layout is packed with vector code, where the kernel beats the BLAS
        // (docs/benchmarks.md).
        if (!bf16 && isa_ >= cpu_isa::avx512 && k > 0 && linear_layout) return gemm_route::packed;
#else
        (void)linear_layout;
#endif
        return bf16 ? gemm_route::emulated : gemm_route::blas;
    }

    // C = alpha op(A) op(B) + beta C, + bias_epilogue [n] on the packed route (else null).
    void gemm2d(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m, std::int64_t n,
                std::int64_t k, const float* bias_epilogue) {
        const gemm_route r = route(A, B, g, k);
        if (precision_ == glimpse::matmul_precision::bf16) {
            gemm2d_bf16(A, B, C, g, m, n, k, r, bias_epilogue);
            return;
        }
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (r == gemm_route::packed) {
            detail::cpu_impl::packed::gemm(
                {A.data(), A.type(), A.stride(0), false}, {B.data(), B.type(), B.stride(0), true}, m, n, k, g.alpha,
                g.beta, C.ptr<float>(), C.stride(0), detail::cpu_impl::packed::slots::f32, bias_epilogue);
            return;
        }
#endif
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
            detail::cpu_impl::sgemm(g.trans_a, g.trans_b, m, nb, k, g.alpha, Af.ptr<float>(), Af.stride(0),
                                    panel.data(), g.trans_b ? k : nb, g.beta, c + n0, C.stride(0));
        }
    }

    void gemm2d_bf16(const cview& A, const cview& B, const view& C, const gemm_args& g, std::int64_t m, std::int64_t n,
                     std::int64_t k, gemm_route r, const float* bias_epilogue) {
        using detail::cpu_impl::gemm_operand;
        const gemm_operand a{A.data(), A.type(), A.stride(0), g.trans_a};
        const gemm_operand b{B.data(), B.type(), B.stride(0), g.trans_b};
        float* c = C.ptr<float>();
#if defined(GLIMPSE_CPU_HAVE_AMX_CODE)
        if (r == gemm_route::amx) {
            detail::cpu_impl::bf16_gemm_amx(a, b, m, n, k, g.alpha, g.beta, c, C.stride(0));
            return;
        }
#endif
#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
        if (r == gemm_route::packed) {
            using detail::cpu_impl::packed::slots;
            detail::cpu_impl::packed::gemm(a, b, m, n, k, g.alpha, g.beta, c, C.stride(0),
                                           isa_ >= cpu_isa::avx512_bf16 ? slots::bf16_pairs : slots::bf16_rounded,
                                           bias_epilogue);
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

    // C[i, :] = b for every row.
    void bias_rows(const view& C, const std::vector<float>& b) {
        const std::int64_t m = C.size(0), n = C.size(1);
        float* c = C.ptr<float>();
        detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) {
            std::memcpy(c + i * C.stride(0), b.data(), static_cast<std::size_t>(n) * sizeof(float));
        });
    }

    void add_bias(const view& C, const std::vector<float>& b) {
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
            detail::cpu_impl::rows_view(out, m, n, ldo) &&
            (bcast ? b.stride(0) == 1 : detail::cpu_impl::rows_view(b, m2, n, ldb))) {
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
            detail::cpu_impl::parallel_rows(
                m, n * 8, [&](std::int64_t i) { f(X.ptr<float>() + i * ldx, out.ptr<float>() + i * ldo, n); });
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
            f(X.ptr<float>() + i * ldx, out.ptr<float>() + i * ldo, W.data(), Bv.empty() ? nullptr : Bv.data(), n);
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
            store_f32(dst.data(), dst.type(), doffs[static_cast<std::size_t>(flat)],
                      load_f32(src.data(), src.type(), off));
        });
    }
};

static_assert(Backend<cpu>);
static_assert(TrainingBackend<cpu>);

}  // namespace glimpse
