#pragma once
// The Qwen2.5-VL vision tower (shared/docs/qwen_vision_reference.md §4), as
// transformers 5.23 computes it, over any backend, with heatmap heads placed
// by an integration policy.
//
//   x = pixel_values [N, C T p p] . W_patch^T        (Conv3d with kernel = stride: a matmul, no bias)
//   window permutation of x and of the RoPE rows, in groups of m^2 = 4 rows
//   blocks 0..depth-1 (RMSNorm + SwiGLU), full attention per image frame at
//     fullatt_block_indexes, attention inside windows elsewhere
//   merger: RMSNorm ln_q per token -> [N/4, 4D] -> mlp.0 -> GELU(erf) -> mlp.2
//   un-window the merged rows (argsort(window_index))
//
// Token orders: pixel_values rows and `hidden` are merge-block order; every
// block, every policy site and the merger see WINDOW order (the heatmaps the
// policy receives are permuted to it); `merged` is merged-raster order.
// (transformers 5.x returns last_hidden_state still window-ordered; ours is
// un-windowed to merge-block order, like the pixels.)

#include <algorithm>
#include <array>
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

template <Backend B>
class qwen2_5_vision {
public:
    using tensor_t = typename B::tensor;
    using block_t = qwen_vision_block<B, nn::rms_swiglu>;

    qwen_vision_config config;
    std::string prefix;     // "visual." or "model.visual."
    tensor_t patch_weight;  // [D, C, T, p, p], storage dtype
    std::vector<block_t> blocks;
    nn::rms_norm<B> ln_q;  // [D]
    nn::linear<B> mlp0;    // [4D, 4D]
    nn::linear<B> mlp2;    // [out, 4D]

    static qwen2_5_vision load(B& be, const checkpoint& ck, const qwen_vision_config& cfg) {
        glimpse::detail::check(cfg.family == qwen_family::qwen2_5_vl, "qwen2_5_vision::load: config is for ",
                               name(cfg.family));
        qwen2_5_vision m;
        m.config = cfg;
        m.prefix = detail::detect_visual_prefix(ck, "patch_embed.proj.weight");
        const std::int64_t d = cfg.hidden_size, g = cfg.merge_group(), I = cfg.intermediate_size;
        const std::string& p = m.prefix;
        std::vector<std::pair<std::string, shape>> want = {
            {p + "patch_embed.proj.weight",
             shape{d, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size}},
            {p + "merger.ln_q.weight", shape{d}},
            {p + "merger.mlp.0.weight", shape{g * d, g * d}},
            {p + "merger.mlp.0.bias", shape{g * d}},
            {p + "merger.mlp.2.weight", shape{cfg.out_hidden_size, g * d}},
            {p + "merger.mlp.2.bias", shape{cfg.out_hidden_size}}};
        for (std::int64_t i = 0; i < cfg.depth; ++i)
            for (auto& e : block_t::expected(p + "blocks." + std::to_string(i), d, I)) want.push_back(std::move(e));
        detail::require_tensors(ck, want, "qwen2_5_vl checkpoint '" + ck.path().string() + "'");

        m.patch_weight = load_param(be, ck, want[0].first, want[0].second);
        for (std::int64_t i = 0; i < cfg.depth; ++i)
            m.blocks.push_back(block_t::load(be, ck, p + "blocks." + std::to_string(i), d, cfg.num_heads, I, cfg.eps));
        m.ln_q = nn::rms_norm<B>::load(be, ck, p + "merger.ln_q", d, cfg.eps);
        m.mlp0 = nn::linear<B>::load(be, ck, p + "merger.mlp.0", g * d, g * d, true);
        m.mlp2 = nn::linear<B>::load(be, ck, p + "merger.mlp.2", g * d, cfg.out_hidden_size, true);
        return m;
    }

    // pixel_values [N, C T p p] (merge-block rows, as the processor emits them),
    // grid_thw one (t, h, w) per image or video.
    template <class Policy = heatmap::no_heatmap>
    requires heatmap::integration_policy<Policy, B> vision_output<B> encode(B& be, const cview& pixel_values,
                                                                            std::span<const grid_thw_t> grid_thw,
                                                                            const Policy& policy = {},
                                                                            const encode_inputs<B>& extra = {})
    const {
        const auto& c = config;
        const std::int64_t d = c.hidden_size, m = c.spatial_merge_size, g = m * m;
        const qwen_layout L = make_qwen_layout(grid_thw, c.window_merged(), m);
        const std::int64_t n = L.tokens();
        glimpse::detail::check(
            pixel_values.rank() == 2 && pixel_values.size(0) == n && pixel_values.size(1) == c.patch_dim(),
            "qwen2_5_vision::encode: pixel_values must be [", n, ", ", c.patch_dim(), "] for these grids, got ",
            pixel_values.shape());

        // Patch embedding, merge-block order, then into window order.
        tensor_t x = be.alloc(shape{n, d}, dtype::f32);
        {
            const stage_clock::scope sc("patch_embed");
            tensor_t xmb = be.alloc(shape{n, d}, dtype::f32);
            be.gemm(pixel_values, patch_weight.cv().reshape(shape{d, c.patch_dim()}), xmb.v(),
                    gemm_args{.trans_b = true}, cview{});
            be.gather_rows(xmb.cv(), L.window_rows(), x.v());
        }

        // RoPE rows in window order (the same permutation as x).
        const auto pos = L.positions(L.window_order);
        auto [hc, hs] = nn::vision_rotary{c.head_dim(), c.rope_theta}.cos_sin(pos);
        const tensor_t cos = be.upload(hc.cv()), sin = be.upload(hs.cv());

        bool any_site = policy.applies_at(heatmap::site::before_merger());
        for (std::int64_t k = 0; k < c.depth; ++k)
            any_site = any_site || policy.applies_at(heatmap::site::after_block(static_cast<int>(k)));
        const detail::site_inputs<B> si(be, extra, L.window_order, grid_thw, pos, c.head_dim(), c.rope_theta, cos, sin,
                                        any_site);

        for (std::int64_t k = 0; k < c.depth; ++k) {
            const bool full = std::find(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end(), k) !=
                              c.fullatt_block_indexes.end();
            blocks[static_cast<std::size_t>(k)].forward(be, x.v(), cos.cv(), sin.cv(),
                                                        full ? L.cu_seqlens : L.cu_window_seqlens, extra.maps_of(k));
            const auto s = heatmap::site::after_block(static_cast<int>(k));
            if (policy.applies_at(s)) policy.apply(be, s, x.v(), si.context(extra));
        }
        if (policy.applies_at(heatmap::site::before_merger()))
            policy.apply(be, heatmap::site::before_merger(), x.v(), si.context(extra));

        vision_output<B> out;
        out.hidden = be.alloc(shape{n, d}, dtype::f32);
        be.gather_rows(x.cv(), L.unwindow_rows(), out.hidden.v());

        // Merger on window-ordered rows (each group of 4 is one 2x2 block), then un-window.
        const stage_clock::scope sc("merger(s)");
        tensor_t xn = ln_q(be, x.cv());
        tensor_t h = mlp0(be, xn.cv().reshape(shape{n / g, g * d}));
        be.activate(activation::gelu_erf, h.cv(), h.v());
        tensor_t mw = mlp2(be, h.cv());
        out.merged = be.alloc(mw.shape(), dtype::f32);
        be.gather_rows(mw.cv(), L.unwindow_groups(), out.merged.v());
        return out;
    }
};

}  // namespace glimpse::models
