#pragma once
// glimpse::cpu — the fast CPU backend: the ops of core/backend.hpp on host memory, OpenMP
// across rows, heads and query tiles, SIMD kernels picked at run time per backend object from
// what the CPU has (cpu/isa.hpp, cpu/level_kernels.hpp: isa(), set_isa(), GLIMPSE_CPU_ISA).
// This header holds the backend's state and dispatches; the work lives in cpu/:
//   gemm.hpp        the gemm op and its routes: packed AVX-512 kernels (packed_gemm.hpp), few-row
//                   kernels (skinny_gemm.hpp), oneDNN's matmul where built in (onednn_gemm.hpp),
//                   AMX (bf16_gemm.hpp), the BLAS or Eigen (sgemm.hpp); weights stay in their
//                   storage dtype, widened as they are packed or a panel at a time
//   attention.hpp   the fused flash-style attention (attention_kernel.inc per level): a tile of
//                   queries walks its keys with an online softmax; the maps a caller asks for
//                   are accumulated tile by tile, and no H x S x S tensor exists unless
//                   maps.per_head asks for it
//   row_kernels.inc activations, SwiGLU, softmax rows, the norms and rotary, per level
//   row_loops.hpp   parallel row loops, widening and the strided copies
//   backward.hpp    the TrainingBackend ops
//
// set_matmul_precision(matmul_precision::bf16) rounds gemm inputs to bf16 and sums the
// products in f32: on AMX tiles (level amx), on VDPBF16PS (level avx512_bf16), on the packed
// f32 kernel with operands rounded as they are packed (level avx512), and on an emulation
// through sgemm below that.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "glimpse/backend/cpu/attention.hpp"
#include "glimpse/backend/cpu/backward.hpp"
#include "glimpse/backend/cpu/gemm.hpp"
#include "glimpse/backend/cpu/isa.hpp"
#include "glimpse/backend/cpu/level_kernels.hpp"
#include "glimpse/backend/cpu/row_loops.hpp"
#include "glimpse/backend/host_memory.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace glimpse {

namespace detail::cpu_impl {

// The calling thread's OpenMP team size for the span of one op of a backend whose
// cpu_options::threads is set: every region the op opens (ours, Eigen's) and the BLAS slab split
// read it. nthreads-var is a per-thread (task) setting, so backends with different counts on
// different threads, or an op inside a caller's parallel region, leave each other alone; the
// caller's value is back when the op returns.
class team_scope {
public:
    explicit team_scope(int threads) {
#if defined(_OPENMP)
        if (threads > 0 && threads != omp_get_max_threads()) {
            saved_ = omp_get_max_threads();
            omp_set_num_threads(threads);
        }
#else
        (void)threads;
#endif
    }
    ~team_scope() {
#if defined(_OPENMP)
        if (saved_ > 0) omp_set_num_threads(saved_);
#endif
    }
    team_scope(const team_scope&) = delete;
    team_scope& operator=(const team_scope&) = delete;

private:
    int saved_ = 0;
};

}  // namespace detail::cpu_impl

// How a cpu backend computes; both are properties of the backend value, not of the process.
struct cpu_options {
    glimpse::matmul_precision precision = glimpse::matmul_precision::f32;  // see core/backend.hpp
    // OpenMP threads each op runs on (--threads); 0: OpenMP's default (all cores, or
    // OMP_NUM_THREADS). A CBLAS other than OpenBLAS threads itself and does not see it.
    int threads = 0;
};

class cpu : public detail::host_memory<cpu> {
public:
    static constexpr std::string_view name() { return "cpu"; }

    // The SIMD level is GLIMPSE_CPU_ISA's, else the best this CPU has (cpu/isa.hpp).
    cpu() = default;
    explicit cpu(glimpse::matmul_precision p) : precision_(p) {}
    explicit cpu(const cpu_options& o) : precision_(o.precision) { set_threads(o.threads); }

    int threads() const { return threads_; }
    void set_threads(int n) {
        detail::check(n >= 0, "cpu backend: threads must be >= 0 (0: OpenMP's default), got ", n);
        threads_ = n;
    }

