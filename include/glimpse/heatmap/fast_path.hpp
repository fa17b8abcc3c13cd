#pragma once
// The exact fast path of the heatmap head (docs/design.md, "Why the head has a
// fast path").
//
// Without RoPE, query i of head h is q_i = h_i w_h + b_h, so its scores against
// keys K_h are h_i (K_h w_h) + (K_h b_h): the softmax row — and so the output
// row — depends on patch i only through the scalar h_i. With U distinct
// heatmap values (U = 2 for a box mask) we attend once per distinct value and
// gather. Two exact variants:
//
//  dedup  : project K, V as usual; U queries per head.
//           FLOPs 4 S D^2 + 4 U S D + 2 U D^2 (+ 2 U D)
//  folded : never build K or V. The score of key s is x_s . (W_k,h^T q_u,h)
//           plus a term constant over s, which the softmax drops; and since each
//           softmax row sums to one, W_v can be applied after the weighted sum:
//           v_u,h = W_v,h (P_u,h X) + b_v,h.
//           FLOPs 4 S D U H + 6 U D^2 (+ 2 U D)
//  generic: 6 S D^2 + 4 S^2 D (+ 2 S D)
//
// Both produce the probabilities P as [H, U, S] (head-major), from which any
// requested attention map is expanded by gathering rows — maps cost nothing
// extra here.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/nn/linear.hpp"

namespace glimpse::heatmap {

enum class head_path { automatic, generic, dedup, folded };

constexpr std::string_view name(head_path p) noexcept {
    switch (p) {
        case head_path::automatic:
            return "automatic";
        case head_path::generic:
            return "generic";
        case head_path::dedup:
            return "dedup";
        case head_path::folded:
            return "folded";
    }
    return "?";
}

// Distinct values of a heatmap (sorted) and, per token, the index of its value.
struct distinct_values {
    std::vector<float> values;
    std::vector<std::int64_t> inverse;

