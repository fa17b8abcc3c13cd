#pragma once
// The cpu backend's backward ops (core/backend.hpp's TrainingBackend): softmax rows,
// activations and the two norms, row by row in Eigen arrays with f64 reductions. The norms'
// weight gradients are summed over fixed blocks of rows, so they do not depend on the thread
// count (a resumed training run is bit-exact with the same count).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "glimpse/backend/cpu/row_loops.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse::detail::cpu_impl {

// Row-wise norm backward: f(x_row, dy_row, w, dx_row, dw_partial). The dw reduction runs
// over fixed blocks of rows, each into its own f64 partial, summed in block order: the
// result does not depend on the thread count.
template <class F>
void norm_backward_rows(const cview& x, const cview& w, const cview& dy, const view& dx, const view& dw, F f) {
    constexpr std::int64_t kRows = 64;
    tensor xh, gh;
    std::int64_t m, n, ldx, ldg, ldo;
    const cview X = f32_rows(x, xh, m, n, ldx), G = f32_rows(dy, gh, m, n, ldg);
    detail::check(dx.rows(m, n, ldo), "norm backward: dx ", dx.shape(), " must have collapsible rows");
    Eigen::ArrayXf W(n);
    widen(w.reshape(shape{1, n}), 0, 1, 0, n, W.data());
    const std::int64_t nb = (m + kRows - 1) / kRows;
    std::vector<double> part(dw.empty() ? 0 : static_cast<std::size_t>(nb * n), 0.0);
    const float* xp = X.ptr<float>();
    const float* gp = G.ptr<float>();
    float* op = dx.ptr<float>();
    parallel_rows(nb, kRows * n * 8, [&](std::int64_t b) {
        double* acc = part.empty() ? nullptr : part.data() + b * n;
        for (std::int64_t i = b * kRows; i < std::min(m, (b + 1) * kRows); ++i)
            f(ArrMapC(xp + i * ldx, n), ArrMapC(gp + i * ldg, n), W, op + i * ldo, acc);
    });
    if (dw.empty()) return;
    std::vector<double> total(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t j = 0; j < n; ++j)
            total[static_cast<std::size_t>(j)] += part[static_cast<std::size_t>(b * n + j)];
    for (std::int64_t j = 0; j < n; ++j) dw.set({j}, static_cast<float>(total[static_cast<std::size_t>(j)]));
}

inline void softmax_rows_backward(const cview& p, const cview& dp, float scale, const view& dx) {
    detail::check_softmax_backward(p, dp, dx);
    tensor ph, gh;
    std::int64_t m, n, ldp, ldg, ldx;
    const cview P = f32_rows(p, ph, m, n, ldp), G = f32_rows(dp, gh, m, n, ldg);
    detail::check(dx.rows(m, n, ldx), "softmax_rows_backward: dx ", dx.shape(), " must have rows with unit stride");
    const float* pp = P.ptr<float>();
    const float* gp = G.ptr<float>();
    float* op = dx.ptr<float>();
    parallel_rows(m, n * 4, [&](std::int64_t i) {
        ArrMapC pr(pp + i * ldp, n), gr(gp + i * ldg, n);
        const auto dot = static_cast<float>((pr.cast<double>() * gr.cast<double>()).sum());
        ArrMap(op + i * ldx, n) = scale * pr * (gr - dot);  // elementwise: dx may alias dp
    });
}

inline void activate_backward(activation act, const cview& x, const cview& dy, const view& dx) {
    detail::check_activate_backward(x, dy, dx);
    tensor xh, gh;
    std::int64_t m, n, ldx, ldg, ldo;
    const cview X = f32_rows(x, xh, m, n, ldx), G = f32_rows(dy, gh, m, n, ldg);
    detail::check(dx.rows(m, n, ldo), "activate_backward: dx ", dx.shape(), " must have collapsible rows");
    const float* xp = X.ptr<float>();
    const float* gp = G.ptr<float>();
    float* op = dx.ptr<float>();
    parallel_rows(m, n * 8, [&](std::int64_t i) {
        ArrMapC xr(xp + i * ldx, n), gr(gp + i * ldg, n);
        ArrMap o(op + i * ldo, n);
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
                o = gr * (0.5f * (1.0f + t) + 0.5f * xr * (1.0f - t.square()) * k * (1.0f + 3.0f * c * xr.square()));
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

inline void rms_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx,
                              const view& dw) {
    detail::check_norm_backward(x, w, dy, dx, dw, "rms_norm_backward");
    const auto row = [eps](ArrMapC xr, ArrMapC gr, const Eigen::ArrayXf& W, float* o, double* acc) {
        const auto n = xr.size();
        const float r = 1.0f / std::sqrt(static_cast<float>(xr.square().cast<double>().mean()) + eps);
        const Eigen::ArrayXf xh = xr * r;
        const Eigen::ArrayXf g = gr * W;
        const auto c = static_cast<float>((g.cast<double>() * xh.cast<double>()).mean());
        if (acc) Eigen::Map<Eigen::ArrayXd>(acc, n) += (gr * xh).cast<double>();
        ArrMap(o, n) = r * (g - xh * c);
    };
    norm_backward_rows(x, w, dy, dx, dw, row);
}

inline void layer_norm_backward(const cview& x, const cview& w, float eps, const cview& dy, const view& dx,
                                const view& dw) {
    detail::check_norm_backward(x, w, dy, dx, dw, "layer_norm_backward");
    const auto row = [eps](ArrMapC xr, ArrMapC gr, const Eigen::ArrayXf& W, float* o, double* acc) {
        const auto n = xr.size();
        const double mu = xr.cast<double>().mean();
        const double var = (xr.cast<double>() - mu).square().mean();
        const auto r = static_cast<float>(1.0 / std::sqrt(var + eps));
        const Eigen::ArrayXf xh = (xr - static_cast<float>(mu)) * r;
        const Eigen::ArrayXf g = gr * W;
        const auto gm = static_cast<float>(g.cast<double>().mean());
        const auto c = static_cast<float>((g.cast<double>() * xh.cast<double>()).mean());
        if (acc) Eigen::Map<Eigen::ArrayXd>(acc, n) += (gr * xh).cast<double>();
        ArrMap(o, n) = r * (g - gm - xh * c);
    };
    norm_backward_rows(x, w, dy, dx, dw, row);
}

}  // namespace glimpse::detail::cpu_impl
