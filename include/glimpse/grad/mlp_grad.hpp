#pragma once
// Forward-with-tape and backward of the two MLPs (nn/mlp.hpp) over x [M, D]:
//   swiglu_mlp: h = silu(g) . u, g = gate_proj(x), u = up_proj(x) [M, I]; y = down_proj(h)
//   gelu_mlp:   h = gelu(p), p = linear_fc1(x) [M, I];                   y = linear_fc2(h)
// The tape keeps the pre-activations (g and u, or p); h is recomputed in the
// backward (one elementwise pass) instead of being kept: M x I floats saved.
// The forward is the same op sequence as the nn layer's, so it returns the same
// numbers bit for bit.

#include <utility>

#include "glimpse/core/backend.hpp"
#include "glimpse/grad/linear_grad.hpp"
#include "glimpse/grad/named_grads.hpp"
#include "glimpse/nn/mlp.hpp"

namespace glimpse::grad {

// What the MLP forward keeps: swiglu: pre = g, up = u; gelu: pre = p, up empty.
template <Backend B>
struct mlp_tape {
    typename B::tensor pre, up;
};

template <Backend B>
typename B::tensor mlp_forward(B& be, const nn::swiglu_mlp<B>& m, const cview& x, mlp_tape<B>& tape) {
    tape.pre = m.gate_proj(be, x);
    tape.up = m.up_proj(be, x);
    auto h = be.alloc(tape.pre.shape(), dtype::f32);
    be.swiglu(tape.pre.cv(), tape.up.cv(), h.v());
    return m.down_proj(be, h.cv());
}

template <Backend B>
typename B::tensor mlp_forward(B& be, const nn::gelu_mlp<B>& m, const cview& x, mlp_tape<B>& tape) {
    tape.pre = m.linear_fc1(be, x);
    auto h = be.alloc(tape.pre.shape(), dtype::f32);
    be.activate(m.act, tape.pre.cv(), h.v());
    return m.linear_fc2(be, h.cv());
}

// dh = dy W_down; du = dh . silu(g); dg = silu'(g) . (dh . u); dx = dg W_gate + du W_up.
// Names gate_proj.*, up_proj.*, down_proj.* as swiglu_mlp::visit yields them.
template <TrainingBackend B>
layer_backward_result<B> mlp_backward(B& be, const nn::swiglu_mlp<B>& m, const cview& x, const mlp_tape<B>& tape,
                                      const cview& dy) {
    const cview g = tape.pre.cv(), u = tape.up.cv();
    auto h = be.alloc(g.shape(), dtype::f32);
    be.swiglu(g, u, h.v());
    auto down = linear_param_grads(be, m.down_proj, h.cv(), dy);
    auto dh = be.alloc(g.shape(), dtype::f32);
    linear_input_grad(be, m.down_proj, dy, dh.v());
    be.activate(activation::silu, g, h.v());                     // h <- silu(g)
    be.mul(dh.cv(), h.cv(), h.v());                              // h <- du
    be.mul(dh.cv(), u, dh.v());                                  // dh <- dh . u
    be.activate_backward(activation::silu, g, dh.cv(), dh.v());  // dh <- dg
    layer_backward_result<B> r;
    r.params.append("gate_proj", linear_param_grads(be, m.gate_proj, x, dh.cv()));
    r.params.append("up_proj", linear_param_grads(be, m.up_proj, x, h.cv()));
    r.params.append("down_proj", std::move(down));
    r.dx = be.alloc(x.shape(), dtype::f32);
    linear_input_grad(be, m.gate_proj, dh.cv(), r.dx.v());
    linear_input_grad(be, m.up_proj, h.cv(), r.dx.v(), 1.0f);
    return r;
}

// dh = dy W_fc2; dp = gelu'(p) . dh; dx = dp W_fc1. Names linear_fc1.*, linear_fc2.*.
template <TrainingBackend B>
layer_backward_result<B> mlp_backward(B& be, const nn::gelu_mlp<B>& m, const cview& x, const mlp_tape<B>& tape,
                                      const cview& dy) {
    const cview p = tape.pre.cv();
    auto h = be.alloc(p.shape(), dtype::f32);
    be.activate(m.act, p, h.v());
    auto fc2 = linear_param_grads(be, m.linear_fc2, h.cv(), dy);
    linear_input_grad(be, m.linear_fc2, dy, h.v());  // h <- dh
    be.activate_backward(m.act, p, h.cv(), h.v());   // h <- dp
    layer_backward_result<B> r;
    r.params.append("linear_fc1", linear_param_grads(be, m.linear_fc1, x, h.cv()));
    r.params.append("linear_fc2", std::move(fc2));
    r.dx = be.alloc(x.shape(), dtype::f32);
    linear_input_grad(be, m.linear_fc1, h.cv(), r.dx.v());
    return r;
}

}  // namespace glimpse::grad