    // Whose kernels run the large Linear-layout GEMMs (cpu/gemm.hpp): GLIMPSE_CPU_GEMM's
    // choice, else oneDNN where the build has it; set_gemm_library refuses onednn elsewhere.
    cpu_gemm_library gemm_library() const { return gemm_library_; }
    void set_gemm_library(cpu_gemm_library l) {
        detail::check(l == cpu_gemm_library::own || cpu_gemm_onednn_built,
                      "cpu backend: this build has no oneDNN (configure with libdnnl-dev installed)");
        gemm_library_ = l;
    }

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
    // f32 (the default) or bf16 operands for attention's two products (q k^T and p v): q, k, v
    // and the probabilities rounded to bf16, sums, softmax and maps in f32 (what a bf16
    // flash-attention kernel computes). On VDPBF16PS at level avx512_bf16 and above, else the f32
    // kernel on the same rounded values. Apart from matmul precision; the tools' --precision bf16
    // sets both.
    void set_attention_precision(glimpse::matmul_precision p) { attention_precision_ = p; }
    glimpse::matmul_precision attention_precision() const { return attention_precision_; }
    // Which attention kernel runs, named (for --verbose and benchmark labels).
    std::string_view attention_kernel_name() const {
        if (attention_precision_ == glimpse::matmul_precision::f32) return "f32";
        return isa_ >= cpu_isa::avx512_bf16 ? "bf16 on VDPBF16PS (avx512_bf16)"
                                            : "bf16 emulated: f32 FMA on rounded operands";
    }
    // Whether bf16 gemms run on bf16 hardware (AMX tiles or VDPBF16PS), else on f32 FMAs over
    // rounded operands: the same meaning, at f32 speed.
    bool bf16_gemm_native() const { return isa_ >= cpu_isa::avx512_bf16; }
    // Which kernel runs a Linear's gemm (rows of x and of W contiguous in K, the towers' and
    // the head's call) under the current matmul precision, for --verbose and benchmark labels:
    // route()'s answer, named.
    std::string_view gemm_kernel() const { return gemm_plan().kernel_name(); }

    void copy(const cview& src, const view& dst) {
        const auto team_guard = team();
        detail::check(src.shape() == dst.shape(), "copy: ", src.shape(), " -> ", dst.shape());
        detail::cpu_impl::copy_rows(src, dst);
    }

    void fill(const view& v, float value) {
        const auto team_guard = team();
        std::int64_t m, n, ld;
        if (v.type() == dtype::f32 && v.rows(m, n, ld)) {
            float* p = v.ptr<float>();
            detail::cpu_impl::parallel_rows(m, n, [&](std::int64_t i) { std::fill_n(p + i * ld, n, value); });
            return;
        }
        detail::for_each_offset(v, [&](std::int64_t, std::int64_t off) { store_f32(v.data(), v.type(), off, value); });
    }

    void gemm(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias) {
        const auto team_guard = team();
        gemm_plan().run(a, b, c, g, bias);
    }

    void add(const cview& a, const cview& b, const view& out, float alpha) {
        const auto team_guard = team();
        detail::check_binary(a, b, out, "add");
        binary(a, b, out, [alpha](float x, float y) { return x + alpha * y; });
    }

    void mul(const cview& a, const cview& b, const view& out) {
        const auto team_guard = team();
        detail::check_binary(a, b, out, "mul");
        binary(a, b, out, [](float x, float y) { return x * y; });
    }

    void activate(activation act, const cview& x, const view& out) {
        const auto team_guard = team();
        detail::check_same(x, out, "activate");
        const auto f = rows().activate;
        unary(x, out, [act, f](const float* in, float* o, std::int64_t n) { f(act, in, o, n); });
    }

