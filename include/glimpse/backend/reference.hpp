#pragma once
// glimpse::reference — the oracle backend.
//
// Plain and obviously correct, never fast: every operand is first read into an
// f64 xtensor array through its strides, the op is written as the textbook
// formula (xtensor expressions where they read like the math, loops where they
// don't), and the result is rounded once into the output view. Other backends
// are tested against this one op by op (tests/backend), the way ggml's
// test-backend-ops holds every backend to its CPU reference.

#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "glimpse/backend/host_memory.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse {

namespace detail {

inline xt::xarray<double> to_xarray(const cview& v) {
    std::vector<std::size_t> shp(v.shape().dims().begin(), v.shape().dims().end());
    xt::xarray<double> out = xt::zeros<double>(shp);
    for_each_offset(v, [&](std::int64_t flat, std::int64_t off) {
        out.flat(static_cast<std::size_t>(flat)) = load_f32(v.data(), v.type(), off);
    });
    return out;
}

inline void from_xarray(const xt::xarray<double>& x, const view& out) {
    check(static_cast<std::int64_t>(x.size()) == out.numel(), "reference: result of ", x.size(), " elements for ",
          out.shape());
    for_each_offset(out, [&](std::int64_t flat, std::int64_t off) {
        store_f32(out.data(), out.type(), off, static_cast<float>(x.flat(static_cast<std::size_t>(flat))));
    });
}

inline double act_ref(activation a, double x) {
    constexpr double kSqrt2OverPi = 0.79788456080286535588;
    switch (a) {
        case activation::identity:
            return x;
        case activation::silu:
            return x / (1.0 + std::exp(-x));
        case activation::gelu_erf:
            return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        case activation::gelu_tanh:
            return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
    }
    return x;
}

// d act(x) / dx, the textbook derivatives (for activate_backward).
inline double act_grad_ref(activation a, double x) {
    constexpr double kSqrt2OverPi = 0.79788456080286535588;
    constexpr double kInvSqrt2Pi = 0.39894228040143267794;
    switch (a) {
        case activation::identity:
            return 1.0;
        case activation::silu: {
            const double sg = 1.0 / (1.0 + std::exp(-x));
            return sg * (1.0 + x * (1.0 - sg));
        }
        case activation::gelu_erf:
            return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
        case activation::gelu_tanh: {
            const double t = std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x));
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x * x);
        }
    }
    return 1.0;
}

}  // namespace detail

class reference : public detail::host_memory<reference> {
public:
    static constexpr std::string_view name() { return "reference"; }

    void copy(const cview& src, const view& dst) {
        detail::check(src.shape() == dst.shape(), "copy: ", src.shape(), " -> ", dst.shape());
        detail::from_xarray(detail::to_xarray(src), dst);
    }

    void fill(const view& v, float value) {
        detail::for_each_offset(v, [&](std::int64_t, std::int64_t off) { store_f32(v.data(), v.type(), off, value); });
    }

    void gemm(const cview& a, const cview& b, const view& c, const gemm_args& g, const cview& bias) {
        const auto d = detail::check_gemm(a, b, c, g, bias);
        auto A = detail::to_xarray(a);
        auto B = detail::to_xarray(b);
        auto C = detail::to_xarray(c);
        auto Bias = bias.empty() ? xt::xarray<double>() : detail::to_xarray(bias);
        for (std::int64_t p = 0; p < d.batch; ++p) {
            for (std::int64_t i = 0; i < d.m; ++i) {
                for (std::int64_t j = 0; j < d.n; ++j) {
                    double acc = 0.0;
                    for (std::int64_t l = 0; l < d.k; ++l) {
                        const double x = elem(A, d.batched_a, p, g.trans_a ? l : i, g.trans_a ? i : l);
                        const double y = elem(B, d.batched_b, p, g.trans_b ? j : l, g.trans_b ? l : j);
                        acc += x * y;
                    }
                    double& out = (c.rank() == 3) ? C(p, i, j) : C(i, j);
                    out = g.alpha * acc + (g.beta == 0.0f ? 0.0 : g.beta * out) +
                          (bias.empty() ? 0.0 : Bias(static_cast<std::size_t>(j)));
                }
            }
        }
        detail::from_xarray(C, c);
    }

