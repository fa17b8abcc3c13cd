#pragma once
// The Qwen3-VL vision tower (shared/docs/qwen_vision_reference.md §4), as
// transformers 5.23 computes it, over any backend, with heatmap heads placed
// by an integration policy.
//
//   x = pixel_values [N, C T p p] . W_patch^T + b    (Conv3d with kernel = stride)
//   x += bilinear(pos_embed) (align-corners over the n x n table, per image, §4.2)
//   blocks (LayerNorm + GELU-tanh MLP), full attention per image frame
//   after block l in deepstack_visual_indexes: deepstack merger
//       [N/4, 4D] -> LayerNorm(4D) -> fc1 -> GELU(erf) -> fc2     (norm AFTER the 2x2 concat)
//   merger: LayerNorm(D) per token -> [N/4, 4D] -> fc1 -> GELU(erf) -> fc2   (norm BEFORE it)
//
// No windows: every layer, every site and `hidden` are in merge-block order
// (pixel_values rows); merged and deepstack rows are merged-raster order.
// A policy head at after_block(l) runs before the deepstack tap of block l, so
// the deepstack features see what the head added (the head is part of the stream).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "glimpse/core/backend.hpp"
#include "glimpse/core/stage_clock.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/io/safetensors.hpp"
#include "glimpse/models/qwen_config.hpp"
#include "glimpse/models/qwen_token_order.hpp"
#include "glimpse/models/qwen_vision_block.hpp"
#include "glimpse/nn/linear.hpp"
#include "glimpse/nn/norm.hpp"
#include "glimpse/nn/rotary.hpp"

namespace glimpse::models {

// Qwen3VLVisionPatchMerger: norm (per token [D], or after the concat [4D] for
// the deepstack mergers), fc1 4D -> 4D, exact GELU, fc2 4D -> out.
template <Backend B>
struct qwen3_patch_merger {
    using tensor_t = typename B::tensor;
    nn::layer_norm<B> norm;
    nn::linear<B> fc1, fc2;
    bool postshuffle = false;

