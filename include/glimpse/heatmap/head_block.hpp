#pragma once
// heatmap_head: the transformer block around the heatmap attention head (the
// seed's Qwen2_5VisionHeatmapHead), pre-norm like the host encoder's blocks:
//
//   a = attn(norm1(x), h)      y = x + a
//   m = mlp(norm2(y))          z = y + m = x + delta,   delta = a + m
//
// `delta` is what the head adds to the features; integration.hpp decides how it
// is combined (residual: x + delta, the seed; gated; replace). The norm and MLP
// follow the host encoder, chosen by a block-kind traits type (nn/block_kind.hpp):
// rms_swiglu (Qwen2.5-VL) or ln_gelu_tanh (Qwen3-VL).
// Parameter names (docs/weights.md): norm1.*, attn.{q,k,v}_proj.*, attn.proj.*,
// norm2.*, mlp.* (gate_proj/up_proj/down_proj or linear_fc1/linear_fc2).

#include <cstdint>
#include <string>
#include <string_view>

#include "glimpse/core/backend.hpp"
#include "glimpse/heatmap/attention_head.hpp"
#include "glimpse/nn/block_kind.hpp"

namespace glimpse::heatmap {

// The block kinds live in nn/ (the Qwen vision blocks use them too).
using nn::block_kind;
using nn::ln_gelu_tanh;
using nn::rms_swiglu;

struct head_config {
    std::int64_t dim = 0;           // D, the encoder width
    std::int64_t heads = 1;         // H
    std::int64_t intermediate = 0;  // MLP width I
    bool rope = false;              // 2-D RoPE on q and k (positions from the encoder)
    float rope_theta = 10000.0f;
    float eps = 1e-6f;
};

// What a block needs from its features that no heatmap changes, computed once
// (prepare) and shared by every heatmap run on them (delta(be, kv, heatmap, ...)):
// the un-normalised features x [S, D] (the residual), the RoPE tables cos/sin
// [S, d] (empty without RoPE), and the attention's K/V of norm1(x).
template <Backend B>
struct head_block_kv {
    typename B::tensor x, cos, sin;
    head_kv<B> attn;
};

template <Backend B, block_kind Kind>
class heatmap_head : public nn::visits_parameters<heatmap_head<B, Kind>> {
public:
    using tensor_t = typename B::tensor;
    using norm_t = typename Kind::template norm<B>;
    using mlp_t = typename Kind::template mlp<B>;

    head_config config;
    norm_t norm1;
    heatmap_attention_head<B> attn;
    norm_t norm2;
    mlp_t mlp;

    static heatmap_head init(B& be, const head_config& c, rng& g, dtype t = dtype::f32) {
        heatmap_head b;
        b.config = c;
        b.norm1 = norm_t::init(be, c.dim, c.eps);
        b.attn = heatmap_attention_head<B>::init(be, c.dim, c.heads, c.rope, g, t);
        b.norm2 = norm_t::init(be, c.dim, c.eps);
        b.mlp = mlp_t::init(be, c.dim, c.intermediate, g, t);
        return b;
    }

    template <param_source S>
    static heatmap_head load(B& be, const S& src, const std::string& prefix, const head_config& c) {
        heatmap_head b;
        b.config = c;
        b.norm1 = norm_t::load(be, src, join_name(prefix, "norm1"), c.dim, c.eps);
        b.attn = heatmap_attention_head<B>::load(be, src, join_name(prefix, "attn"), c.dim, c.heads, c.rope);
        b.norm2 = norm_t::load(be, src, join_name(prefix, "norm2"), c.dim, c.eps);
        b.mlp = mlp_t::load(be, src, join_name(prefix, "mlp"), c.dim, c.intermediate);
        return b;
    }

    // delta [S, D] with z = x + delta. `in.x` are the un-normalised features.
    tensor_t delta(B& be, const head_inputs& in, const maps_request& req = {}, head_maps<B>* maps = nullptr,
                   head_path path = head_path::automatic) const {
        auto xn = norm1(be, in.x);
        head_inputs attn_in = in;
        attn_in.x = xn.cv();
        auto a = attn.forward(be, attn_in, req, maps, path);  // a
        auto y = be.alloc(in.x.shape(), dtype::f32);
        be.add(in.x, a.cv(), y.v(), 1.0f);  // y = x + a
        auto yn = norm2(be, y.cv());
        auto m = mlp(be, yn.cv());
        be.add(a.cv(), m.cv(), a.v(), 1.0f);  // delta = a + m
        return a;
    }

    // The heatmap-independent part of delta(in, ...): in.heatmap is ignored.
    head_block_kv<B> prepare(B& be, const head_inputs& in) const {
        head_block_kv<B> kv;
        const auto keep = [&](const cview& from) {
            auto t = be.alloc(from.shape(), dtype::f32);
            be.copy(from, t.v());
            return t;
        };
        kv.x = keep(in.x);
        if (!in.cos.empty()) kv.cos = keep(in.cos);
        if (!in.sin.empty()) kv.sin = keep(in.sin);
        auto xn = norm1(be, in.x);
        kv.attn = attn.prepare_kv(be, xn.cv(), in.cos, in.sin);
        return kv;
    }

    // delta on prepared features: what delta({x, heatmap, cos, sin}, ...) returns,
    // up to f32 rounding, without recomputing norm1, K or V.
    tensor_t delta(B& be, const head_block_kv<B>& kv, const cview& heatmap, const maps_request& req = {},
                   head_maps<B>* maps = nullptr, head_path path = head_path::automatic) const {
        auto a = attn.forward(be, kv.attn, heatmap, kv.cos.cv(), kv.sin.cv(), req, maps, path);
        auto y = be.alloc(kv.x.shape(), dtype::f32);
        be.add(kv.x.cv(), a.cv(), y.v(), 1.0f);
        auto yn = norm2(be, y.cv());
        auto m = mlp(be, yn.cv());
        be.add(a.cv(), m.cv(), a.v(), 1.0f);
        return a;
    }

    // z = x + delta: the seed's block output.
    tensor_t forward(B& be, const head_inputs& in, const maps_request& req = {}, head_maps<B>* maps = nullptr,
                     head_path path = head_path::automatic) const {
        auto d = delta(be, in, req, maps, path);
        be.add(in.x, d.cv(), d.v(), 1.0f);
        return d;
    }

private:
    friend struct nn::visits_parameters<heatmap_head>;
    template <class Self, class F>
    static void parameters(Self& self, const std::string& p, F& f) {
        self.norm1.visit(join_name(p, "norm1"), f);
        self.attn.visit(join_name(p, "attn"), f);
        self.norm2.visit(join_name(p, "norm2"), f);
        self.mlp.visit(join_name(p, "mlp"), f);
    }
};

}  // namespace glimpse::heatmap
