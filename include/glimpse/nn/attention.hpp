#pragma once
// Multi-head scaled dot-product attention as a layer: q [Sq, H, d],
// k [Sk, H, d], v [Sk, H, dv] -> [Sq, H, dv], with an optional additive mask,
// optional segments (block-diagonal attention, Qwen's cu_seqlens) and optional
// attention maps (per head, head mean, or pooled over weighted queries).
//
// The backend fuses it (tiles of queries; no H x S x S intermediate), so this
// header only fixes the defaults: scale = 1/sqrt(d).

#include <cmath>

#include "glimpse/core/backend.hpp"

namespace glimpse::nn {

struct sdpa_options {
    float scale = 0.0f;  // 0: 1/sqrt(d)
    cview mask;
    std::span<const std::int64_t> segments;
    attention_maps maps;
};

template <Backend B>
void sdpa(B& be, const cview& q, const cview& k, const cview& v, const view& out, const sdpa_options& o = {}) {
    detail::check(q.rank() == 3, "sdpa: q must be [S, H, d], got ", q.shape());
    const float scale = o.scale != 0.0f ? o.scale : 1.0f / std::sqrt(static_cast<float>(q.size(2)));
    be.attention(q, k, v, out, attention_args{scale, o.mask, o.segments, o.maps});
}

template <Backend B>
typename B::tensor sdpa(B& be, const cview& q, const cview& k, const cview& v, const sdpa_options& o = {}) {
    detail::check(q.rank() == 3 && v.rank() == 3, "sdpa: q, v must be [S, H, d]");
    auto out = be.alloc(shape{q.size(0), q.size(1), v.size(2)}, dtype::f32);
    sdpa(be, q, k, v, out.v(), o);
    return out;
}

}  // namespace glimpse::nn