    void add(const cview& a, const cview& b, const view& out, float alpha) {
        detail::check_binary(a, b, out, "add");
        detail::from_xarray(
            xt::xarray<double>(detail::to_xarray(a) + static_cast<double>(alpha) * detail::to_xarray(b)), out);
    }

    void mul(const cview& a, const cview& b, const view& out) {
        detail::check_binary(a, b, out, "mul");
        detail::from_xarray(xt::xarray<double>(detail::to_xarray(a) * detail::to_xarray(b)), out);
    }

    void activate(activation act, const cview& x, const view& out) {
        detail::check_same(x, out, "activate");
        auto X = detail::to_xarray(x);
        for (auto& e : X) e = detail::act_ref(act, e);
        detail::from_xarray(X, out);
    }

    void swiglu(const cview& gate, const cview& up, const view& out) {
        detail::check_same(gate, out, "swiglu");
        detail::check_same(up, out, "swiglu");
        auto G = detail::to_xarray(gate);
        for (auto& e : G) e = detail::act_ref(activation::silu, e);
        detail::from_xarray(xt::xarray<double>(G * detail::to_xarray(up)), out);
    }

    void softmax_rows(const view& x, float scale) {
        auto X = rows2d(x);
        for (std::size_t i = 0; i < X.shape()[0]; ++i) {
            auto row = xt::view(X, i, xt::all());
            row *= static_cast<double>(scale);
            const double mx = xt::amax(row)();
            row = xt::exp(row - mx);
            row /= xt::sum(row)();
        }
        detail::from_xarray(X, x);
    }

    void rms_norm(const cview& x, const cview& w, float eps, const view& out) {
        detail::check_norm(x, w, cview{}, out, "rms_norm");
        auto X = rows2d(x);
        const auto W = detail::to_xarray(w);
        for (std::size_t i = 0; i < X.shape()[0]; ++i) {
            auto row = xt::view(X, i, xt::all());
            const double ms = xt::mean(row * row)();
            row = row / std::sqrt(ms + static_cast<double>(eps)) * W;
        }
        detail::from_xarray(X, out);
    }

    void layer_norm(const cview& x, const cview& w, const cview& b, float eps, const view& out) {
        detail::check_norm(x, w, b, out, "layer_norm");
        auto X = rows2d(x);
        const auto W = detail::to_xarray(w);
        const auto Bv = b.empty() ? xt::xarray<double>(xt::zeros<double>({W.size()})) : detail::to_xarray(b);
        for (std::size_t i = 0; i < X.shape()[0]; ++i) {
            auto row = xt::view(X, i, xt::all());
            const double mu = xt::mean(row)();
            const double var = xt::mean((row - mu) * (row - mu))();  // biased, as torch
            row = (row - mu) / std::sqrt(var + static_cast<double>(eps)) * W + Bv;
        }
        detail::from_xarray(X, out);
    }

    void sum_rows(const cview& x, const view& out) {
        detail::check(x.rank() == 2 && out.rank() == 1 && out.size(0) == x.size(1), "sum_rows: x ", x.shape(),
                      " -> out ", out.shape());
        detail::check_f32(out, "sum_rows", "out");
        const auto X = detail::to_xarray(x);
        xt::xarray<double> total = xt::zeros<double>({static_cast<std::size_t>(x.size(1))});
        for (std::size_t i = 0; i < X.shape()[0]; ++i) total += xt::view(X, i, xt::all());
        detail::from_xarray(total, out);
    }

