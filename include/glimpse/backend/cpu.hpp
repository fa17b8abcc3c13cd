#pragma once
// glimpse::cpu — the fast CPU backend: Eigen for the math, OpenMP across rows,
// heads and query tiles, and (when the build found one, GLIMPSE_HAVE_CBLAS) a
// CBLAS sgemm for the large projection GEMMs, which measured ~15 % faster than
// Eigen's own GEMM on the AVX-512 machines we target (docs/benchmarks.md).
//
// Storage dtypes of weights are honoured without keeping f32 copies: a bf16/f16
// operand of gemm is widened one panel of `kPanel` rows at a time into a
// per-call scratch, so memory stays at the bf16 size while the math is f32.
//
// Attention is computed per query tile (kTileQ queries x all keys of their
// segment, for every head), so peak scratch is O(threads * kTileQ * S) and the
// attention maps a caller asks for are accumulated tile by tile; no H x S x S
// tensor ever exists unless `maps.per_head` is requested.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#if defined(GLIMPSE_HAVE_CBLAS)
#include <cblas.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

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

// Row-major sgemm on raw pointers: C = alpha op(A) op(B) + beta C.
inline void sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
#if defined(GLIMPSE_HAVE_CBLAS)
    // BLAS threads itself; inside our own parallel regions Eigen (serial when
    // nested) avoids oversubscribing the cores.
    if (!in_parallel()) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                    static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                    beta, c, static_cast<int>(ldc));
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

}  // namespace detail::cpu_impl

class cpu : public detail::host_memory<cpu> {
public:
    static constexpr std::string_view name() { return "cpu"; }

    // Query-tile height of the attention op and panel height of weight widening.
    static constexpr std::int64_t kTileQ = 64;
    static constexpr std::int64_t kPanel = 256;

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
            gemm2d(A, B, C, g, d.m, d.n, d.k);
            if (!bias.empty()) add_bias(C, bias);
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
        };
        std::vector<tile> tiles;
        {
            std::vector<std::int64_t> seg(a.segments.begin(), a.segments.end());
            if (seg.empty()) seg = {0, d.sq};
            for (std::size_t s = 0; s + 1 < seg.size(); ++s)
                for (std::int64_t q0 = seg[s]; q0 < seg[s + 1]; q0 += kTileQ)
                    tiles.push_back({q0, std::min(q0 + kTileQ, seg[s + 1]), a.segments.empty() ? 0 : seg[s],
                                     a.segments.empty() ? d.sk : seg[s + 1]});
        }
        const std::int64_t nt = static_cast<std::int64_t>(tiles.size());
        const float inv_h = 1.0f / static_cast<float>(d.h);
        int nthreads = 1;
#if defined(_OPENMP)
        nthreads = omp_get_max_threads();
#endif
        // Per-thread partial sums for the pooled maps (queries of all tiles add into them).
        std::vector<float> pooled_partial(R ? static_cast<std::size_t>(nthreads * R * d.h * d.sk) : 0, 0.0f);

#pragma omp parallel if (nt > 1)
        {
            int tid = 0;
#if defined(_OPENMP)
            tid = omp_get_thread_num();
#endif
            std::vector<float> scores(static_cast<std::size_t>(kTileQ * d.sk));
#pragma omp for schedule(dynamic, 1)
            for (std::int64_t ti = 0; ti < nt; ++ti) {
                const tile t = tiles[static_cast<std::size_t>(ti)];
                const std::int64_t tq = t.q1 - t.q0, nk = t.k1 - t.k0;
                for (std::int64_t h = 0; h < d.h; ++h) {
                    const float* qp = Q.ptr<float>() + t.q0 * Q.stride(0) + h * Q.stride(1);
                    const float* kp = K.ptr<float>() + t.k0 * K.stride(0) + h * K.stride(1);
                    const float* vp = V.ptr<float>() + t.k0 * V.stride(0) + h * V.stride(1);
                    float* op = out.ptr<float>() + t.q0 * out.stride(0) + h * out.stride(1);
                    float* S = scores.data();
                    detail::cpu_impl::sgemm(false, true, tq, nk, d.d, a.scale, qp, Q.stride(0), kp, K.stride(0), 0.0f, S, nk);
                    for (std::int64_t i = 0; i < tq; ++i) {
                        float* row = S + i * nk;
                        if (!a.mask.empty()) {
                            const float* mrow = a.mask.ptr<float>() + (t.q0 + i) * a.mask.stride(0) + t.k0;
                            for (std::int64_t j = 0; j < nk; ++j) row[j] += mrow[j];
                        }
                        softmax_row(row, nk, 1.0f);
                        if (!maps.per_head.empty()) {
                            float* dst = maps.per_head.ptr<float>() + (h * d.sq + t.q0 + i) * d.sk + t.k0;
                            std::memcpy(dst, row, static_cast<std::size_t>(nk) * sizeof(float));
                        }
                        if (!maps.mean.empty()) {
                            float* dst = maps.mean.ptr<float>() + (t.q0 + i) * d.sk + t.k0;
                            for (std::int64_t j = 0; j < nk; ++j) dst[j] += row[j] * inv_h;
                        }
                        for (std::int64_t r = 0; r < R; ++r) {
                            const float w = QW.ptr<float>()[r * QW.stride(0) + t.q0 + i];
                            if (w == 0.0f) continue;
                            float* dst = pooled_partial.data() + ((tid * R + r) * d.h + h) * d.sk + t.k0;
                            for (std::int64_t j = 0; j < nk; ++j) dst[j] += w * row[j];
                        }
                    }
                    detail::cpu_impl::sgemm(false, false, tq, d.dv, nk, 1.0f, S, nk, vp, V.stride(0), 0.0f, op, out.stride(0));
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

private:
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

}  // namespace glimpse
