#pragma once
// Token orders of the Qwen vision towers in closed form
// (shared/docs/qwen_vision_reference.md §5), for one image or a batch of
// images / video frames.
//
// Per image (and frame) with a grid_h x grid_w pre-merge patch grid and merge
// size m (2): patch (r, c) lies in merge block (bh, bw) = (r/m, c/m) at
// (ih, iw) = (r%m, c%m); Hm = grid_h/m, Wm = grid_w/m.
//   merge-block order (pixel_values rows, every Qwen3 layer, Qwen2.5 before windows):
//     idx_mb(r, c)  = m^2 (bh Wm + bw) + m ih + iw
//   Qwen2.5 window order (all of Qwen2.5's blocks), windows of V x V merge blocks:
//     wh = bh/V, ww = bw/V, rh = min(V, Hm - V wh), cw = min(V, Wm - V ww)
//     pos(bh, bw)   = V wh Wm + V ww rh + (bh%V) cw + (bw%V)
//     idx_win(r, c) = m^2 pos(bh, bw) + m ih + iw
// Several images / frames: each is laid out after the patches of the previous
// ones (offset = sum of grid_t grid_h grid_w before it, + f grid_h grid_w for
// frame f); windows and attention segments never cross them.
//
// "Raster" index of a batch: the same offsets, r grid_w + c inside a frame —
// i.e. each frame's raster heatmap, concatenated in input order.

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/heatmap/prepare.hpp"
#include "glimpse/nn/rotary.hpp"

namespace glimpse::models {

using grid_thw_t = std::array<std::int64_t, 3>;  // (grid_t, grid_h, grid_w) in pre-merge patches

inline std::int64_t idx_merge_block(std::int64_t r, std::int64_t c, std::int64_t grid_w, std::int64_t m = 2) {
    const std::int64_t wm = grid_w / m;
    return m * m * ((r / m) * wm + c / m) + m * (r % m) + c % m;
}

// Position of merge block (bh, bw) in window order (merged-token units).
inline std::int64_t window_pos(std::int64_t bh, std::int64_t bw, std::int64_t hm, std::int64_t wm, std::int64_t v) {
    const std::int64_t wh = bh / v, ww = bw / v;
    const std::int64_t rh = std::min(v, hm - v * wh), cw = std::min(v, wm - v * ww);
    return v * wh * wm + v * ww * rh + (bh % v) * cw + (bw % v);
}

inline std::int64_t idx_window(std::int64_t r, std::int64_t c, std::int64_t grid_h, std::int64_t grid_w, std::int64_t v,
                               std::int64_t m = 2) {
    return m * m * window_pos(r / m, c / m, grid_h / m, grid_w / m, v) + m * (r % m) + c % m;
}

namespace detail {
inline void check_grids(std::span<const grid_thw_t> grids, std::int64_t m, const char* what) {
    glimpse::detail::check(!grids.empty(), what, ": no images (grid_thw is empty)");
    for (std::size_t i = 0; i < grids.size(); ++i) {
        const auto [t, h, w] = grids[i];
        glimpse::detail::check(t > 0 && h > 0 && w > 0 && h % m == 0 && w % m == 0, what, ": grid_thw[", i, "] = [", t,
                               ", ", h, ", ", w,
                               "] must be positive with grid_h and grid_w multiples of the merge size ", m);
    }
}
}  // namespace detail

inline std::int64_t total_patches(std::span<const grid_thw_t> grids) {
    std::int64_t n = 0;
    for (const auto& g : grids) n += g[0] * g[1] * g[2];
    return n;
}

// The layout of one encoder call: which raster patch each token holds, the
// attention segments, and (for Qwen2.5) the window permutation.
struct qwen_layout {
    std::int64_t merge = 2;
    std::int64_t window = 0;  // V in merged tokens; 0: no windows (Qwen3)
    // Token t of the merge-block order holds raster patch merge_order.raster_of_token[t].
    heatmap::token_order merge_order;
    // Token t of the window order (= merge_order when window == 0).
    heatmap::token_order window_order;
    // window_index[g]: the merge-block-order group (of m^2 rows) at window-order group g
    // (transformers' get_vision_window_index).
    std::vector<std::int64_t> window_index;
    std::vector<std::int64_t> cu_seqlens;         // [0, ...]: one segment per image frame
    std::vector<std::int64_t> cu_window_seqlens;  // per non-empty window, in window order
    // Raster patch -> (row, col) inside its own image frame (RoPE positions).
    std::vector<nn::patch_pos> raster_pos;

    std::int64_t tokens() const { return merge_order.size(); }

    // RoPE positions in the given order (token t -> its patch's (row, col)).
    std::vector<nn::patch_pos> positions(const heatmap::token_order& order) const {
        std::vector<nn::patch_pos> p(order.raster_of_token.size());
        for (std::size_t t = 0; t < p.size(); ++t)
            p[t] = raster_pos[static_cast<std::size_t>(order.raster_of_token[t])];
        return p;
    }