    static distinct_values of(const float* h, std::int64_t s) {
        distinct_values d;
        d.values.assign(h, h + s);
        std::sort(d.values.begin(), d.values.end());
        d.values.erase(std::unique(d.values.begin(), d.values.end()), d.values.end());
        d.inverse.resize(static_cast<std::size_t>(s));
        for (std::int64_t i = 0; i < s; ++i)
            d.inverse[static_cast<std::size_t>(i)] =
                std::lower_bound(d.values.begin(), d.values.end(), h[i]) - d.values.begin();
        return d;
    }
    std::int64_t count() const { return static_cast<std::int64_t>(values.size()); }
};

// FLOPs (2 m n k per matmul) of each path; used to pick one and by the benchmarks.
inline double path_flops(head_path p, double s, double d, double h, double u) {
    switch (p) {
        case head_path::generic:
            return 2 * s * d + 6 * s * d * d + 4 * s * s * d;
        case head_path::dedup:
            return 2 * u * d + 4 * s * d * d + 4 * u * s * d + 2 * u * d * d;
        case head_path::folded:
            return 2 * u * d + 4 * s * d * u * h + 6 * u * d * d;
        case head_path::automatic:
            break;
    }
    return 0;
}

inline head_path cheapest_path(std::int64_t s, std::int64_t d, std::int64_t h, std::int64_t u, bool rope) {
    if (rope) return head_path::generic;  // rotated queries depend on position, not on h_i alone
    head_path best = head_path::generic;
    for (head_path p : {head_path::dedup, head_path::folded})
        if (path_flops(p, double(s), double(d), double(h), double(u)) <
            path_flops(best, double(s), double(d), double(h), double(u)))
            best = p;
    return best;
}

// The projections of one heatmap attention head (nn.Linear layout [out, in]).
template <Backend B>
struct head_projections {
    const nn::linear<B>& q_proj;  // [D, 1]
    const nn::linear<B>& k_proj;  // [D, D]
    const nn::linear<B>& v_proj;  // [D, D]
    std::int64_t heads;
};

// Folded fast path. x [S, D]; vals [U] host; returns per-value attention
// outputs vbar [U, D] (before the output projection) and P [H, U, S].
template <Backend B>
void folded_attention(B& be, const head_projections<B>& w, const cview& x, const std::vector<float>& vals,
                      const view& vbar, const view& probs) {
    const std::int64_t s = x.size(0), D = x.size(1), H = w.heads, d = D / H;
    const std::int64_t U = static_cast<std::int64_t>(vals.size());
    auto hv = be.upload(tensor::from(shape{U, 1}, vals).cv());
    auto qu = w.q_proj(be, hv.cv());  // [U, D]
    // G[(h, u), :] = q_u,h W_k,h  -> [H*U, D]
    auto G = be.alloc(shape{H * U, D}, dtype::f32);
    for (std::int64_t h = 0; h < H; ++h)
        be.gemm(qu.cv().slice(1, h * d, (h + 1) * d), w.k_proj.weight.cv().slice(0, h * d, (h + 1) * d),
                G.v().slice(0, h * U, (h + 1) * U), gemm_args{}, cview{});
    const view P = probs.reshape(shape{H * U, s});
    be.gemm(G.cv(), x, P, gemm_args{.trans_b = true}, cview{});
    be.softmax_rows(P, 1.0f / std::sqrt(static_cast<float>(d)));
    auto xbar = be.alloc(shape{H * U, D}, dtype::f32);  // P X
    be.gemm(P, x, xbar.v(), gemm_args{}, cview{});
    for (std::int64_t h = 0; h < H; ++h)
        be.gemm(xbar.cv().slice(0, h * U, (h + 1) * U), w.v_proj.weight.cv().slice(0, h * d, (h + 1) * d),
                vbar.slice(1, h * d, (h + 1) * d), gemm_args{.trans_b = true},
                w.v_proj.has_bias ? w.v_proj.bias.cv().slice(0, h * d, (h + 1) * d) : cview{});
}

// Dedup fast path: K and V projected as usual, U queries per head.
template <Backend B>
void dedup_attention(B& be, const head_projections<B>& w, const cview& x, const std::vector<float>& vals,
                     const view& vbar, const view& probs) {
    const std::int64_t D = x.size(1), H = w.heads, d = D / H;
    const std::int64_t U = static_cast<std::int64_t>(vals.size());
    auto hv = be.upload(tensor::from(shape{U, 1}, vals).cv());
    auto qu = w.q_proj(be, hv.cv());
    auto k = w.k_proj(be, x);
    auto v = w.v_proj(be, x);
    const std::int64_t s = x.size(0);
    attention_args a{1.0f / std::sqrt(static_cast<float>(d)), cview{}, {}, {}};
    a.maps.per_head = probs;
    be.attention(qu.cv().reshape(shape{U, H, d}), k.cv().reshape(shape{s, H, d}), v.cv().reshape(shape{s, H, d}),
                 vbar.reshape(shape{U, H, d}), a);
}

// Expand per-value probabilities P [H, U, S] into the maps a caller asked for.
// `weights_by_value` [R, U] are the query weights summed per distinct value.
template <Backend B>
void expand_maps(B& be, const cview& probs, const std::vector<std::int64_t>& inverse, const attention_maps& m,
                 const cview& weights_by_value) {
    const std::int64_t H = probs.size(0), U = probs.size(1), S = probs.size(2);
    if (!m.per_head.empty())
        for (std::int64_t h = 0; h < H; ++h) be.gather_rows(probs.select(0, h), inverse, m.per_head.select(0, h));
    if (!m.mean.empty()) {
        auto pm = be.alloc(shape{U, S}, dtype::f32);
        for (std::int64_t h = 0; h < H; ++h) be.add(pm.cv(), probs.select(0, h), pm.v(), 1.0f / static_cast<float>(H));
        be.gather_rows(pm.cv(), inverse, m.mean);
    }
    if (!m.pooled.empty())
        for (std::int64_t h = 0; h < H; ++h)
            be.gemm(weights_by_value, probs.select(0, h), m.pooled.select(1, h), gemm_args{}, cview{});
}

}  // namespace glimpse::heatmap
