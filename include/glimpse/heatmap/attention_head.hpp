#pragma once
// heatmap_attention_head: cross-attention whose queries come from one scalar
// per patch (../docs/design.md; the seed's Qwen2_5VisionHeatmapAttentionHead).
//
//   q = q_proj(h)  [S, 1] -> [S, D]     (nn.Linear(1, D), with bias)
//   k = k_proj(x), v = v_proj(x)        [S, D] -> [S, D]
//   per head j (d = D/H, head j owns columns [j d, (j+1) d)):
//       o_j = softmax(rope(q_j) rope(k_j)^T / sqrt(d)) v_j
//   out = proj(concat_j o_j)            [S, D]
//
// Shapes: x [S, D] f32 features in the encoder's token order, h [S] or [S, 1]
// f32 in the same order, cos/sin [S, d] from nn::vision_rotary when RoPE is on.
// Without RoPE the exact fast path (fast_path.hpp) is taken when it needs
// fewer FLOPs; every path returns the same numbers up to f32 rounding.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/heatmap/fast_path.hpp"
#include "glimpse/nn/attention.hpp"
#include "glimpse/nn/linear.hpp"

namespace glimpse::heatmap {

// Which attention maps to return. Each is optional; none costs memory unless asked.
struct maps_request {
    bool per_head = false;  // [H, S, S]
    bool mean = false;      // [S, S], averaged over heads
    cview query_weights;    // [R, S]: returns pooled [R, H, S] = sum_i w[r, i] P_h[i, :]
    bool any() const noexcept { return per_head || mean || !query_weights.empty(); }
};

template <Backend B>
struct head_maps {
    typename B::tensor per_head, mean, pooled;
};

// x's rows and the heatmap's values must be in ONE token order; views cannot say which,
// so nothing here can check it. A Qwen tower's site features are not raster:
// models::site_features::inputs builds these from an ordered_heatmap (prepare.hpp).
struct head_inputs {
    cview x;         // [S, D]
    cview heatmap;   // [S] or [S, 1]
    cview cos, sin;  // [S, d], required when the head uses RoPE
};

// K and V of one set of features, computed once and shared by any number of
// heatmaps over them (the comparison tool runs three boxes on one image): the
// queries are the only part of the head that depends on the heatmap.
// x [S, D] is the attention's input (the folded path reads it instead of K, V);
// k, v [S, D] are k_proj(x), v_proj(x), k already rotated when the head uses
// RoPE (the rotation depends on the key's position only).
template <Backend B>
struct head_kv {
    typename B::tensor x, k, v;
    bool rotated = false;
    std::int64_t tokens() const { return x.shape().rank() == 2 ? x.shape()[0] : 0; }
};

template <Backend B>
class heatmap_attention_head : public nn::visits_parameters<heatmap_attention_head<B>> {
public:
    using tensor_t = typename B::tensor;

    nn::linear<B> q_proj, k_proj, v_proj, proj;
    std::int64_t heads = 1;
    bool rope = false;

    std::int64_t dim() const { return k_proj.out_features(); }
    std::int64_t head_dim() const { return dim() / heads; }

    static heatmap_attention_head init(B& be, std::int64_t dim, std::int64_t heads, bool rope, rng& g,
                                       dtype t = dtype::f32) {
        check_config(dim, heads, rope);
        heatmap_attention_head a;
        a.q_proj = nn::linear<B>::init(be, 1, dim, true, g, t);
        a.k_proj = nn::linear<B>::init(be, dim, dim, true, g, t);
        a.v_proj = nn::linear<B>::init(be, dim, dim, true, g, t);
        a.proj = nn::linear<B>::init(be, dim, dim, true, g, t);
        a.heads = heads;
        a.rope = rope;
        return a;
    }

    template <param_source S>
    static heatmap_attention_head load(B& be, const S& src, const std::string& prefix, std::int64_t dim,
                                       std::int64_t heads, bool rope) {
        check_config(dim, heads, rope);
        heatmap_attention_head a;
        a.q_proj = nn::linear<B>::load(be, src, join_name(prefix, "q_proj"), 1, dim, true);
        a.k_proj = nn::linear<B>::load(be, src, join_name(prefix, "k_proj"), dim, dim, true);
        a.v_proj = nn::linear<B>::load(be, src, join_name(prefix, "v_proj"), dim, dim, true);
        a.proj = nn::linear<B>::load(be, src, join_name(prefix, "proj"), dim, dim, true);
        a.heads = heads;
        a.rope = rope;
        return a;
    }

