#pragma once
// The heatmap head block's backward (heatmap/head_block.hpp), the API a loss
// plugs into:
//   a = attn(norm1(x), h)   y = x + a   m = mlp(norm2(y))   delta = a + m
// head_forward runs the block (generic attention path) keeping a tape and,
// given query weights w [S], the pooled attention map
//   pooled[0, h, k] = sum_q w[q] P[h, q, k]      (head_maps::pooled's layout)
// head_backward takes dL/d delta and/or dL/d pooled and returns every parameter
// gradient (named as head.visit(prefix) names them, same order and shapes, f32),
// dL/dx and dL/dheatmap. Backward, with d_delta = dL/d delta:
//   dm = d_delta -> mlp -> norm2 -> d_y;  da = d_delta + d_y (+ d_pooled through P)
//   -> attn -> d_xn -> norm1 -> dx = d_y + norm1's dx
//
// Memory (S tokens, width D, MLP width I): the tape holds x, norm1(x), h, q, k,
// v, o, y, norm2(y) ([S, D] each: 8 S D floats), the MLP pre-activations
// (2 S I for SwiGLU, S I for GELU) and the RoPE tables; the backward adds two
// S x S buffers for one head at a time (attention_grad.hpp) and O(S (D + I)).

#include <cstdint>
#include <string>
#include <utility>

#include "glimpse/core/backend.hpp"
#include "glimpse/grad/attention_head_grad.hpp"
#include "glimpse/grad/mlp_grad.hpp"
#include "glimpse/grad/named_grads.hpp"
#include "glimpse/grad/norm_grad.hpp"
#include "glimpse/heatmap/head_block.hpp"

