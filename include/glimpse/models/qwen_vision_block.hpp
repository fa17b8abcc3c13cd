#pragma once
// One Qwen vision-tower block (Qwen2.5-VL and Qwen3-VL alike), pre-norm:
//
//   x += proj(attn(rope(q), rope(k), v))   with q, k, v = split(qkv(norm1(x)))
//   x += mlp(norm2(x))
//
// x [S, D] f32 in the encoder's token order. qkv is one fused [3D, D] linear
// (rows [0, D) Q, [D, 2D) K, [2D, 3D) V; head h owns [h Hd, (h+1) Hd) of each),
// so q, k, v are strided [S, H, Hd] views of its [S, 3D] output — no copies.
// RoPE (rotate-half) with cos/sin [S, Hd] rows in the same token order; the
// attention is block-diagonal over `segments` (cu_seqlens or cu_window_seqlens).
// The norm and MLP follow the block kind: rms_swiglu (Qwen2.5, RMSNorm weight
// only + SwiGLU) or ln_gelu_tanh (Qwen3, LayerNorm + GELU-tanh MLP).
// Qwen's RMSNorm casts back to the activation dtype before the weight multiply
// (pitfall 15); with f32 activations that is plain RMSNorm.
//
// Parameter names (prefix "blocks.<i>"): norm1.*, attn.qkv.{weight,bias},
// attn.proj.{weight,bias}, norm2.*, mlp.* (gate_proj/up_proj/down_proj or
// linear_fc1/linear_fc2).

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/core/stage_clock.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/qwen_token_order.hpp"
#include "glimpse/nn/attention.hpp"
#include "glimpse/nn/block_kind.hpp"
#include "glimpse/nn/linear.hpp"
#include "glimpse/nn/parameters.hpp"

namespace glimpse::models {

template <Backend B, nn::block_kind Kind>
struct qwen_vision_block : nn::visits_parameters<qwen_vision_block<B, Kind>> {
    using tensor_t = typename B::tensor;
    using norm_t = typename Kind::template norm<B>;
    using mlp_t = typename Kind::template mlp<B>;

    norm_t norm1;
    nn::linear<B> qkv, proj;
    norm_t norm2;
    mlp_t mlp;
    std::int64_t heads = 1;

    std::int64_t dim() const { return proj.out_features(); }
    std::int64_t head_dim() const { return dim() / heads; }

    // Names and shapes of the parameters under `prefix` (for checking a checkpoint before loading).
    static std::vector<std::pair<std::string, shape>> expected(const std::string& prefix, std::int64_t d,
                                                               std::int64_t inter) {
        const auto n = [&](const char* s) { return prefix + "." + s; };
        std::vector<std::pair<std::string, shape>> e = {
            {n("norm1.weight"), shape{d}},           {n("norm2.weight"), shape{d}},
            {n("attn.qkv.weight"), shape{3 * d, d}}, {n("attn.qkv.bias"), shape{3 * d}},
            {n("attn.proj.weight"), shape{d, d}},    {n("attn.proj.bias"), shape{d}}};
        if constexpr (std::is_same_v<Kind, nn::ln_gelu_tanh>) {
            e.push_back({n("norm1.bias"), shape{d}});
            e.push_back({n("norm2.bias"), shape{d}});
            e.push_back({n("mlp.linear_fc1.weight"), shape{inter, d}});
            e.push_back({n("mlp.linear_fc1.bias"), shape{inter}});
            e.push_back({n("mlp.linear_fc2.weight"), shape{d, inter}});
            e.push_back({n("mlp.linear_fc2.bias"), shape{d}});
        } else {
            for (const char* l : {"gate_proj", "up_proj"}) {
                e.push_back({prefix + ".mlp." + l + ".weight", shape{inter, d}});
                e.push_back({prefix + ".mlp." + l + ".bias", shape{inter}});
            }
            e.push_back({n("mlp.down_proj.weight"), shape{d, inter}});
            e.push_back({n("mlp.down_proj.bias"), shape{d}});
        }
        return e;
    }

