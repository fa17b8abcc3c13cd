#pragma once
// A Qwen tower's features at the heatmap head's site (before the merger), and the head's maps
// brought back to the image: what glimpse-train caches per image (the encoder is frozen) and
// what the comparison reuses for several heatmaps of one image.
//
// Token orders (qwen_token_order.hpp): the site's rows are in its own order (window order in
// Qwen2.5, merge-block order in Qwen3); heatmaps are given in RASTER order over the pre-merge
// patch grid or as ordered_heatmaps, and converted here; the maps the head returns in the
// site's order come back to raster in maps_to_raster.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/heatmap/attention_head.hpp"
#include "glimpse/heatmap/head_block.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/models/qwen_config.hpp"
#include "glimpse/models/qwen_token_order.hpp"

namespace glimpse::models {

// The head's attention in RASTER order over the grid_h x grid_w pre-merge grid:
// the attention that the in-box queries place on every key (the pooled map with
// query weights 1/count on in-box patches, 0 elsewhere).
struct raster_attention {
    std::int64_t grid_h = 0, grid_w = 0;
    tensor per_head;                   // [H, grid_h, grid_w]; each head's map sums to 1
    tensor mean;                       // [grid_h, grid_w], the average over heads; sums to 1
    std::vector<std::uint8_t> in_box;  // [grid_h * grid_w] raster: 1 where the query set is
    std::int64_t in_box_count = 0;
    // The mass `mean` puts in the box (analysis/attention_stats.hpp has both definitions):
    // mass_in_box weighs each patch by the heatmap, for a box's coverage heatmap the box's
    // coverage of the patch: glimpse-compare's number for the same box (NaN without a
    // heatmap); mass_on_box_patches counts the in-box patches whole (glimpse-train's m).
    double mass_in_box = 0;
    double mass_on_box_patches = 0;
};

// The order of the tokens at the head's site (before the merger): window order
// for Qwen2.5, merge-block order for Qwen3 (its layout has no windows, so its
// window order IS the merge-block order).
inline heatmap::token_order site_order(const qwen_vision_config& cfg, std::span<const grid_thw_t> grids) {
    return make_qwen_layout(grids, cfg.family == qwen_family::qwen2_5_vl ? cfg.window_merged() : 0,
                            cfg.spatial_merge_size)
        .window_order;
}

// Pooled maps [1, H, S] in `order` (token t holds raster patch
// order.raster_of_token[t]) -> raster per-head and mean maps, and the mass the
// mean map puts on `in_box` (raster indicator) and under `heat` (raster heatmap;
// empty: none, mass_in_box NaN).
inline raster_attention maps_to_raster(const cview& pooled, const heatmap::token_order& order, std::int64_t grid_h,
                                       std::int64_t grid_w, std::span<const std::uint8_t> in_box,
                                       std::span<const float> heat) {
    const std::int64_t S = grid_h * grid_w;
    glimpse::detail::check(pooled.rank() == 3 && pooled.size(0) == 1 && pooled.size(2) == S && order.size() == S,
                           "maps_to_raster: pooled maps must be [1, H, ", S, "] for a ", grid_h, "x", grid_w,
                           " grid, got ", pooled.shape(), " (order of ", order.size(), " tokens)");
    glimpse::detail::check(static_cast<std::int64_t>(in_box.size()) == S, "maps_to_raster: in-box mask has ",
                           in_box.size(), " values for ", S, " patches");
    const std::int64_t H = pooled.size(1);
    raster_attention out;
    out.grid_h = grid_h;
    out.grid_w = grid_w;
    out.per_head = tensor(shape{H, grid_h, grid_w});
    out.mean = tensor(shape{grid_h, grid_w});
    float* ph = out.per_head.ptr<float>();
    float* mn = out.mean.ptr<float>();
    for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t t = 0; t < S; ++t) {
            const float v = pooled.at({0, h, t});
            const std::int64_t r = order.raster_of_token[static_cast<std::size_t>(t)];
            ph[h * S + r] = v;
        }
    // Mean in double over heads, then stored in f32: the same sum whatever the order.
    for (std::int64_t r = 0; r < S; ++r) {
        double s = 0;
        for (std::int64_t h = 0; h < H; ++h) s += ph[h * S + r];
        mn[r] = static_cast<float>(s / static_cast<double>(H));
    }
    out.in_box.assign(in_box.begin(), in_box.end());
    out.in_box_count = std::count_if(in_box.begin(), in_box.end(), [](std::uint8_t v) { return v != 0; });
    const std::span<const float> mean(mn, static_cast<std::size_t>(S));
    out.mass_on_box_patches = analysis::mass_on_patches(mean, in_box);
    out.mass_in_box = heat.empty() ? std::numeric_limits<double>::quiet_NaN() : analysis::weighted_mass(mean, heat);
    return out;
}

// What a heatmap head is fed on site features (site_features::inputs): the
// features' x, cos, sin and the heatmap, all in the site's token order, with the
// heatmap and the in-box query weights copied into the backend's memory. `in`
// views the features (which must outlive this) and `heat`; not copyable or
// movable, so those views cannot dangle. Passes as a heatmap::head_inputs.
template <Backend B>
struct site_head_inputs {
    typename B::tensor heat;           // [S] in the site's order
    typename B::tensor query_weights;  // [1, S]: 1/count on the tokens where heat != 0, else 0
    heatmap::head_inputs in;

