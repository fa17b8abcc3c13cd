#pragma once
// Backward of nn::linear, y = x W^T + b with x [M, in], W [out, in], b [out],
// y [M, out], given dy = dL/dy [M, out]:
//   dW = dy^T x   [out, in]     db = sum over rows of dy   [out]
//   dx = dy W     [M, in]
// Three GEMM-shaped ops of the forward vocabulary (gemm with trans_a, sum_rows).
// W may be stored bf16/f16 (widened inside gemm like in the forward); its
// gradient is f32 of the same shape.

#include <cstdint>
#include <string>

#include "glimpse/core/backend.hpp"
#include "glimpse/grad/named_grads.hpp"
#include "glimpse/nn/linear.hpp"

namespace glimpse::grad {

namespace impl {
inline void check_linear(std::int64_t in, std::int64_t out, const cview& x, const cview& dy) {
    glimpse::detail::check(x.rank() == 2 && x.size(1) == in, "linear backward: input must be [M, ", in, "], got ",
                           x.shape());
    glimpse::detail::check(dy.rank() == 2 && dy.shape() == shape{x.size(0), out}, "linear backward: dy must be [",
                           x.size(0), ", ", out, "], got ", dy.shape());
}
}  // namespace impl

// dW (and db) of `l` for the forward input x [M, in] and dy [M, out]: names
// "weight", "bias" as l.visit yields them.
template <Backend B>
named_grads<B> linear_param_grads(B& be, const nn::linear<B>& l, const cview& x, const cview& dy) {
    impl::check_linear(l.in_features(), l.out_features(), x, dy);
    named_grads<B> g;
    auto dw = be.alloc(shape{l.out_features(), l.in_features()}, dtype::f32);
    be.gemm(dy, x, dw.v(), gemm_args{.trans_a = true}, cview{});
    g.add("weight", std::move(dw));
    if (l.has_bias) {
        auto db = be.alloc(shape{l.out_features()}, dtype::f32);
        be.sum_rows(dy, db.v());
        g.add("bias", std::move(db));
    }
    return g;
}

// dx = dy W + beta dx: beta = 1 accumulates into dx (a layer read by several linears).
template <Backend B>
void linear_input_grad(B& be, const nn::linear<B>& l, const cview& dy, const view& dx, float beta = 0.0f) {
    glimpse::detail::check(dx.rank() == 2 && dx.shape() == shape{dy.size(0), l.in_features()},
                           "linear backward: dx must be [", dy.size(0), ", ", l.in_features(), "], got ", dx.shape());
    be.gemm(dy, l.weight.cv(), dx, gemm_args{.beta = beta}, cview{});
}

template <Backend B>
layer_backward_result<B> linear_backward(B& be, const nn::linear<B>& l, const cview& x, const cview& dy,
                                         bool want_dx = true) {
    layer_backward_result<B> r{linear_param_grads(be, l, x, dy), {}};
    if (want_dx) {
        r.dx = be.alloc(shape{x.size(0), l.in_features()}, dtype::f32);
        linear_input_grad(be, l, dy, r.dx.v());
    }
    return r;
}

}  // namespace glimpse::grad