    template <param_source S>
    static qwen_vision_block load(B& be, const S& src, const std::string& prefix, std::int64_t d, std::int64_t heads,
                                  std::int64_t inter, float eps = 1e-6f) {
        glimpse::detail::check(heads > 0 && d % heads == 0, "qwen vision block '", prefix, "': dim ", d,
                               " is not divisible by ", heads, " heads");
        qwen_vision_block b;
        b.norm1 = norm_t::load(be, src, join_name(prefix, "norm1"), d, eps);
        b.qkv = nn::linear<B>::load(be, src, join_name(prefix, "attn.qkv"), d, 3 * d, true);
        b.proj = nn::linear<B>::load(be, src, join_name(prefix, "attn.proj"), d, d, true);
        b.norm2 = norm_t::load(be, src, join_name(prefix, "norm2"), d, eps);
        b.mlp = mlp_t::load(be, src, join_name(prefix, "mlp"), d, inter);
        b.heads = heads;
        return b;
    }

    // x [S, D] f32, updated in place. cos, sin [S, Hd]. segments: cumulative
    // boundaries [0, ..., S] (empty: one segment). maps: optional attention maps.
    void forward(B& be, const view& x, const cview& cos, const cview& sin, std::span<const std::int64_t> segments,
                 const attention_maps& maps = {}) const {
        const std::int64_t s = x.size(0), d = dim(), h = heads, hd = head_dim();
        glimpse::detail::check(x.rank() == 2 && x.size(1) == d, "qwen vision block: x must be [S, ", d, "], got ",
                               x.shape());
        tensor_t xn = [&] {
            const stage_clock::scope sc("norms");
            return norm1(be, x);
        }();
        tensor_t t = [&] {
            const stage_clock::scope sc("attn.qkv");
            return qkv(be, xn.cv());  // [S, 3D]
        }();
        const view tv = t.v();
        const strides_t st{3 * d, hd, 1};
        const auto head_view = [&](std::int64_t part) {
            return view(tv.data() + part * d * static_cast<std::int64_t>(sizeof(float)), dtype::f32, shape{s, h, hd},
                        st);
        };
        const view q = head_view(0), k = head_view(1), v = head_view(2);
        {
            const stage_clock::scope sc("attn.rotary");
            be.rotary(q, cos, sin);
            be.rotary(k, cos, sin);
        }
        tensor_t o = be.alloc(shape{s, h, hd}, dtype::f32);
        {
            const stage_clock::scope sc("attn.core");
            be.attention(q, k, v, o.v(),
                         attention_args{1.0f / std::sqrt(static_cast<float>(hd)), cview{}, segments, maps});
        }
        tensor_t a = [&] {
            const stage_clock::scope sc("attn.proj");
            return proj(be, o.cv().reshape(shape{s, d}));
        }();
        {
            const stage_clock::scope sc("residual");
            be.add(x, a.cv(), x, 1.0f);
        }
        tensor_t yn = [&] {
            const stage_clock::scope sc("norms");
            return norm2(be, x);
        }();
        tensor_t m = [&] {
            const stage_clock::scope sc("mlp");
            return mlp(be, yn.cv());
        }();
        const stage_clock::scope sc("residual");
        be.add(x, m.cv(), x, 1.0f);
    }