    // The path `forward` takes for S tokens with U distinct heatmap values.
    head_path choose(std::int64_t s, std::int64_t u, head_path want = head_path::automatic) const {
        if (want == head_path::automatic) return cheapest_path(s, dim(), heads, u, rope);
        detail::check(want == head_path::generic || !rope, "heatmap head: the ", name(want),
                      " path is exact only without RoPE");
        return want;
    }

    // out [S, D]. `maps`, when given, receives what `req` asks for.
    tensor_t forward(B& be, const head_inputs& in, const maps_request& req = {}, head_maps<B>* maps = nullptr,
                     head_path want = head_path::automatic) const {
        const std::int64_t S = in.x.size(0), D = dim(), H = heads;
        detail::check(in.x.rank() == 2 && in.x.size(1) == D, "heatmap head: features must be [S, ", D, "], got ",
                      in.x.shape());
        detail::check((in.heatmap.rank() == 1 && in.heatmap.size(0) == S) ||
                          (in.heatmap.rank() == 2 && in.heatmap.shape() == shape{S, 1}),
                      "heatmap head: heatmap must be [", S, "] or [", S, ", 1], got ", in.heatmap.shape());
        detail::check(!req.any() || maps, "heatmap head: maps requested without an output");
        detail::check(req.query_weights.empty() || (req.query_weights.rank() == 2 && req.query_weights.size(1) == S),
                      "heatmap head: query_weights must be [R, ", S, "], got ", req.query_weights.shape());
        // One host copy of S scalars: validates the heatmap and finds its distinct values.
        const tensor h_host = be.download(in.heatmap).to(dtype::f32);
        const float* hp = h_host.ptr<float>();
        for (std::int64_t i = 0; i < S; ++i)
            if (!std::isfinite(hp[i]))
                detail::fail("heatmap head: heatmap value at token ", i, " is not finite (", hp[i], ")");
        distinct_values dv = distinct_values::of(hp, S);
        const head_path path = choose(S, dv.count(), want);

        attention_maps am;
        if (maps) allocate_maps(be, req, S, *maps, am);
        if (path == head_path::generic) return generic(be, in, h_host, am);

        const std::int64_t U = dv.count();
        auto vbar = be.alloc(shape{U, D}, dtype::f32);
        auto probs = be.alloc(shape{H, U, S}, dtype::f32);
        const head_projections<B> w{q_proj, k_proj, v_proj, heads};
        if (path == head_path::folded)
            folded_attention(be, w, in.x, dv.values, vbar.v(), probs.v());
        else
            dedup_attention(be, w, in.x, dv.values, vbar.v(), probs.v());
        if (am.wanted()) {
            tensor_t wv;
            if (!am.pooled.empty()) wv = weights_by_value(be, req.query_weights, dv);
            expand_maps(be, probs.cv(), dv.inverse, am, wv.cv());
        }
        auto out_u = proj(be, vbar.cv());
        auto out = be.alloc(shape{S, D}, dtype::f32);
        be.gather_rows(out_u.cv(), dv.inverse, out.v());
        return out;
    }

    // K/V of features x [S, D] (cos/sin [S, d] when RoPE is on), for forward(kv, ...).
    head_kv<B> prepare_kv(B& be, const cview& x, const cview& cos = {}, const cview& sin = {}) const {
        const std::int64_t S = x.size(0), D = dim(), H = heads, d = head_dim();
        detail::check(x.rank() == 2 && x.size(1) == D, "heatmap head: features must be [S, ", D, "], got ", x.shape());
        head_kv<B> kv;
        kv.x = be.alloc(x.shape(), dtype::f32);
        be.copy(x, kv.x.v());
        kv.k = k_proj(be, x);
        kv.v = v_proj(be, x);
        if (rope) {
            detail::check(!cos.empty() && !sin.empty(), "heatmap head: RoPE is on but no cos/sin were given");
            be.rotary(kv.k.v().reshape(shape{S, H, d}), cos, sin);
            kv.rotated = true;
        }
        return kv;
    }