    // Rows of the merge-block order in window order: x_win = x_mb[rows] (groups of m^2).
    std::vector<std::int64_t> window_rows() const {
        const std::int64_t g = merge * merge;
        std::vector<std::int64_t> rows(static_cast<std::size_t>(tokens()));
        for (std::int64_t i = 0; i < tokens(); ++i)
            rows[static_cast<std::size_t>(i)] = g * window_index[static_cast<std::size_t>(i / g)] + i % g;
        return rows;
    }
    // Inverse: x_mb = x_win[rows].
    std::vector<std::int64_t> unwindow_rows() const {
        const auto fwd = window_rows();
        std::vector<std::int64_t> inv(fwd.size());
        for (std::size_t i = 0; i < fwd.size(); ++i)
            inv[static_cast<std::size_t>(fwd[i])] = static_cast<std::int64_t>(i);
        return inv;
    }
    // Merged rows: merged_raster = merged_win[unwindow_groups()] (argsort(window_index)).
    std::vector<std::int64_t> unwindow_groups() const {
        std::vector<std::int64_t> inv(window_index.size());
        for (std::size_t g = 0; g < window_index.size(); ++g)
            inv[static_cast<std::size_t>(window_index[g])] = static_cast<std::int64_t>(g);
        return inv;
    }
};

// window_merged: V = window_size / (m p) for Qwen2.5, 0 for Qwen3.
inline qwen_layout make_qwen_layout(std::span<const grid_thw_t> grids, std::int64_t window_merged, std::int64_t m = 2) {
    detail::check_grids(grids, m, "qwen layout");
    const std::int64_t n = total_patches(grids), g = m * m, v = window_merged;
    qwen_layout L;
    L.merge = m;
    L.window = v;
    L.merge_order.raster_of_token.resize(static_cast<std::size_t>(n));
    L.window_order.raster_of_token.resize(static_cast<std::size_t>(n));
    L.window_index.resize(static_cast<std::size_t>(n / g));
    L.raster_pos.resize(static_cast<std::size_t>(n));
    L.cu_seqlens = {0};
    L.cu_window_seqlens = {0};
    std::int64_t off = 0;
    for (const auto& [t, h, w] : grids) {
        const std::int64_t hm = h / m, wm = w / m;
        for (std::int64_t f = 0; f < t; ++f, off += h * w) {
            for (std::int64_t r = 0; r < h; ++r)
                for (std::int64_t c = 0; c < w; ++c) {
                    const std::int64_t raster = off + r * w + c;
                    L.raster_pos[static_cast<std::size_t>(raster)] = {r, c};
                    const std::int64_t mb = off + idx_merge_block(r, c, w, m);
                    L.merge_order.raster_of_token[static_cast<std::size_t>(mb)] = raster;
                    const std::int64_t win = v > 0 ? off + idx_window(r, c, h, w, v, m) : mb;
                    L.window_order.raster_of_token[static_cast<std::size_t>(win)] = raster;
                    if (r % m == 0 && c % m == 0)
                        L.window_index[static_cast<std::size_t>((win - (win % g)) / g)] = mb / g;
                }
            L.cu_seqlens.push_back(off + h * w);
            if (v > 0) {
                // Windows in raster order over the window grid; the grid of
                // transformers is padded to Hm/V + 1 rows and Wm/V + 1 columns,
                // whose extra windows are empty: only non-empty ones are kept.
                for (std::int64_t wh = 0; wh * v < hm; ++wh)
                    for (std::int64_t ww = 0; ww * v < wm; ++ww) {
                        const std::int64_t rh = std::min(v, hm - v * wh), cw = std::min(v, wm - v * ww);
                        L.cu_window_seqlens.push_back(L.cu_window_seqlens.back() + g * rh * cw);
                    }
            } else {
                L.cu_window_seqlens.push_back(off + h * w);
            }
        }
    }
    return L;
}

// Heatmaps given in raster order (one value per patch of each image frame,
// concatenated; or one per patch of each image, shared by its frames) -> the
// order `order` of a layout: enc[t] = raster[order.raster_of_token[t]].
inline tensor raster_to_tokens(const cview& raster, const heatmap::token_order& order,
                               std::span<const grid_thw_t> grids) {
    const std::int64_t n = order.size();
    std::int64_t per_image = 0;
    for (const auto& g : grids) per_image += g[1] * g[2];
    glimpse::detail::check(raster.numel() == n || raster.numel() == per_image, "heatmap: ", raster.numel(),
                           " values for ", n, " patches (", per_image, " per frame-shared image)");
    // Raster-of-frames -> index into the given heatmap.
    std::vector<std::int64_t> src(static_cast<std::size_t>(n));
    std::int64_t off = 0, off_img = 0;
    for (const auto& [t, h, w] : grids) {
        for (std::int64_t f = 0; f < t; ++f)
            for (std::int64_t i = 0; i < h * w; ++i)
                src[static_cast<std::size_t>(off + f * h * w + i)] =
                    raster.numel() == n ? off + f * h * w + i : off_img + i;
        off += t * h * w;
        off_img += h * w;
    }
    std::vector<float> flat(static_cast<std::size_t>(raster.numel()));
    glimpse::detail::for_each_offset(raster, [&](std::int64_t i, std::int64_t o) {
        flat[static_cast<std::size_t>(i)] = load_f32(raster.data(), raster.type(), o);
    });
    tensor out(shape{n});
    for (std::int64_t t = 0; t < n; ++t)
        out.ptr<float>()[t] = flat[static_cast<std::size_t>(
            src[static_cast<std::size_t>(order.raster_of_token[static_cast<std::size_t>(t)])])];
    return out;
}

}  // namespace glimpse::models
