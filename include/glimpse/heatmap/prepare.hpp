#pragma once
// Heatmap preparation: from what a user has (a box, a full-resolution saliency
// map, a raster patch grid) to one scalar per patch, in raster order over the
// pre-merge patch grid (grid_h x grid_w, row-major), and from raster order to
// the encoder's token order (token_order, filled in by each encoder family).
//
// A head must be fed its heatmap in the order of its features' rows, and an
// encoder's rows are generally NOT raster (Qwen: merge-block or window order,
// models/qwen_token_order.hpp): a raster heatmap on such features runs without
// error and gives wrong maps. ordered_heatmap carries its order so that what
// consumes it converts instead of trusting (models::site_features::inputs).
//
// All host-side: heatmaps are S floats, not worth a backend.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "glimpse/core/box.hpp"
#include "glimpse/core/tensor.hpp"

namespace glimpse::heatmap {

// The box vocabulary lives in core/box.hpp (viz/ and analysis/ share it); spelt here too.
using glimpse::box;
using glimpse::union_of;
using glimpse::validate_box;

enum class box_mode {
    coverage,  // fraction of each patch's area inside the box (area pooling of the box mask)
    binary     // 1 where the patch overlaps the box by more than half, else 0
};

// Heatmap [grid_h * grid_w] in RASTER order of a box given in pixels of an
// image_w x image_h image; the patch grid covers the whole image (each patch spans
// image_w / grid_w x image_h / grid_h pixels — the resize to the grid is a
// uniform scaling, so this is exact for the resized image too). For an encoder's
// features use the overload with a token_order below (or site_features::box_heatmap).
inline tensor box_heatmap(const box& b, double image_w, double image_h, std::int64_t grid_h, std::int64_t grid_w,
                          box_mode mode = box_mode::coverage) {
    const std::vector<double> cov = patch_coverage(b, image_w, image_h, grid_h, grid_w, "box_heatmap");
    tensor out(shape{grid_h * grid_w});
    float* o = out.ptr<float>();
    for (std::size_t p = 0; p < cov.size(); ++p)
        o[p] = mode == box_mode::coverage ? static_cast<float>(cov[p]) : (cov[p] > 0.5 ? 1.0f : 0.0f);
    return out;
}

// Area-average a full-resolution map [Hm, Wm] (any size) onto grid_h x grid_w
// patches: each patch averages the map over the rectangle it covers, with
// fractional weights for map pixels cut by a patch boundary.
inline tensor pool_to_patches(const cview& map, std::int64_t grid_h, std::int64_t grid_w) {
    detail::check(map.rank() == 2 && map.size(0) > 0 && map.size(1) > 0,
                  "pool_to_patches: map must be a non-empty [H, W], got ", map.shape());
    detail::check(grid_h > 0 && grid_w > 0, "pool_to_patches: empty patch grid");
    const std::int64_t H = map.size(0), W = map.size(1);
    // Per-axis overlap weights: weight[g][p] = length of map pixel p inside grid cell g.
    auto weights = [](std::int64_t n, std::int64_t g) {
        std::vector<std::vector<std::pair<std::int64_t, double>>> w(static_cast<std::size_t>(g));
        const double cell = static_cast<double>(n) / static_cast<double>(g);
        for (std::int64_t i = 0; i < g; ++i) {
            const double lo = i * cell, hi = (i + 1) * cell;
            for (auto p = static_cast<std::int64_t>(std::floor(lo));
                 p < std::min<std::int64_t>(n, static_cast<std::int64_t>(std::ceil(hi))); ++p) {
                const double len = std::min(hi, p + 1.0) - std::max(lo, static_cast<double>(p));
                if (len > 0) w[static_cast<std::size_t>(i)].push_back({p, len / cell});
            }
        }
        return w;
    };
    const auto wy = weights(H, grid_h), wx = weights(W, grid_w);
    tensor out(shape{grid_h * grid_w});
    for (std::int64_t r = 0; r < grid_h; ++r)
        for (std::int64_t c = 0; c < grid_w; ++c) {
            double acc = 0;
            for (auto [y, a] : wy[static_cast<std::size_t>(r)])
                for (auto [x, b] : wx[static_cast<std::size_t>(c)]) {
                    const float v = map.at({y, x});
                    detail::check(std::isfinite(v), "pool_to_patches: map value at (", y, ", ", x, ") is not finite");
                    acc += a * b * v;
                }
            out.ptr<float>()[r * grid_w + c] = static_cast<float>(acc);
        }
    return out;
}

enum class normalization {
    none,
    max_one,  // divide by the maximum (peak = 1)
    min_max,  // (h - min) / (max - min); a constant map becomes all zeros
    sum_one   // divide by the sum (a distribution over patches)
};

// Validates (every value finite) and normalises a raster heatmap.
inline tensor normalize(const cview& h, normalization n) {
    tensor out(shape{h.numel()});
    float* o = out.ptr<float>();
    std::int64_t i = 0;
    detail::for_each_offset(h, [&](std::int64_t, std::int64_t off) {
        const float v = load_f32(h.data(), h.type(), off);
        detail::check(std::isfinite(v), "heatmap value at patch ", i, " is not finite (", v, ")");
        o[i++] = v;
    });
    if (n == normalization::none || out.numel() == 0) return out;
    const auto [mn, mx] = std::minmax_element(o, o + out.numel());
    double sum = 0;
    for (std::int64_t k = 0; k < out.numel(); ++k) sum += o[k];
    const float lo = *mn, hi = *mx;
    for (std::int64_t k = 0; k < out.numel(); ++k) {
        switch (n) {
            case normalization::max_one:
                detail::check(hi > 0, "heatmap: max_one normalisation of a map whose maximum is ", hi);
                o[k] /= hi;
                break;
            case normalization::min_max:
                o[k] = hi > lo ? (o[k] - lo) / (hi - lo) : 0.0f;
                break;
            case normalization::sum_one:
                detail::check(sum > 0, "heatmap: sum_one normalisation of a map whose sum is ", sum);
                o[k] = static_cast<float>(o[k] / sum);
                break;
            case normalization::none:
                break;
        }
    }
    return out;
}

// The permutation between raster order (r * grid_w + c) and an encoder's token
// order. Token t of the encoder holds raster patch raster_of_token[t]. Encoders
// provide their own (Qwen merge-block and window orders); identity by default.
struct token_order {
    std::vector<std::int64_t> raster_of_token;

