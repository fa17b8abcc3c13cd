#pragma once
// Backward of nn::rms_norm and nn::layer_norm over the last axis of x [M, D],
// given the forward input x and dy [M, D] (the normalised x_hat is recomputed
// from x: one row at a time, nothing of [M, D] is kept by the forward).
//   rms_norm:   y = x_hat w,     x_hat = x / sqrt(mean(x^2) + eps)
//   layer_norm: y = x_hat w + b, x_hat = (x - mean) / sqrt(var + eps)
// The row-wise part is the backend's rms_norm_backward / layer_norm_backward
// (TrainingBackend); db = sum_rows(dy).

#include "glimpse/core/backend.hpp"
#include "glimpse/grad/named_grads.hpp"
#include "glimpse/nn/norm.hpp"

namespace glimpse::grad {

// Names "weight" as rms_norm::visit yields it.
template <TrainingBackend B>
layer_backward_result<B> norm_backward(B& be, const nn::rms_norm<B>& n, const cview& x, const cview& dy) {
    layer_backward_result<B> r;
    r.dx = be.alloc(x.shape(), dtype::f32);
    auto dw = be.alloc(n.weight.shape(), dtype::f32);
    be.rms_norm_backward(x, n.weight.cv(), n.eps, dy, r.dx.v(), dw.v());
    r.params.add("weight", std::move(dw));
    return r;
}

// Names "weight", "bias" as layer_norm::visit yields them.
template <TrainingBackend B>
layer_backward_result<B> norm_backward(B& be, const nn::layer_norm<B>& n, const cview& x, const cview& dy) {
    layer_backward_result<B> r;
    r.dx = be.alloc(x.shape(), dtype::f32);
    auto dw = be.alloc(n.weight.shape(), dtype::f32);
    be.layer_norm_backward(x, n.weight.cv(), n.eps, dy, r.dx.v(), dw.v());
    glimpse::detail::check(dy.rank() == 2, "layer_norm backward: dy must be [M, D], got ", dy.shape());
    auto db = be.alloc(n.bias.shape(), dtype::f32);
    be.sum_rows(dy, db.v());
    r.params.add("weight", std::move(dw));
    r.params.add("bias", std::move(db));
    return r;
}

}  // namespace glimpse::grad
