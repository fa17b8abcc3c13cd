#pragma once
// Backward of the combination step of heatmap/integration.hpp, z from the
// features x [S, D] and the head's delta [S, D]:
//   residual       z = x + delta            dx = dz   d_delta = dz
//   gated_scalar   z = x + tanh(g) delta    dx = dz   d_delta = tanh(g) dz   dg = (1 - tanh^2 g) sum(dz . delta)
//   gated_channel  z = x + tanh(g) . delta  dx = dz   d_delta = tanh(g) . dz dg = (1 - tanh^2 g) . colsum(dz . delta)
//   replace        z = delta                dx = 0    d_delta = dz
// g is [1] (gated_scalar) or [D] (gated_channel); tanh is taken on the host
// like the forward does (g is tiny).

#include <cmath>
#include <cstdint>

#include "glimpse/core/backend.hpp"
#include "glimpse/heatmap/integration.hpp"

namespace glimpse::grad {

template <Backend B>
struct combine_backward_result {
    typename B::tensor dx;       // [S, D] (zeros for replace)
    typename B::tensor d_delta;  // [S, D]
    typename B::tensor d_gate;   // [1] or [D] for gated modes, else empty
};

namespace impl {
inline void check_combine(const cview& x, const cview& delta, const char* who) {
    glimpse::detail::check(delta.rank() == 2, who, ": delta must be [S, D], got ", delta.shape());
    glimpse::detail::check(x.shape() == delta.shape(), who, ": x ", x.shape(), " vs delta ", delta.shape());
}
inline void check_gate(heatmap::combine_mode mode, const cview& gate, std::int64_t D, const char* who) {
    using glimpse::detail::check;
    if (mode == heatmap::combine_mode::gated_scalar)
        check(gate.shape() == shape{1}, who, ": gated_scalar needs gate [1], got ", gate.shape());
    else if (mode == heatmap::combine_mode::gated_channel)
        check(gate.shape() == shape{D}, who, ": gated_channel needs gate [", D, "], got ", gate.shape());
}
}  // namespace impl

// z [S, D], the same formula as heatmap_integration's combine (out of place).
template <Backend B>
typename B::tensor combine(B& be, heatmap::combine_mode mode, const cview& x, const cview& delta, const cview& gate) {
    impl::check_combine(x, delta, "combine");
    impl::check_gate(mode, gate, delta.size(1), "combine");
    auto z = be.alloc(delta.shape(), dtype::f32);
    switch (mode) {
        case heatmap::combine_mode::residual:
            be.add(x, delta, z.v(), 1.0f);
            break;
        case heatmap::combine_mode::replace:
            be.copy(delta, z.v());
            break;
        case heatmap::combine_mode::gated_scalar:
            be.add(x, delta, z.v(), std::tanh(be.download(gate).at({0})));
            break;
        case heatmap::combine_mode::gated_channel: {
            tensor g = be.download(gate).to(dtype::f32);
            for (std::int64_t i = 0; i < g.numel(); ++i) g.ptr<float>()[i] = std::tanh(g.ptr<float>()[i]);
            auto tg = be.upload(g.cv());
            be.mul(delta, tg.cv(), z.v());
            be.add(x, z.cv(), z.v(), 1.0f);
            break;
        }
    }
    return z;
}

// dz = dL/dz [S, D]; gate as given to the forward ([1], [D] or empty).
template <Backend B>
combine_backward_result<B> combine_backward(B& be, heatmap::combine_mode mode, const cview& x, const cview& delta,
                                            const cview& gate, const cview& dz) {
    impl::check_combine(x, delta, "combine_backward");
    glimpse::detail::check(dz.shape() == delta.shape(), "combine_backward: dz must be ", delta.shape(),
                           " (the shape of z), got ", dz.shape());
    impl::check_gate(mode, gate, delta.size(1), "combine_backward");
    const std::int64_t D = delta.size(1);
    combine_backward_result<B> r;
    r.dx = be.alloc(delta.shape(), dtype::f32);
    r.d_delta = be.alloc(delta.shape(), dtype::f32);
    if (mode != heatmap::combine_mode::replace) be.copy(dz, r.dx.v());
    if (mode == heatmap::combine_mode::residual || mode == heatmap::combine_mode::replace) {
        be.copy(dz, r.d_delta.v());
        return r;
    }
    // Gated: t = tanh(g) on the host; colsum(dz . delta) [D] on the backend.
    tensor t = be.download(gate).to(dtype::f32);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = std::tanh(t.ptr<float>()[i]);
    auto prod = be.alloc(delta.shape(), dtype::f32);
    be.mul(dz, delta, prod.v());
    auto colsum = be.alloc(shape{D}, dtype::f32);
    be.sum_rows(prod.cv(), colsum.v());
    tensor cs = be.download(colsum.cv());
    tensor dg(gate.shape(), dtype::f32);
    if (mode == heatmap::combine_mode::gated_scalar) {
        const float tg = t.ptr<float>()[0];
        double s = 0.0;
        for (std::int64_t j = 0; j < D; ++j) s += cs.ptr<float>()[j];
        dg.ptr<float>()[0] = static_cast<float>((1.0 - static_cast<double>(tg) * tg) * s);
        be.add(r.d_delta.cv(), dz, r.d_delta.v(), tg);  // 0 + tanh(g) dz
    } else {
        for (std::int64_t j = 0; j < D; ++j) {
            const double tg = t.ptr<float>()[j];
            dg.ptr<float>()[j] = static_cast<float>((1.0 - tg * tg) * cs.ptr<float>()[j]);
        }
        auto tg = be.upload(t.cv());
        be.mul(dz, tg.cv(), r.d_delta.v());
    }
    r.d_gate = be.upload(dg.cv());
    return r;
}

}  // namespace glimpse::grad