    site_head_inputs(B& be, const cview& x, const cview& cos, const cview& sin, const tensor& host_heat,
                     const tensor& host_query_weights)
        : heat(be.upload(host_heat.cv())),
          query_weights(be.upload(host_query_weights.cv())),
          in{x, heat.cv(), cos, sin} {}
    site_head_inputs(const site_head_inputs&) = delete;
    site_head_inputs& operator=(const site_head_inputs&) = delete;

    // The maps request whose `pooled` map site_features::attention reads.
    heatmap::maps_request pooled_request() const {
        heatmap::maps_request r;
        r.query_weights = query_weights.cv();
        return r;
    }
    operator const heatmap::head_inputs&() const noexcept { return in; }
};

// The tower's features at the head's site (before the merger), computed once:
// what glimpse-train caches per image (the encoder is frozen) and what the
// comparison reuses for several heatmaps. Rows are in the site's token order
// (`order`: token t holds raster patch order.raster_of_token[t]); cos/sin are
// the head's RoPE tables for those tokens ([S, D / H]). That order is not
// raster, so heatmaps for these features are made here (box_heatmap,
// in_site_order) or given as an ordered_heatmap, which inputs() converts.
template <Backend B>
struct site_features {
    grid_thw_t grid{};
    heatmap::token_order order;
    typename B::tensor x;         // [S, D] f32, before the head
    typename B::tensor cos, sin;  // [S, D / H]

    std::int64_t tokens() const { return grid[1] * grid[2]; }

    // A box in pixels of the ORIGINAL image (image_w x image_h) -> its per-patch
    // coverage heatmap, in this site's token order.
    heatmap::ordered_heatmap box_heatmap(const heatmap::box& b, double image_w, double image_h,
                                         heatmap::box_mode mode = heatmap::box_mode::coverage) const {
        return heatmap::box_heatmap(b, image_w, image_h, grid[1], grid[2], checked_order(), mode);
    }

    // Any heatmap of this image (e.g. ordered_heatmap::raster(pool_to_patches(...)))
    // in this site's token order.
    heatmap::ordered_heatmap in_site_order(const heatmap::ordered_heatmap& h) const {
        return h.in_order(checked_order());
    }

    // The head's inputs on these features with heatmap `h` (converted to the
    // site's order when it is in another, e.g. raster): for heatmap_head's
    // forward / delta, and query weights selecting the tokens where h != 0.
    site_head_inputs<B> inputs(B& be, const heatmap::ordered_heatmap& h) const {
        const heatmap::ordered_heatmap site = in_site_order(h);
        const std::int64_t S = tokens();
        const float* hv = site.values.ptr<float>();
        std::int64_t count = 0;
        for (std::int64_t t = 0; t < S; ++t) count += hv[t] != 0.0f ? 1 : 0;
        glimpse::detail::check(count > 0, "site_features::inputs: no query patch (the heatmap is all zero)");
        tensor qw(shape{1, S});
        for (std::int64_t t = 0; t < S; ++t)
            qw.ptr<float>()[t] = hv[t] != 0.0f ? 1.0f / static_cast<float>(count) : 0.0f;
        return site_head_inputs<B>(be, x.cv(), cos.cv(), sin.cv(), site.values, qw);
    }

    // The pooled map of a head run on inputs(be, h) with its pooled_request()
    // ([1, H, S], site order) -> raster per-head and mean maps, and the mass the
    // mean map puts on h's non-zero patches: what qwen_encoder::attend returns.
    raster_attention attention(B& be, const heatmap::head_maps<B>& maps, const heatmap::ordered_heatmap& h) const {
        const std::int64_t S = tokens();
        glimpse::detail::check(h.size() == S, "site_features::attention: a heatmap of ", h.size(), " values for ", S,
                               " tokens");
        const tensor raster = h.to_raster();
        std::vector<std::uint8_t> in_box(static_cast<std::size_t>(S));
        for (std::int64_t r = 0; r < S; ++r)
            in_box[static_cast<std::size_t>(r)] = raster.ptr<float>()[r] != 0.0f ? 1 : 0;
        glimpse::detail::check(maps.pooled.shape().rank() == 3,
                               "site_features::attention: no pooled map (run the head "
                               "with inputs(be, h).pooled_request())");
        const tensor pooled = be.download(maps.pooled.cv()).to(dtype::f32);
        return maps_to_raster(pooled.cv(), checked_order(), grid[1], grid[2], in_box,
                              std::span<const float>(raster.ptr<float>(), static_cast<std::size_t>(S)));
    }

private:
    const heatmap::token_order& checked_order() const {
        glimpse::detail::check(order.size() == tokens() && tokens() > 0, "site_features: a token order of ",
                               order.size(), " tokens for a ", grid[1], "x", grid[2], " grid");
        return order;
    }
};

// The head's heatmap-independent work on cached site features (norm1, K, V),
// prepared once per model and image by qwen_encoder::prepare_head and shared by
// every attend() on those features.
template <Backend B>
struct head_cache {
    heatmap::head_block_kv<B> kv;
};

namespace detail {

// An integration policy that applies nothing: it copies what the site sees.
template <Backend B>
struct capture_site {
    site_features<B>* out;
    bool applies_at(const heatmap::site& s) const { return s == heatmap::site::before_merger(); }
    void apply(B& be, const heatmap::site&, const view& x, const heatmap::integration_context<B>& ctx) const {
        const auto keep = [&](const cview& from) {
            auto t = be.alloc(from.shape(), dtype::f32);
            be.copy(from, t.v());
            return t;
        };
        out->x = keep(cview(x));
        out->cos = keep(ctx.cos);
        out->sin = keep(ctx.sin);
    }
};

}  // namespace detail

}  // namespace glimpse::models