    static void expected(std::vector<std::pair<std::string, shape>>& e, const std::string& p, std::int64_t d,
                         std::int64_t g, std::int64_t out, bool postshuffle) {
        const std::int64_t nd = postshuffle ? g * d : d;
        e.push_back({p + ".norm.weight", shape{nd}});
        e.push_back({p + ".norm.bias", shape{nd}});
        e.push_back({p + ".linear_fc1.weight", shape{g * d, g * d}});
        e.push_back({p + ".linear_fc1.bias", shape{g * d}});
        e.push_back({p + ".linear_fc2.weight", shape{out, g * d}});
        e.push_back({p + ".linear_fc2.bias", shape{out}});
    }
    static qwen3_patch_merger load(B& be, const checkpoint& ck, const std::string& p, std::int64_t d, std::int64_t g,
                                   std::int64_t out, bool postshuffle, float eps) {
        return {nn::layer_norm<B>::load(be, ck, p + ".norm", postshuffle ? g * d : d, eps),
                nn::linear<B>::load(be, ck, p + ".linear_fc1", g * d, g * d, true),
                nn::linear<B>::load(be, ck, p + ".linear_fc2", g * d, out, true), postshuffle};
    }
    // x [N, D] in merge-block order (groups of g rows = one merged token).
    tensor_t operator()(B& be, const cview& x) const {
        const std::int64_t n = x.size(0), d = x.size(1), g = fc1.in_features() / d;
        const tensor_t h = postshuffle ? norm(be, x.reshape(shape{n / g, g * d})) : norm(be, x);
        tensor_t a = fc1(be, h.cv().reshape(shape{n / g, g * d}));
        be.activate(activation::gelu_erf, a.cv(), a.v());
        return fc2(be, a.cv());
    }
};

// Bilinear, align-corners position embedding of transformers 5.23
// (vision_utils.py _interpolation_axis_taps_weights), f32 arithmetic:
// s = r (n-1) / max(H-1, 1); f = floor(s); d = s - f; taps f, min(f+1, n-1);
// weights w0 = 1 - d, w1 = 1 - (1 - d) (not always d); 2-D weights are f32
// products in tap order (h0,w0), (h0,w1), (h1,w0), (h1,w1), summed in f32.
// table: host f32 [n*n, D]. Returns [N, D] rows in the order of `layout`'s
// merge-block tokens.
inline tensor qwen3_position_embedding(const cview& table, const qwen_layout& layout,
                                       std::span<const grid_thw_t> grids) {
    const std::int64_t side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(table.size(0)))));
    const std::int64_t d = table.size(1), n = layout.tokens();
    const float* tab = table.ptr<float>();
    // Image frame of each raster index: its grid (H, W).
    std::vector<std::pair<std::int64_t, std::int64_t>> hw(static_cast<std::size_t>(n));
    std::int64_t off = 0;
    for (const auto& [t, h, w] : grids)
        for (std::int64_t i = 0; i < t * h * w; ++i) hw[static_cast<std::size_t>(off++)] = {h, w};
    const auto axis = [side](std::int64_t i, std::int64_t size, std::int64_t taps[2], float wt[2]) {
        const float src = static_cast<float>(i * (side - 1)) / static_cast<float>(std::max<std::int64_t>(size - 1, 1));
        const float f = std::floor(src);
        const float dd = src - f;
        taps[0] = std::min(static_cast<std::int64_t>(f), side - 1);
        taps[1] = std::min(static_cast<std::int64_t>(f) + 1, side - 1);
        wt[0] = std::max(1.0f - dd, 0.0f);
        wt[1] = std::max(1.0f - std::fabs(dd - 1.0f), 0.0f);
    };
    tensor out(shape{n, d});
    float* o = out.ptr<float>();
    for (std::int64_t t = 0; t < n; ++t) {
        const auto raster = layout.merge_order.raster_of_token[static_cast<std::size_t>(t)];
        const auto [r, c] = layout.raster_pos[static_cast<std::size_t>(raster)];
        const auto [H, W] = hw[static_cast<std::size_t>(raster)];
        std::int64_t th[2], tw[2];
        float wh[2], ww[2];
        axis(r, H, th, wh);
        axis(c, W, tw, ww);
        const float* rows[4] = {tab + (th[0] * side + tw[0]) * d, tab + (th[0] * side + tw[1]) * d,
                                tab + (th[1] * side + tw[0]) * d, tab + (th[1] * side + tw[1]) * d};
        const float w[4] = {wh[0] * ww[0], wh[0] * ww[1], wh[1] * ww[0], wh[1] * ww[1]};
        float* row = o + t * d;
        for (std::int64_t j = 0; j < d; ++j)
            row[j] = ((rows[0][j] * w[0] + rows[1][j] * w[1]) + rows[2][j] * w[2]) + rows[3][j] * w[3];
    }
    return out;
}

template <Backend B>
class qwen3_vision {
public:
    using tensor_t = typename B::tensor;
    using block_t = qwen_vision_block<B, nn::ln_gelu_tanh>;

    qwen_vision_config config;
    std::string prefix;
    tensor_t patch_weight;  // [D, C, T, p, p], storage dtype
    tensor_t patch_bias;    // [D]
    tensor pos_table;       // host f32 [n*n, D] (bf16 values widened exactly)
    std::vector<block_t> blocks;
    std::vector<qwen3_patch_merger<B>> deepstack_mergers;
    qwen3_patch_merger<B> merger;

    static qwen3_vision load(B& be, const checkpoint& ck, const qwen_vision_config& cfg) {
        glimpse::detail::check(cfg.family == qwen_family::qwen3_vl, "qwen3_vision::load: config is for ",
                               name(cfg.family));
        qwen3_vision m;
        m.config = cfg;
        m.prefix = detail::detect_visual_prefix(ck, "patch_embed.proj.weight");
        const std::int64_t d = cfg.hidden_size, g = cfg.merge_group(), I = cfg.intermediate_size,
                           out = cfg.out_hidden_size;
        const std::string& p = m.prefix;
        std::vector<std::pair<std::string, shape>> want = {
            {p + "patch_embed.proj.weight",
             shape{d, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size}},
            {p + "patch_embed.proj.bias", shape{d}},
            {p + "pos_embed.weight", shape{cfg.num_position_embeddings, d}}};
        for (std::int64_t i = 0; i < cfg.depth; ++i)
            for (auto& e : block_t::expected(p + "blocks." + std::to_string(i), d, I)) want.push_back(std::move(e));
        for (std::size_t j = 0; j < cfg.deepstack_visual_indexes.size(); ++j)
            qwen3_patch_merger<B>::expected(want, p + "deepstack_merger_list." + std::to_string(j), d, g, out, true);
        qwen3_patch_merger<B>::expected(want, p + "merger", d, g, out, false);
        detail::require_tensors(ck, want, "qwen3_vl checkpoint '" + ck.path().string() + "'");

        m.patch_weight = load_param(be, ck, want[0].first, want[0].second);
        m.patch_bias = load_param(be, ck, want[1].first, want[1].second);
        m.pos_table = ck.load(want[2].first).to(dtype::f32);
        for (std::int64_t i = 0; i < cfg.depth; ++i)
            m.blocks.push_back(block_t::load(be, ck, p + "blocks." + std::to_string(i), d, cfg.num_heads, I, cfg.eps));
        for (std::size_t j = 0; j < cfg.deepstack_visual_indexes.size(); ++j)
            m.deepstack_mergers.push_back(qwen3_patch_merger<B>::load(
                be, ck, p + "deepstack_merger_list." + std::to_string(j), d, g, out, true, cfg.eps));
        m.merger = qwen3_patch_merger<B>::load(be, ck, p + "merger", d, g, out, false, cfg.eps);
        return m;
    }