    static token_order identity(std::int64_t n) {
        token_order t;
        t.raster_of_token.resize(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i) t.raster_of_token[static_cast<std::size_t>(i)] = i;
        return t;
    }
    std::int64_t size() const { return static_cast<std::int64_t>(raster_of_token.size()); }
    bool is_identity() const {
        for (std::size_t t = 0; t < raster_of_token.size(); ++t)
            if (raster_of_token[t] != static_cast<std::int64_t>(t)) return false;
        return true;
    }
    friend bool operator==(const token_order&, const token_order&) = default;

    // token_of_raster: the inverse permutation (validated to be one).
    std::vector<std::int64_t> inverse() const {
        std::vector<std::int64_t> inv(raster_of_token.size(), -1);
        for (std::size_t t = 0; t < raster_of_token.size(); ++t) {
            const auto r = raster_of_token[t];
            detail::check(0 <= r && r < size() && inv[static_cast<std::size_t>(r)] < 0,
                          "token_order: not a permutation at token ", t);
            inv[static_cast<std::size_t>(r)] = static_cast<std::int64_t>(t);
        }
        return inv;
    }
};

// A heatmap together with its token order: values[t] is the heat of raster patch
// order.raster_of_token[t] (identity order: a raster heatmap). S floats and S
// indices, carried by value.
struct ordered_heatmap {
    tensor values;      // [S] f32
    token_order order;  // of `values`

    std::int64_t size() const { return order.size(); }

    // A raster heatmap (S values in any shape, e.g. [grid_h, grid_w]), validated
    // (finite) and copied as f32; its order is the identity.
    static ordered_heatmap raster(const cview& h) {
        ordered_heatmap o;
        o.values = normalize(h, normalization::none);
        o.order = token_order::identity(o.values.numel());
        return o;
    }

    // The raster heatmap [S]: out[order.raster_of_token[t]] = values[t].
    tensor to_raster() const {
        check_shape("ordered_heatmap::to_raster");
        (void)order.inverse();  // a permutation, or an error
        tensor out(shape{size()});
        for (std::int64_t t = 0; t < size(); ++t)
            out.ptr<float>()[order.raster_of_token[static_cast<std::size_t>(t)]] = values.ptr<float>()[t];
        return out;
    }

    // The same heat in `target` order (out.values[t] = heat of raster patch
    // target.raster_of_token[t]); a copy when the orders already agree.
    ordered_heatmap in_order(const token_order& target) const {
        check_shape("ordered_heatmap::in_order");
        detail::check(target.size() == size(), "ordered_heatmap: ", size(), " values cannot be put in an order of ",
                      target.size(), " tokens (another image's features?)");
        ordered_heatmap out;
        out.order = target;
        if (target == order) {
            out.values = values.clone();
            return out;
        }
        (void)target.inverse();
        const tensor r = to_raster();
        out.values = tensor(shape{size()});
        for (std::int64_t t = 0; t < size(); ++t)
            out.values.ptr<float>()[t] = r.ptr<float>()[target.raster_of_token[static_cast<std::size_t>(t)]];
        return out;
    }

private:
    void check_shape(const char* who) const {
        detail::check(values.type() == dtype::f32 && values.numel() == size(), who, ": ", values.numel(),
                      " values for an order of ", size(), " tokens");
    }
};

// box_heatmap in `order` (an encoder's token order over the same grid_h x grid_w grid).
inline ordered_heatmap box_heatmap(const box& b, double image_w, double image_h, std::int64_t grid_h,
                                   std::int64_t grid_w, const token_order& order, box_mode mode = box_mode::coverage) {
    detail::check(order.size() == grid_h * grid_w, "box_heatmap: a token order of ", order.size(), " tokens for a ",
                  grid_h, "x", grid_w, " patch grid");
    return ordered_heatmap::raster(box_heatmap(b, image_w, image_h, grid_h, grid_w, mode)).in_order(order);
}

}  // namespace glimpse::heatmap