    void swiglu(const cview& gate, const cview& up, const view& out) {
        const auto team_guard = team();
        detail::check_same(gate, out, "swiglu");
        detail::check_same(up, out, "swiglu");
        std::int64_t m, n, ldg, ldu, ldo;
        if (gate.type() == dtype::f32 && up.type() == dtype::f32 && gate.rows(m, n, ldg) && up.rows(m, n, ldu) &&
            out.rows(m, n, ldo)) {
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
        const auto team_guard = team();
        std::int64_t m, n, ld;
        detail::check_f32(x, "softmax_rows", "x");
        detail::check(x.rows(m, n, ld), "softmax_rows: x ", x.shape(), " must have rows with unit stride");
        float* p = x.ptr<float>();
        const auto f = rows().softmax;
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) { f(p + i * ld, n, scale); });
    }

    void rms_norm(const cview& x, const cview& w, float eps, const view& out) {
        const auto team_guard = team();
        detail::check_norm(x, w, cview{}, out, "rms_norm");
        norm_rows(x, w, cview{}, out,
                  [eps, f = rows().rms_norm](const float* X, float* o, const float* W, const float*, std::int64_t n) {
                      f(X, o, W, n, eps);
                  });
    }

    void layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out) {
        const auto team_guard = team();
        detail::check_norm(x, w, b, out, "layer_norm");
        norm_rows(x, w, b, out,
                  [eps, f = rows().layer_norm](const float* X, float* o, const float* W, const float* Bp,
                                               std::int64_t n) { f(X, o, W, Bp, n, eps); });
    }

    void sum_rows(const cview& x, const view& out) {
        const auto team_guard = team();
        detail::check(x.rank() == 2 && out.rank() == 1 && out.size(0) == x.size(1), "sum_rows: x ", x.shape(),
                      " -> out ", out.shape());
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
        const auto team_guard = team();
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
        const auto team_guard = team();
        detail::check_gather(src, idx, out);
        detail::cpu_impl::parallel_rows(static_cast<std::int64_t>(idx.size()),
                                        src.numel() / std::max<std::int64_t>(1, src.size(0)), [&](std::int64_t i) {
                                            detail::cpu_impl::copy_rows(src.select(0, idx[static_cast<std::size_t>(i)]),
                                                                        out.select(0, i), false);
                                        });
    }

    void attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a) {
        const auto team_guard = team();
        namespace ci = detail::cpu_impl;
        const auto d = detail::check_attention(q, k, v, out, a);
        // Inputs widened once to f32 (they are activations: usually f32 already).
        tensor qf, kf, vf;
        const cview Q = ci::as_f32(q, qf), K = ci::as_f32(k, kf), V = ci::as_f32(v, vf);
        const auto& maps = a.maps;
        tensor qw;
        const cview QW = maps.pooled.empty() ? cview{} : ci::as_f32(maps.query_weights, qw);
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
                                 a.mask.empty() ? 0 : a.mask.stride(0),
                                 attention_precision_ == glimpse::matmul_precision::bf16};
        ci::attention_kernel(isa_).run(ci::attn_call{p, d, a.segments, maps, QW});
    }

    // ---- backward ops (TrainingBackend): cpu/backward.hpp ----

    void softmax_rows_backward(const cview& p, const cview& dp, float scale, const view& dx) {
        const auto team_guard = team();
        detail::cpu_impl::softmax_rows_backward(p, dp, scale, dx);
    }
    void activate_backward(activation act, const cview& x, const cview& dy, const view& dx) {
        const auto team_guard = team();
        detail::cpu_impl::activate_backward(act, x, dy, dx);
    }
    void rms_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx, const view& dw) {
        const auto team_guard = team();
        detail::cpu_impl::rms_norm_backward(x, w, eps, dy, dx, dw);
    }
    void layer_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx,
                             const view& dw) {
        const auto team_guard = team();
        detail::cpu_impl::layer_norm_backward(x, w, eps, dy, dx, dw);
    }

private:
    glimpse::matmul_precision precision_ = glimpse::matmul_precision::f32;
    glimpse::matmul_precision attention_precision_ = glimpse::matmul_precision::f32;
    cpu_isa isa_ = detail::cpu_impl::default_isa();
    cpu_gemm_library gemm_library_ = detail::cpu_impl::default_gemm_library();
    int threads_ = 0;

    detail::cpu_impl::team_scope team() const { return detail::cpu_impl::team_scope(threads_); }

    detail::cpu_impl::gemm_dispatch gemm_plan() const { return {isa_, precision_, gemm_library_}; }
    const detail::cpu_impl::row_kernels& rows() const { return detail::cpu_impl::row_kernels_of(isa_); }

    // out = f(a, b) elementwise, b equal-shaped or a broadcast row.
    template <class F>
    void binary(const cview& a, const cview& b, const view& out, F f) {
        std::int64_t m, n, lda, ldo, ldb = 0, m2;
        const bool bcast = !(b.shape() == a.shape());
        if (a.type() == dtype::f32 && b.type() == dtype::f32 && a.rows(m, n, lda) && out.rows(m, n, ldo) &&
            (bcast ? b.stride(0) == 1 : b.rows(m2, n, ldb))) {
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
        const cview X = detail::cpu_impl::as_f32(x, holder);
        if (X.rows(m, n, ldx) && out.rows(m, n, ldo)) {
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
        const cview X = detail::cpu_impl::as_f32(x, xh);
        detail::check(X.rows(m, n, ldx) && out.rows(m, n, ldo), "norm: x ", x.shape(),
                      " / out must have collapsible rows");
        std::vector<float> W(static_cast<std::size_t>(n)), Bv(b.empty() ? 0 : static_cast<std::size_t>(n));
        detail::cpu_impl::widen(w.reshape(shape{1, n}), 0, 1, 0, n, W.data());
        if (!b.empty()) detail::cpu_impl::widen(b.reshape(shape{1, n}), 0, 1, 0, n, Bv.data());
        detail::cpu_impl::parallel_rows(m, n * 4, [&](std::int64_t i) {
            f(X.ptr<float>() + i * ldx, out.ptr<float>() + i * ldo, W.data(), Bv.empty() ? nullptr : Bv.data(), n);
        });
    }
};

static_assert(Backend<cpu>);
static_assert(TrainingBackend<cpu>);

}  // namespace glimpse