    void rotary(const view& x, const cview& cos, const cview& sin) {
        detail::check_rotary(x, cos, sin);
        auto X = detail::to_xarray(x);
        const auto C = detail::to_xarray(cos), S = detail::to_xarray(sin);
        const auto n = X.shape();
        const std::size_t half = n[2] / 2;
        for (std::size_t s = 0; s < n[0]; ++s)
            for (std::size_t h = 0; h < n[1]; ++h)
                for (std::size_t i = 0; i < half; ++i) {
                    const double x1 = X(s, h, i), x2 = X(s, h, i + half);
                    X(s, h, i) = x1 * C(s, i) - x2 * S(s, i);  // rotate_half: [-x2, x1]
                    X(s, h, i + half) = x2 * C(s, i + half) + x1 * S(s, i + half);
                }
        detail::from_xarray(X, x);
    }

    void gather_rows(const cview& src, std::span<const std::int64_t> idx, const view& out) {
        detail::check_gather(src, idx, out);
        for (std::size_t i = 0; i < idx.size(); ++i)
            copy(src.select(0, idx[i]), out.select(0, static_cast<std::int64_t>(i)));
    }

    void attention(const cview& q, const cview& k, const cview& v, const view& out, const attention_args& a) {
        const auto d = detail::check_attention(q, k, v, out, a);
        const auto Q = detail::to_xarray(q), K = detail::to_xarray(k), V = detail::to_xarray(v);
        const auto M = a.mask.empty() ? xt::xarray<double>() : detail::to_xarray(a.mask);
        const auto W = a.maps.pooled.empty() ? xt::xarray<double>() : detail::to_xarray(a.maps.query_weights);
        xt::xarray<double> O = xt::zeros<double>({d.sq, d.h, d.dv});
        xt::xarray<double> P = xt::zeros<double>({d.h, d.sq, d.sk});
        for (std::int64_t h = 0; h < d.h; ++h) {
            for (std::int64_t i = 0; i < d.sq; ++i) {
                const auto [lo, hi] = detail::segment_of(a.segments, i, d.sk);
                std::vector<double> s(static_cast<std::size_t>(d.sk), -INFINITY);
                double mx = -INFINITY;
                for (std::int64_t j = lo; j < hi; ++j) {
                    double dot = 0.0;
                    for (std::int64_t e = 0; e < d.d; ++e) dot += Q(i, h, e) * K(j, h, e);
                    s[j] = a.scale * dot + (a.mask.empty() ? 0.0 : M(i, j));
                    mx = std::max(mx, s[j]);
                }
                double z = 0.0;
                for (std::int64_t j = lo; j < hi; ++j) z += (s[j] = std::exp(s[j] - mx));
                for (std::int64_t j = lo; j < hi; ++j) {
                    P(h, i, j) = s[j] / z;
                    for (std::int64_t e = 0; e < d.dv; ++e) O(i, h, e) += P(h, i, j) * V(j, h, e);
                }
            }
        }
        detail::from_xarray(O, out);
        const auto& m = a.maps;
        if (!m.per_head.empty()) detail::from_xarray(P, m.per_head);
        if (!m.mean.empty()) detail::from_xarray(xt::eval(xt::mean(P, {0})), m.mean);
        if (!m.pooled.empty()) {
            const auto r = W.shape()[0];
            xt::xarray<double> R =
                xt::zeros<double>({r, static_cast<std::size_t>(d.h), static_cast<std::size_t>(d.sk)});
            for (std::size_t x = 0; x < r; ++x)
                for (std::int64_t h = 0; h < d.h; ++h)
                    for (std::int64_t i = 0; i < d.sq; ++i)
                        for (std::int64_t j = 0; j < d.sk; ++j) R(x, h, j) += W(x, i) * P(h, i, j);
            detail::from_xarray(R, m.pooled);
        }
    }

    // ---- backward ops (TrainingBackend) ----