    template <class Self, class F>
    static void parameters(Self& self, const std::string& p, F& f) {
        self.norm1.visit(join_name(p, "norm1"), f);
        self.qkv.visit(join_name(p, "attn.qkv"), f);
        self.proj.visit(join_name(p, "attn.proj"), f);
        self.norm2.visit(join_name(p, "norm2"), f);
        self.mlp.visit(join_name(p, "mlp"), f);
    }
};

// What a tower's encode takes besides pixels, and what it returns.
template <Backend B>
struct encode_inputs {
    // Heatmaps in raster order: per image, grid_h * grid_w values (shared by its
    // frames) or grid_t * grid_h * grid_w (one map per frame), images concatenated.
    // The tower hands them to the policy permuted into its own token order.
    std::vector<cview> heatmaps;
    heatmap::maps_request maps;                              // maps each applied head returns
    std::vector<heatmap::head_maps<B>>* maps_out = nullptr;  // in the tower's token order at the site
    // Head dim of the heatmap heads' RoPE tables; 0: the tower's own (D / heads).
    std::int64_t rope_head_dim = 0;
    // Optional attention maps of the tower's own blocks, indexed by block (shorter:
    // none for the rest). Rows and columns are in the tower's token order at that
    // block (window order in Qwen2.5: heatmap::token_order from make_qwen_layout),
    // zero outside each token's segment. Views sized [H, N, N] / [N, N] / [R, H, N].
    std::vector<attention_maps> block_maps;
    attention_maps maps_of(std::int64_t block) const {
        return block < static_cast<std::int64_t>(block_maps.size()) ? block_maps[static_cast<std::size_t>(block)]
                                                                    : attention_maps{};
    }
};

template <Backend B>
struct vision_output {
    using tensor_t = typename B::tensor;
    tensor_t hidden;                  // [N, D] last block output, merge-block order (rows of pixel_values)
    tensor_t merged;                  // [N / m^2, out_hidden], merged-raster order, images concatenated
    std::vector<tensor_t> deepstack;  // Qwen3: one [N / m^2, out_hidden] per deepstack_visual_indexes
};

namespace detail {

// "visual." (Qwen2.5 legacy layout, what v5 saves for a model built from a
// config) or "model.visual." (re-saved Qwen2.5, every Qwen3), by probing `leaf`.
inline std::string detect_visual_prefix(const checkpoint& ck, const std::string& leaf) {
    for (const char* p : {"model.visual.", "visual."})
        if (ck.contains(std::string(p) + leaf)) return p;
    // Fall back on any tensor under either prefix (the probe itself may be the missing one).
    for (const auto& n : ck.names()) {
        if (n.rfind("model.visual.", 0) == 0) return "model.visual.";
        if (n.rfind("visual.", 0) == 0) return "visual.";
    }
    glimpse::detail::fail("checkpoint '", ck.path().string(),
                          "': no vision tower (no tensor under 'visual.' or 'model.visual.')");
}

// The integration context of one site: heatmaps permuted into `order`, and
// the RoPE tables the heads use (the tower's when their head dims agree).
template <Backend B>
struct site_inputs {
    std::vector<typename B::tensor> heatmaps;
    std::vector<cview> views;
    typename B::tensor cos, sin;

    site_inputs(B& be, const encode_inputs<B>& extra, const heatmap::token_order& order,
                std::span<const grid_thw_t> grids, const std::vector<nn::patch_pos>& pos, std::int64_t tower_head_dim,
                float theta, const typename B::tensor& tower_cos, const typename B::tensor& tower_sin, bool wanted) {
        if (!wanted) return;
        for (const auto& h : extra.heatmaps) heatmaps.push_back(be.upload(raster_to_tokens(h, order, grids).cv()));
        for (const auto& t : heatmaps) views.push_back(t.cv());
        const std::int64_t hd = extra.rope_head_dim > 0 ? extra.rope_head_dim : tower_head_dim;
        if (hd != tower_head_dim) {
            auto [c, s] = nn::vision_rotary{hd, theta}.cos_sin(pos);
            cos = be.upload(c.cv());
            sin = be.upload(s.cv());
            own = true;
        }
        tc = own ? cos.cv() : tower_cos.cv();
        ts = own ? sin.cv() : tower_sin.cv();
    }
    heatmap::integration_context<B> context(const encode_inputs<B>& extra) const {
        return heatmap::integration_context<B>{views, tc, ts, extra.maps, extra.maps_out};
    }

private:
    bool own = false;
    cview tc, ts;
};

// Checks that every expected tensor is in `src` with its shape, before any is
// loaded, so that one error lists everything that is missing (up to 10 names)
// or mis-shaped.
template <param_source S>
void require_tensors(const S& src, const std::vector<std::pair<std::string, shape>>& expected,
                     const std::string& where) {
    std::vector<std::string> missing, wrong;
    for (const auto& [n, s] : expected) {
        if (!src.contains(n)) {
            missing.push_back(n);
            continue;
        }
        const cview v = src.get(n);
        if (!(v.shape() == s)) wrong.push_back("'" + n + "' has shape " + v.shape().str() + ", expected " + s.str());
    }
    if (missing.empty() && wrong.empty()) return;
    std::string msg;
    if (!missing.empty()) {
        msg += std::to_string(missing.size()) + " missing tensor" + (missing.size() > 1 ? "s" : "") + ": ";
        for (std::size_t i = 0; i < missing.size() && i < 10; ++i) msg += (i ? ", '" : "'") + missing[i] + "'";
        if (missing.size() > 10) msg += ", ... (" + std::to_string(missing.size() - 10) + " more)";
    }
    for (std::size_t i = 0; i < wrong.size() && i < 10; ++i) msg += (msg.empty() ? "" : "; ") + wrong[i];
    glimpse::detail::fail(where, ": ", msg);
}

}  // namespace detail

}  // namespace glimpse::models