    // The path forward(kv, ...) takes: K/V are already paid for, so without RoPE
    // dedup (U queries against the cached K, V) is the cheapest exact path.
    head_path choose_cached(head_path want = head_path::automatic) const {
        if (want == head_path::automatic) return rope ? head_path::generic : head_path::dedup;
        return choose(1, 1, want);
    }

    // forward(in, ...) on cached K/V: the same result up to f32 rounding, with
    // only the heatmap-dependent work done. heatmap [S] or [S, 1]; cos/sin [S, d]
    // (RoPE on: the queries' rotation; the keys were rotated in prepare_kv).
    tensor_t forward(B& be, const head_kv<B>& kv, const cview& heatmap, const cview& cos = {}, const cview& sin = {},
                     const maps_request& req = {}, head_maps<B>* maps = nullptr,
                     head_path want = head_path::automatic) const {
        return cached(be, kv, heatmap, cos, sin, req, maps, want, true);
    }

    // Only the attention maps of forward(kv, ...): the output projection (and,
    // in head_block, the MLP) is skipped — what a tool that draws maps needs.
    void attention_maps_only(B& be, const head_kv<B>& kv, const cview& heatmap, const cview& cos, const cview& sin,
                             const maps_request& req, head_maps<B>& maps, head_path want = head_path::automatic) const {
        detail::check(req.any(), "heatmap head: attention_maps_only without a maps request");
        (void)cached(be, kv, heatmap, cos, sin, req, &maps, want, false);
    }

private:
    // forward on cached K/V; project = false stops before the output projection
    // and returns an empty tensor.
    tensor_t cached(B& be, const head_kv<B>& kv, const cview& heatmap, const cview& cos, const cview& sin,
                    const maps_request& req, head_maps<B>* maps, head_path want, bool project) const {
        const std::int64_t S = kv.tokens(), D = dim(), H = heads, d = head_dim();
        detail::check(S > 0 && kv.k.shape() == shape{S, D} && kv.v.shape() == shape{S, D} && kv.rotated == rope,
                      "heatmap head: K/V cache does not belong to this head (features ", kv.x.shape(), ", D=", D,
                      ", RoPE ", rope ? "on" : "off", ")");
        detail::check(
            (heatmap.rank() == 1 && heatmap.size(0) == S) || (heatmap.rank() == 2 && heatmap.shape() == shape{S, 1}),
            "heatmap head: heatmap must be [", S, "] or [", S, ", 1], got ", heatmap.shape());
        detail::check(!req.any() || maps, "heatmap head: maps requested without an output");
        detail::check(req.query_weights.empty() || (req.query_weights.rank() == 2 && req.query_weights.size(1) == S),
                      "heatmap head: query_weights must be [R, ", S, "], got ", req.query_weights.shape());
        const tensor h_host = be.download(heatmap).to(dtype::f32);
        const float* hp = h_host.ptr<float>();
        for (std::int64_t i = 0; i < S; ++i)
            if (!std::isfinite(hp[i]))
                detail::fail("heatmap head: heatmap value at token ", i, " is not finite (", hp[i], ")");
        const head_path path = choose_cached(want);
        attention_maps am;
        if (maps) allocate_maps(be, req, S, *maps, am);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));

        if (path == head_path::generic) {
            auto hcol = be.upload(h_host.cv().reshape(shape{S, 1}));
            auto q = q_proj(be, hcol.cv());
            const view q3 = q.v().reshape(shape{S, H, d});
            if (rope) {
                detail::check(!cos.empty() && !sin.empty(), "heatmap head: RoPE is on but no cos/sin were given");
                be.rotary(q3, cos, sin);
            }
            auto o = be.alloc(shape{S, H, d}, dtype::f32);
            be.attention(q3, kv.k.cv().reshape(shape{S, H, d}), kv.v.cv().reshape(shape{S, H, d}), o.v(),
                         attention_args{scale, cview{}, {}, am});
            if (!project) return tensor_t{};
            return proj(be, o.cv().reshape(shape{S, D}));
        }