    template <class Policy = heatmap::no_heatmap>
    requires heatmap::integration_policy<Policy, B> vision_output<B> encode(B& be, const cview& pixel_values,
                                                                            std::span<const grid_thw_t> grid_thw,
                                                                            const Policy& policy = {},
                                                                            const encode_inputs<B>& extra = {})
    const {
        const auto& c = config;
        const std::int64_t d = c.hidden_size, m = c.spatial_merge_size;
        const qwen_layout L = make_qwen_layout(grid_thw, 0, m);
        const std::int64_t n = L.tokens();
        glimpse::detail::check(
            pixel_values.rank() == 2 && pixel_values.size(0) == n && pixel_values.size(1) == c.patch_dim(),
            "qwen3_vision::encode: pixel_values must be [", n, ", ", c.patch_dim(), "] for these grids, got ",
            pixel_values.shape());

        tensor_t x = be.alloc(shape{n, d}, dtype::f32);
        {
            const stage_clock::scope sc("patch_embed");
            be.gemm(pixel_values, patch_weight.cv().reshape(shape{d, c.patch_dim()}), x.v(), gemm_args{.trans_b = true},
                    patch_bias.cv());
        }
        {
            const stage_clock::scope sc("pos_embed");
            const tensor_t pe = be.upload(qwen3_position_embedding(pos_table.cv(), L, grid_thw).cv());
            be.add(x.cv(), pe.cv(), x.v(), 1.0f);
        }

        const auto pos = L.positions(L.merge_order);
        auto [hc, hs] = nn::vision_rotary{c.head_dim(), c.rope_theta}.cos_sin(pos);
        const tensor_t cos = be.upload(hc.cv()), sin = be.upload(hs.cv());

        bool any_site = policy.applies_at(heatmap::site::before_merger());
        for (std::int64_t k = 0; k < c.depth; ++k)
            any_site = any_site || policy.applies_at(heatmap::site::after_block(static_cast<int>(k)));
        const detail::site_inputs<B> si(be, extra, L.merge_order, grid_thw, pos, c.head_dim(), c.rope_theta, cos, sin,
                                        any_site);

        vision_output<B> out;
        for (std::int64_t k = 0; k < c.depth; ++k) {
            blocks[static_cast<std::size_t>(k)].forward(be, x.v(), cos.cv(), sin.cv(), L.cu_seqlens, extra.maps_of(k));
            const auto s = heatmap::site::after_block(static_cast<int>(k));
            if (policy.applies_at(s)) policy.apply(be, s, x.v(), si.context(extra));
            const auto& ds = c.deepstack_visual_indexes;
            if (auto it = std::find(ds.begin(), ds.end(), k); it != ds.end()) {
                const stage_clock::scope sc("merger(s)");
                out.deepstack.push_back(deepstack_mergers[static_cast<std::size_t>(it - ds.begin())](be, x.cv()));
            }
        }
        if (policy.applies_at(heatmap::site::before_merger()))
            policy.apply(be, heatmap::site::before_merger(), x.v(), si.context(extra));
        {
            const stage_clock::scope sc("merger(s)");
            out.merged = merger(be, x.cv());
        }
        out.hidden = std::move(x);
        return out;
    }
};

}  // namespace glimpse::models