    void softmax_rows_backward(const cview& p, const cview& dp, float scale, const view& dx) {
        detail::check_softmax_backward(p, dp, dx);
        auto P = rows2d(p), G = rows2d(dp);
        for (std::size_t i = 0; i < P.shape()[0]; ++i) {
            auto pr = xt::view(P, i, xt::all());
            auto gr = xt::view(G, i, xt::all());
            const double dot = xt::sum(pr * gr)();
            gr = static_cast<double>(scale) * pr * (gr - dot);
        }
        detail::from_xarray(G, dx);
    }

    void activate_backward(activation act, const cview& x, const cview& dy, const view& dx) {
        detail::check_activate_backward(x, dy, dx);
        auto X = detail::to_xarray(x);
        for (auto& e : X) e = detail::act_grad_ref(act, e);
        detail::from_xarray(xt::xarray<double>(X * detail::to_xarray(dy)), dx);
    }

    // y = x_hat . w, x_hat = x r, r = 1/sqrt(mean(x^2) + eps):
    // dx = r (g - x_hat mean(g . x_hat)) with g = dy . w.
    void rms_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx, const view& dw) {
        detail::check_norm_backward(x, w, dy, dx, dw, "rms_norm_backward");
        auto X = rows2d(x), G = rows2d(dy);
        const auto W = detail::to_xarray(w);
        xt::xarray<double> DW = xt::zeros<double>({W.size()});
        for (std::size_t i = 0; i < X.shape()[0]; ++i) {
            auto xr = xt::view(X, i, xt::all());
            auto gr = xt::view(G, i, xt::all());
            const double r = 1.0 / std::sqrt(xt::mean(xr * xr)() + static_cast<double>(eps));
            const xt::xarray<double> xh = xr * r;
            DW += gr * xh;
            const xt::xarray<double> g = gr * W;
            const double c = xt::mean(g * xh)();
            gr = r * (g - xh * c);
        }
        detail::from_xarray(G, dx);
        if (!dw.empty()) detail::from_xarray(DW, dw);
    }

    // y = x_hat . w + b, x_hat = (x - mu) r, r = 1/sqrt(var + eps) (biased var):
    // dx = r (g - mean(g) - x_hat mean(g . x_hat)) with g = dy . w.
    void layer_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx,
                             const view& dw) {
        detail::check_norm_backward(x, w, dy, dx, dw, "layer_norm_backward");
        auto X = rows2d(x), G = rows2d(dy);
        const auto W = detail::to_xarray(w);
        xt::xarray<double> DW = xt::zeros<double>({W.size()});
        for (std::size_t i = 0; i < X.shape()[0]; ++i) {
            auto xr = xt::view(X, i, xt::all());
            auto gr = xt::view(G, i, xt::all());
            const double mu = xt::mean(xr)();
            const double var = xt::mean((xr - mu) * (xr - mu))();
            const double r = 1.0 / std::sqrt(var + static_cast<double>(eps));
            const xt::xarray<double> xh = (xr - mu) * r;
            DW += gr * xh;
            const xt::xarray<double> g = gr * W;
            const double gm = xt::mean(g)(), c = xt::mean(g * xh)();
            gr = r * (g - gm - xh * c);
        }
        detail::from_xarray(G, dx);
        if (!dw.empty()) detail::from_xarray(DW, dw);
    }

private:
    static double elem(const xt::xarray<double>& t, bool batched, std::int64_t p, std::int64_t i, std::int64_t j) {
        return batched ? t(p, i, j) : t(i, j);
    }
    // [.., N] viewed as [M, N] rows (a copy in f64).
    static xt::xarray<double> rows2d(const cview& x) {
        detail::check(x.rank() >= 1, "row op on a scalar");
        auto X = detail::to_xarray(x);
        const auto n = static_cast<std::size_t>(x.size(-1));
        X.reshape({n == 0 ? 0 : X.size() / n, n});
        return X;
    }
};

static_assert(Backend<reference>);
static_assert(TrainingBackend<reference>);

}  // namespace glimpse