        const distinct_values dv = distinct_values::of(hp, S);
        const std::int64_t U = dv.count();
        auto vbar = be.alloc(shape{U, D}, dtype::f32);
        auto probs = be.alloc(shape{H, U, S}, dtype::f32);
        if (path == head_path::folded) {
            const head_projections<B> w{q_proj, k_proj, v_proj, heads};
            folded_attention(be, w, kv.x.cv(), dv.values, vbar.v(), probs.v());
        } else {
            auto hv = be.upload(tensor::from(shape{U, 1}, dv.values).cv());
            auto qu = q_proj(be, hv.cv());
            attention_args a{scale, cview{}, {}, {}};
            a.maps.per_head = probs.v();
            be.attention(qu.cv().reshape(shape{U, H, d}), kv.k.cv().reshape(shape{S, H, d}),
                         kv.v.cv().reshape(shape{S, H, d}), vbar.v().reshape(shape{U, H, d}), a);
        }
        if (am.wanted()) {
            tensor_t wv;
            if (!am.pooled.empty()) wv = weights_by_value(be, req.query_weights, dv);
            expand_maps(be, probs.cv(), dv.inverse, am, wv.cv());
        }
        if (!project) return tensor_t{};
        auto out_u = proj(be, vbar.cv());
        auto out = be.alloc(shape{S, D}, dtype::f32);
        be.gather_rows(out_u.cv(), dv.inverse, out.v());
        return out;
    }

    static void check_config(std::int64_t dim, std::int64_t heads, bool rope) {
        detail::check(dim > 0 && heads > 0 && dim % heads == 0, "heatmap head: dim ", dim,
                      " is not divisible by heads ", heads);
        detail::check(!rope || (dim / heads) % 4 == 0, "heatmap head: 2-D RoPE needs a head dim divisible by 4, got ",
                      dim / heads);
    }

    friend struct nn::visits_parameters<heatmap_attention_head>;
    template <class Self, class F>
    static void parameters(Self& self, const std::string& p, F& f) {
        self.q_proj.visit(join_name(p, "q_proj"), f);
        self.k_proj.visit(join_name(p, "k_proj"), f);
        self.v_proj.visit(join_name(p, "v_proj"), f);
        self.proj.visit(join_name(p, "proj"), f);
    }

    void allocate_maps(B& be, const maps_request& req, std::int64_t S, head_maps<B>& maps, attention_maps& am) const {
        if (req.per_head) {
            maps.per_head = be.alloc(shape{heads, S, S}, dtype::f32);
            am.per_head = maps.per_head.v();
        }
        if (req.mean) {
            maps.mean = be.alloc(shape{S, S}, dtype::f32);
            am.mean = maps.mean.v();
        }
        if (!req.query_weights.empty()) {
            maps.pooled = be.alloc(shape{req.query_weights.size(0), heads, S}, dtype::f32);
            am.pooled = maps.pooled.v();
            am.query_weights = req.query_weights;
        }
    }

    tensor_t generic(B& be, const head_inputs& in, const tensor& h_host, const attention_maps& am) const {
        const std::int64_t S = in.x.size(0), D = dim(), H = heads, d = head_dim();
        auto hcol = be.upload(h_host.cv().reshape(shape{S, 1}));
        auto q = q_proj(be, hcol.cv());
        auto k = k_proj(be, in.x);
        auto v = v_proj(be, in.x);
        const view q3 = q.v().reshape(shape{S, H, d}), k3 = k.v().reshape(shape{S, H, d});
        if (rope) {
            detail::check(!in.cos.empty() && !in.sin.empty(), "heatmap head: RoPE is on but no cos/sin were given");
            be.rotary(q3, in.cos, in.sin);
            be.rotary(k3, in.cos, in.sin);
        }
        auto o = be.alloc(shape{S, H, d}, dtype::f32);
        nn::sdpa_options opt;
        opt.maps = am;
        nn::sdpa(be, q3, k3, v.cv().reshape(shape{S, H, d}), o.v(), opt);
        return proj(be, o.cv().reshape(shape{S, D}));
    }

    // Query weights [R, S] summed per distinct value -> [R, U] on the backend.
    static tensor_t weights_by_value(B& be, const cview& qw, const distinct_values& dv) {
        const tensor w = be.download(qw).to(dtype::f32);
        const std::int64_t R = w.size(0), S = w.size(1), U = dv.count();
        tensor by(shape{R, U});
        for (std::int64_t r = 0; r < R; ++r)
            for (std::int64_t i = 0; i < S; ++i)
                by.ptr<float>()[r * U + dv.inverse[static_cast<std::size_t>(i)]] += w.ptr<float>()[r * S + i];
        return be.upload(by.cv());
    }
};

}  // namespace glimpse::heatmap