namespace glimpse::grad {

// What head_forward saved for head_backward. Opaque to users: pass it back unchanged.
template <Backend B, heatmap::block_kind Kind>
struct head_tape {
    typename B::tensor x;         // [S, D] the block input
    attention_head_tape<B> attn;  // holds norm1(x) as its input
    typename B::tensor y, yn;     // y = x + a [S, D] and norm2(y), the MLP's input
    mlp_tape<B> mlp;
    bool empty() const { return x.shape().rank() == 0; }
};

template <Backend B, heatmap::block_kind Kind>
struct head_forward_result {
    typename B::tensor delta;   // [S, D], heatmap_head::delta (z = x + delta)
    typename B::tensor pooled;  // [1, H, S] when query weights were given, else empty
    head_tape<B, Kind> tape;
};

template <Backend B>
struct head_backward_result {
    named_grads<B> params;        // as head.visit(prefix) yields them
    typename B::tensor dx;        // [S, D]
    typename B::tensor dheatmap;  // [S]
};

// in: x [S, D], heatmap [S] or [S, 1], cos/sin [S, d] when the head uses RoPE.
// query_weights: [S] or [1, S] (any dtype), or empty for no pooled map.
template <TrainingBackend B, heatmap::block_kind Kind>
head_forward_result<B, Kind> head_forward(B& be, const heatmap::heatmap_head<B, Kind>& head,
                                          const heatmap::head_inputs& in, const cview& query_weights = {}) {
    const tensor h = impl::checked_heatmap(be, head.attn, in, "head_forward");
    const std::int64_t S = in.x.size(0);
    glimpse::detail::check(query_weights.empty() || (query_weights.rank() == 1 && query_weights.size(0) == S) ||
                               (query_weights.rank() == 2 && query_weights.shape() == shape{1, S}),
                           "head_forward: query_weights must be [", S, "] or [1, ", S, "], got ",
                           query_weights.shape());
    typename B::tensor qw;
    if (!query_weights.empty()) {
        qw = be.alloc(shape{1, S}, dtype::f32);
        const cview w2 = query_weights.rank() == 2
                             ? query_weights
                             : cview(query_weights.data(), query_weights.type(), shape{1, S},
                                     strides_t{S * query_weights.stride(0), query_weights.stride(0)});  // any stride
        be.copy(w2, qw.v());
    }
    head_forward_result<B, Kind> r;
    auto& t = r.tape;
    t.x = impl::copy_of(be, in.x);
    auto att = impl::attention_head_forward(be, head.attn, head.norm1(be, in.x), h, in, std::move(qw));
    t.attn = std::move(att.tape);
    r.pooled = std::move(att.pooled);
    typename B::tensor a = std::move(att.out);
    t.y = be.alloc(in.x.shape(), dtype::f32);
    be.add(in.x, a.cv(), t.y.v(), 1.0f);  // y = x + a
    t.yn = head.norm2(be, t.y.cv());
    auto m = mlp_forward(be, head.mlp, t.yn.cv(), t.mlp);
    be.add(a.cv(), m.cv(), a.v(), 1.0f);  // delta = a + m
    r.delta = std::move(a);
    return r;
}

// d_delta: dL/d delta [S, D] f32 or empty (= 0); d_pooled: dL/d pooled [1, H, S]
// f32 or empty (= 0; must be empty when head_forward had no query weights). Both
// may be strided views with unit inner stride.
// Validates every argument before computing anything.
template <TrainingBackend B, heatmap::block_kind Kind>
head_backward_result<B> head_backward(B& be, const heatmap::heatmap_head<B, Kind>& head, const head_tape<B, Kind>& tape,
                                      const cview& d_delta, const cview& d_pooled,
                                      const std::string& prefix = "heatmap_head") {
    using glimpse::detail::check;
    const std::int64_t D = head.attn.dim(), H = head.attn.heads;
    check(!tape.empty() && tape.x.shape()[1] == D,
          "head_backward: the tape is empty or comes from a head of another width (D = ", D, ")");
    const std::int64_t S = tape.x.shape()[0];
    check(d_delta.empty() || (d_delta.shape() == shape{S, D} && d_delta.type() == dtype::f32 && d_delta.stride(1) == 1),
          "head_backward: d_delta must be f32 [", S, ", ", D, "] (the shape of delta) with unit inner stride, got ",
          name(d_delta.type()), " ", d_delta.shape());
    const bool has_pooled = tape.attn.query_weights.shape().rank() != 0;
    check(d_pooled.empty() || has_pooled, "head_backward: d_pooled ", d_pooled.shape(),
          " given but head_forward was called without query_weights (there is no pooled map)");
    check(d_pooled.empty() ||
              (d_pooled.shape() == shape{1, H, S} && d_pooled.type() == dtype::f32 && d_pooled.stride(2) == 1),
          "head_backward: d_pooled must be f32 [1, ", H, ", ", S,
          "] (the shape of pooled) with unit inner stride, got ", name(d_pooled.type()), " ", d_pooled.shape());

    head_backward_result<B> r;
    named_grads<B> g_norm2, g_mlp;
    typename B::tensor da, dy;
    if (!d_delta.empty()) {
        auto mb = mlp_backward(be, head.mlp, tape.yn.cv(), tape.mlp, d_delta);
        auto nb = norm_backward(be, head.norm2, tape.y.cv(), mb.dx.cv());
        g_mlp = std::move(mb.params);
        g_norm2 = std::move(nb.params);
        dy = std::move(nb.dx);  // dL/dy
        da = be.alloc(shape{S, D}, dtype::f32);
        be.add(d_delta, dy.cv(), da.v(), 1.0f);  // delta and y both contain a
    } else {
        g_mlp = impl::zero_grads(be, head.mlp);
        g_norm2 = impl::zero_grads(be, head.norm2);
    }
    auto ab = attention_head_backward(be, head.attn, tape.attn, d_delta.empty() ? cview{} : da.cv(), d_pooled);
    auto n1 = norm_backward(be, head.norm1, tape.x.cv(), ab.dx.cv());
    r.dx = std::move(n1.dx);
    if (!d_delta.empty()) be.add(r.dx.cv(), dy.cv(), r.dx.v(), 1.0f);  // y = x + a
    r.dheatmap = std::move(ab.dheatmap);
    r.params.append(join_name(prefix, "norm1"), std::move(n1.params));
    r.params.append(join_name(prefix, "attn"), std::move(ab.params));
    r.params.append(join_name(prefix, "norm2"), std::move(g_norm2));
    r.params.append(join_name(prefix, "mlp"), std::move(g_mlp));
    impl::check_matches_visit<B>(head, prefix, r.params);
    return r;
}

}  // namespace glimpse::grad
