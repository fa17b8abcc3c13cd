#pragma once
// Forward-with-tape and backward of the heatmap attention head
// (heatmap/attention_head.hpp), generic path:
//   q = q_proj(h) [S, D], k = k_proj(x), v = v_proj(x); RoPE on q, k (optional);
//   o_j = softmax(q_j k_j^T / sqrt(d)) v_j per head j; out = proj(o)
// The forward is the generic path's op sequence, so `out` is bit for bit what
// heatmap_attention_head::forward(..., head_path::generic) returns.
//
// The tape keeps x, h as [S, 1], q and k after RoPE, v, o ([S, D] each: 5 S D
// floats) and the RoPE tables; never probabilities (see attention_grad.hpp).

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "glimpse/core/backend.hpp"
#include "glimpse/grad/attention_grad.hpp"
#include "glimpse/grad/linear_grad.hpp"
#include "glimpse/grad/named_grads.hpp"
#include "glimpse/grad/rotary_grad.hpp"
#include "glimpse/heatmap/attention_head.hpp"
#include "glimpse/nn/attention.hpp"

namespace glimpse::grad {

template <Backend B>
struct attention_head_tape {
    typename B::tensor x;              // [S, D] the head's input features
    typename B::tensor hcol;           // [S, 1] the heatmap
    typename B::tensor q, k, v, o;     // [S, D]; q, k after RoPE; o before proj
    typename B::tensor cos, sin_t;     // [S, d] cos and the transposed sin table; empty without RoPE
    typename B::tensor query_weights;  // [R, S] or empty
    bool empty() const { return x.shape().rank() == 0; }
};

template <Backend B>
struct attention_head_forward_result {
    typename B::tensor out;     // [S, D]
    typename B::tensor pooled;  // [R, H, S] when query weights were given, else empty
    attention_head_tape<B> tape;
};

namespace impl {

// Checks the head inputs as heatmap_attention_head::forward does and returns the heatmap as f32 [S] on the host.
template <Backend B>
tensor checked_heatmap(B& be, const heatmap::heatmap_attention_head<B>& a, const heatmap::head_inputs& in,
                       const char* who) {
    using glimpse::detail::check;
    const std::int64_t D = a.dim();
    check(in.x.rank() == 2 && in.x.size(1) == D, who, ": features x must be [S, ", D, "], got ", in.x.shape());
    const std::int64_t S = in.x.size(0);
    check((in.heatmap.rank() == 1 && in.heatmap.size(0) == S) ||
              (in.heatmap.rank() == 2 && in.heatmap.shape() == shape{S, 1}),
          who, ": heatmap must be [", S, "] or [", S, ", 1], got ", in.heatmap.shape());
    if (a.rope) {
        check(!in.cos.empty() && !in.sin.empty(), who, ": RoPE is on but no cos/sin were given");
        check(in.cos.shape() == shape{S, a.head_dim()} && in.sin.shape() == shape{S, a.head_dim()}, who, ": cos ",
              in.cos.shape(), " / sin ", in.sin.shape(), " must be [", S, ", ", a.head_dim(), "]");
    }
    tensor h = be.download(in.heatmap).to(dtype::f32);
    for (std::int64_t i = 0; i < S; ++i)
        if (!std::isfinite(h.ptr<float>()[i]))
            glimpse::detail::fail(who, ": heatmap value at token ", i, " is not finite (", h.ptr<float>()[i], ")");
    return h;
}

template <Backend B>
typename B::tensor copy_of(B& be, const cview& v) {
    auto t = be.alloc(v.shape(), dtype::f32);
    be.copy(v, t.v());
    return t;
}

// Zero gradients named as layer.visit(prefix "") yields (a branch no loss reached).
template <Backend B, class Layer>
named_grads<B> zero_grads(B& be, const Layer& layer) {
    named_grads<B> g;
    layer.visit(std::string(),
                [&](const std::string& n, const typename B::tensor& p) { g.add(n, be.alloc(p.shape(), dtype::f32)); });
    return g;
}

// The forward on features x already owned by the caller (moved into the tape).
// `h` is the checked host heatmap [S]; `qw` is [R, S] on the backend or empty.
template <TrainingBackend B>
attention_head_forward_result<B> attention_head_forward(B& be, const heatmap::heatmap_attention_head<B>& a,
                                                        typename B::tensor x, const tensor& h,
                                                        const heatmap::head_inputs& in, typename B::tensor qw) {
    const std::int64_t S = x.shape()[0], D = a.dim(), H = a.heads, d = a.head_dim();
    attention_head_forward_result<B> r;
    auto& t = r.tape;
    t.x = std::move(x);
    t.hcol = be.upload(h.cv().reshape(shape{S, 1}));
    t.q = a.q_proj(be, t.hcol.cv());
    t.k = a.k_proj(be, t.x.cv());
    t.v = a.v_proj(be, t.x.cv());
    const view q3 = t.q.v().reshape(shape{S, H, d}), k3 = t.k.v().reshape(shape{S, H, d});
    if (a.rope) {
        be.rotary(q3, in.cos, in.sin);
        be.rotary(k3, in.cos, in.sin);
        t.cos = copy_of(be, in.cos);
        t.sin_t = rotary_transpose_sin(be, in.sin);
    }
    t.o = be.alloc(shape{S, D}, dtype::f32);
    nn::sdpa_options opt;
    if (qw.shape().rank() != 0) {
        t.query_weights = std::move(qw);
        r.pooled = be.alloc(shape{t.query_weights.shape()[0], H, S}, dtype::f32);
        opt.maps.pooled = r.pooled.v();
        opt.maps.query_weights = t.query_weights.cv();
    }
    nn::sdpa(be, q3, k3, t.v.cv().reshape(shape{S, H, d}), t.o.v().reshape(shape{S, H, d}), opt);
    r.out = a.proj(be, t.o.cv());
    return r;
}

}  // namespace impl

// in: x [S, D], heatmap [S] or [S, 1], cos/sin [S, d] with RoPE; query_weights [R, S] or empty.
template <TrainingBackend B>
attention_head_forward_result<B> attention_head_forward(B& be, const heatmap::heatmap_attention_head<B>& a,
                                                        const heatmap::head_inputs& in,
                                                        const cview& query_weights = {}) {
    const tensor h = impl::checked_heatmap(be, a, in, "attention_head_forward");
    const std::int64_t S = in.x.size(0);
    glimpse::detail::check(query_weights.empty() || (query_weights.rank() == 2 && query_weights.size(1) == S),
                           "attention_head_forward: query_weights must be [R, ", S, "], got ", query_weights.shape());
    return impl::attention_head_forward(
        be, a, impl::copy_of(be, in.x), h, in,
        query_weights.empty() ? typename B::tensor{} : impl::copy_of(be, query_weights));
}

template <Backend B>
struct attention_head_backward_result {
    named_grads<B> params;        // q_proj.*, k_proj.*, v_proj.*, proj.*
    typename B::tensor dx;        // [S, D]
    typename B::tensor dheatmap;  // [S]
};

// d_out: dL/d out [S, D] or empty (= 0); d_pooled: dL/d pooled [R, H, S] or empty (= 0).
template <TrainingBackend B>
attention_head_backward_result<B> attention_head_backward(B& be, const heatmap::heatmap_attention_head<B>& a,
                                                          const attention_head_tape<B>& t, const cview& d_out,
                                                          const cview& d_pooled) {
    using glimpse::detail::check;
    check(!t.empty() && t.x.shape()[1] == a.dim(), "attention_head_backward: the tape is empty or from another head");
    const std::int64_t S = t.x.shape()[0], D = a.dim(), H = a.heads, d = a.head_dim();
    check(d_out.empty() || d_out.shape() == shape{S, D}, "attention_head_backward: d_out must be [", S, ", ", D,
          "], got ", d_out.shape());
    const bool pooled = t.query_weights.shape().rank() != 0;
    check(d_pooled.empty() || pooled,
          "attention_head_backward: d_pooled given but the forward had no query_weights (no pooled map)");
    if (!d_pooled.empty()) {
        const std::int64_t R = t.query_weights.shape()[0];
        check(d_pooled.shape() == shape{R, H, S}, "attention_head_backward: d_pooled must be [", R, ", ", H, ", ", S,
              "], got ", d_pooled.shape());
    }

    attention_head_backward_result<B> r;
    named_grads<B> proj;
    typename B::tensor d_o;
    if (!d_out.empty()) {
        proj = linear_param_grads(be, a.proj, t.o.cv(), d_out);
        d_o = be.alloc(shape{S, D}, dtype::f32);
        linear_input_grad(be, a.proj, d_out, d_o.v());
    } else {
        proj = impl::zero_grads(be, a.proj);
    }
    auto dq = be.alloc(shape{S, D}, dtype::f32), dk = be.alloc(shape{S, D}, dtype::f32),
         dv = be.alloc(shape{S, D}, dtype::f32);
    const shape s3{S, H, d};
    sdpa_grad_options opt;
    if (!d_pooled.empty()) {
        opt.query_weights = t.query_weights.cv();
        opt.d_pooled = d_pooled;
    }
    sdpa_backward(be, t.q.cv().reshape(s3), t.k.cv().reshape(s3), t.v.cv().reshape(s3),
                  d_out.empty() ? cview{} : d_o.cv().reshape(s3), dq.v().reshape(s3), dk.v().reshape(s3),
                  dv.v().reshape(s3), opt);
    if (a.rope) {
        rotary_backward(be, dq.v().reshape(s3), t.cos.cv(), t.sin_t.cv());
        rotary_backward(be, dk.v().reshape(s3), t.cos.cv(), t.sin_t.cv());
    }
    r.params.append("q_proj", linear_param_grads(be, a.q_proj, t.hcol.cv(), dq.cv()));
    r.params.append("k_proj", linear_param_grads(be, a.k_proj, t.x.cv(), dk.cv()));
    r.params.append("v_proj", linear_param_grads(be, a.v_proj, t.x.cv(), dv.cv()));
    r.params.append("proj", std::move(proj));
    r.dheatmap = be.alloc(shape{S}, dtype::f32);
    linear_input_grad(be, a.q_proj, dq.cv(), r.dheatmap.v().reshape(shape{S, 1}));
    r.dx = be.alloc(shape{S, D}, dtype::f32);
    linear_input_grad(be, a.k_proj, dk.cv(), r.dx.v());
    linear_input_grad(be, a.v_proj, dv.cv(), r.dx.v(), 1.0f);
    return r;
}

}  // namespace glimpse::grad
