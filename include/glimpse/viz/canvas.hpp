#pragma once
// canvas: an 8-bit RGB raster (HWC, row-major, 3 bytes per pixel) to draw a
// figure on — fills, alpha blending, rectangle outlines of a given thickness,
// blits, image resampling — and the upsampling of a patch-grid map
// [grid_h, grid_w] to a panel's pixel size.
//
// Coordinates: x right, y down, pixel (x, y) covers [x, x+1) x [y, y+1).
// Every drawing call clips to the canvas, so callers may draw partly outside.
//
// A canvas also keeps a list of what was laid out on it (`drawn()`): every
// text with the pixel box its glyphs may touch (font::draw records it) and
// every panel, colour bar and legend swatch rectangle (the figure records
// them). Clipping hides a box that runs off the canvas; the list does not, so
// a layout can be checked after the fact (viz/layout_check.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "glimpse/core/error.hpp"
#include "glimpse/core/image_u8.hpp"
#include "glimpse/viz/colormap.hpp"

namespace glimpse::viz {

// [x0, x1) x [y0, y1), pixels.
struct rect {
    std::int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    std::int64_t w() const noexcept { return x1 - x0; }
    std::int64_t h() const noexcept { return y1 - y0; }
    bool empty() const noexcept { return x1 <= x0 || y1 <= y0; }
    bool intersects(const rect& o) const noexcept {
        return std::max(x0, o.x0) < std::min(x1, o.x1) && std::max(y0, o.y0) < std::min(y1, o.y1);
    }
    bool inside(const rect& o) const noexcept { return x0 >= o.x0 && y0 >= o.y0 && x1 <= o.x1 && y1 <= o.y1; }
    friend bool operator==(const rect&, const rect&) = default;
};

enum class mark_kind { text, panel, colorbar, swatch };

// One laid-out item. `owner`: for a panel and its colour bar, the panel's index
// (row-major); for a text, the panel it is an overlay label of, -1 for none.
struct mark {
    mark_kind kind = mark_kind::text;
    std::string text;  // the string (text, swatch label); empty for panels and bars
    rect box;
    std::int64_t owner = -1;
};

class canvas {
public:
    canvas() = default;
    canvas(std::int64_t width, std::int64_t height, rgb8 fill = {255, 255, 255}) : w_(width), h_(height) {
        glimpse::detail::check(width > 0 && height > 0 && height <= max_image_pixels / width, "canvas: size ", width,
                               "x", height, " is empty or too large");
        px_.resize(static_cast<std::size_t>(width * height * 3));
        for (std::size_t i = 0; i < px_.size(); i += 3) {
            px_[i] = fill.r;
            px_[i + 1] = fill.g;
            px_[i + 2] = fill.b;
        }
    }
    static canvas from(const image_u8& img) {
        canvas c;
        c.w_ = img.width;
        c.h_ = img.height;
        c.px_ = img.rgb;
        return c;
    }

    std::int64_t width() const noexcept { return w_; }
    std::int64_t height() const noexcept { return h_; }
    const std::uint8_t* data() const noexcept { return px_.data(); }
    bool contains(std::int64_t x, std::int64_t y) const noexcept { return x >= 0 && y >= 0 && x < w_ && y < h_; }

    rgb8 at(std::int64_t x, std::int64_t y) const {
        const std::uint8_t* p = &px_[static_cast<std::size_t>((y * w_ + x) * 3)];
        return {p[0], p[1], p[2]};
    }
    void set(std::int64_t x, std::int64_t y, rgb8 c) {
        if (!contains(x, y)) return;
        std::uint8_t* p = &px_[static_cast<std::size_t>((y * w_ + x) * 3)];
        p[0] = c.r;
        p[1] = c.g;
        p[2] = c.b;
    }
    // out = (1 - alpha) * here + alpha * c, rounded.
    void blend(std::int64_t x, std::int64_t y, rgb8 c, double alpha) {
        if (!contains(x, y) || alpha <= 0) return;
        if (alpha >= 1) return set(x, y, c);
        std::uint8_t* p = &px_[static_cast<std::size_t>((y * w_ + x) * 3)];
        const auto mix = [alpha](std::uint8_t a, std::uint8_t b) {
            return static_cast<std::uint8_t>(std::lround((1 - alpha) * a + alpha * b));
        };
        p[0] = mix(p[0], c.r);
        p[1] = mix(p[1], c.g);
        p[2] = mix(p[2], c.b);
    }

    // Fills [x0, x1) x [y0, y1).
    void fill_rect(std::int64_t x0, std::int64_t y0, std::int64_t x1, std::int64_t y1, rgb8 c) {
        x0 = std::max<std::int64_t>(x0, 0), y0 = std::max<std::int64_t>(y0, 0);
        x1 = std::min(x1, w_), y1 = std::min(y1, h_);
        for (std::int64_t y = y0; y < y1; ++y)
            for (std::int64_t x = x0; x < x1; ++x) set(x, y, c);
    }
    // The outline of [x0, x1) x [y0, y1), `thickness` pixels drawn INSIDE it, so
    // a box's outermost pixels lie exactly on its edges.
    void stroke_rect(std::int64_t x0, std::int64_t y0, std::int64_t x1, std::int64_t y1, rgb8 c,
                     std::int64_t thickness) {
        const std::int64_t t = std::max<std::int64_t>(1, std::min({thickness, (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2}));
        fill_rect(x0, y0, x1, y0 + t, c);
        fill_rect(x0, y1 - t, x1, y1, c);
        fill_rect(x0, y0, x0 + t, y1, c);
        fill_rect(x1 - t, y0, x1, y1, c);
    }
    // The layout record (see the top of this file).
    void record(mark m) { drawn_.push_back(std::move(m)); }
    const std::vector<mark>& drawn() const noexcept { return drawn_; }
    rect bounds() const noexcept { return {0, 0, w_, h_}; }

    // Copies `src` with its top-left corner at (x, y).
    void blit(const canvas& src, std::int64_t x, std::int64_t y) {
        for (std::int64_t r = 0; r < src.h_; ++r)
            for (std::int64_t c = 0; c < src.w_; ++c) set(x + c, y + r, src.at(c, r));
    }

private:
    std::int64_t w_ = 0, h_ = 0;
    std::vector<std::uint8_t> px_;
    std::vector<mark> drawn_;
};

enum class interpolation { nearest, bilinear };

// A grid map [grid_h * grid_w] (raster) sampled at the centres of a w x h
// pixel raster covering the same extent: pixel (x, y) reads the map at grid
// coordinates ((x + 0.5) grid_w / w - 0.5, (y + 0.5) grid_h / h - 0.5) — the
// cell centres line up, as matplotlib's imshow with a shared extent. Bilinear
// clamps at the border (edge cells keep their value up to the image edge).
inline std::vector<float> upsample(std::span<const float> map, std::int64_t grid_h, std::int64_t grid_w, std::int64_t w,
                                   std::int64_t h, interpolation how) {
    glimpse::detail::check(grid_h > 0 && grid_w > 0 && static_cast<std::int64_t>(map.size()) == grid_h * grid_w,
                           "upsample: map has ", map.size(), " values for a ", grid_h, "x", grid_w, " grid");
    glimpse::detail::check(w > 0 && h > 0, "upsample: empty target ", w, "x", h);
    std::vector<float> out(static_cast<std::size_t>(w * h));
    const double sx = static_cast<double>(grid_w) / static_cast<double>(w);
    const double sy = static_cast<double>(grid_h) / static_cast<double>(h);
    const auto at = [&](std::int64_t r, std::int64_t c) { return map[static_cast<std::size_t>(r * grid_w + c)]; };
    for (std::int64_t y = 0; y < h; ++y) {
        const double gy = (y + 0.5) * sy - 0.5;
        for (std::int64_t x = 0; x < w; ++x) {
            const double gx = (x + 0.5) * sx - 0.5;
            float v;
            if (how == interpolation::nearest) {
                const auto r =
                    std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor((y + 0.5) * sy)), 0, grid_h - 1);
                const auto c =
                    std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor((x + 0.5) * sx)), 0, grid_w - 1);
                v = at(r, c);
            } else {
                const double cy = std::clamp(gy, 0.0, static_cast<double>(grid_h - 1));
                const double cx = std::clamp(gx, 0.0, static_cast<double>(grid_w - 1));
                const auto r0 = static_cast<std::int64_t>(std::floor(cy)),
                           c0 = static_cast<std::int64_t>(std::floor(cx));
                const std::int64_t r1 = std::min(r0 + 1, grid_h - 1), c1 = std::min(c0 + 1, grid_w - 1);
                const double fy = cy - static_cast<double>(r0), fx = cx - static_cast<double>(c0);
                v = static_cast<float>((1 - fy) * ((1 - fx) * at(r0, c0) + fx * at(r0, c1)) +
                                       fy * ((1 - fx) * at(r1, c0) + fx * at(r1, c1)));
            }
            out[static_cast<std::size_t>(y * w + x)] = v;
        }
    }
    return out;
}

// An image resampled to w x h: area averaging when shrinking (each output
// pixel averages the source pixels it covers, with fractional weights),
// bilinear when enlarging. Photographs shown in a figure are mostly shrunk, and
// area averaging is what keeps them from aliasing.
inline canvas resize_image(const canvas& src, std::int64_t w, std::int64_t h) {
    glimpse::detail::check(src.width() > 0 && src.height() > 0 && w > 0 && h > 0, "resize_image: empty image");
    canvas out(w, h);
    const double sx = static_cast<double>(src.width()) / static_cast<double>(w);
    const double sy = static_cast<double>(src.height()) / static_cast<double>(h);
    for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) {
            double acc[3] = {0, 0, 0}, wsum = 0;
            if (sx > 1 || sy > 1) {
                const double x0 = x * sx, x1 = (x + 1) * sx, y0 = y * sy, y1 = (y + 1) * sy;
                for (auto yy = static_cast<std::int64_t>(std::floor(y0));
                     yy < std::min<std::int64_t>(src.height(), static_cast<std::int64_t>(std::ceil(y1))); ++yy) {
                    const double wy = std::min(y1, yy + 1.0) - std::max(y0, static_cast<double>(yy));
                    for (auto xx = static_cast<std::int64_t>(std::floor(x0));
                         xx < std::min<std::int64_t>(src.width(), static_cast<std::int64_t>(std::ceil(x1))); ++xx) {
                        const double wx = std::min(x1, xx + 1.0) - std::max(x0, static_cast<double>(xx));
                        const double wgt = wx * wy;
                        if (wgt <= 0) continue;
                        const rgb8 c = src.at(xx, yy);
                        acc[0] += wgt * c.r, acc[1] += wgt * c.g, acc[2] += wgt * c.b;
                        wsum += wgt;
                    }
                }
            } else {
                const double gx = std::clamp((x + 0.5) * sx - 0.5, 0.0, static_cast<double>(src.width() - 1));
                const double gy = std::clamp((y + 0.5) * sy - 0.5, 0.0, static_cast<double>(src.height() - 1));
                const auto c0 = static_cast<std::int64_t>(gx), r0 = static_cast<std::int64_t>(gy);
                const std::int64_t c1 = std::min(c0 + 1, src.width() - 1), r1 = std::min(r0 + 1, src.height() - 1);
                const double fx = gx - static_cast<double>(c0), fy = gy - static_cast<double>(r0);
                const std::int64_t xs[2] = {c0, c1}, ys[2] = {r0, r1};
                const double wxs[2] = {1 - fx, fx}, wys[2] = {1 - fy, fy};
                for (int a = 0; a < 2; ++a)
                    for (int b = 0; b < 2; ++b) {
                        const rgb8 c = src.at(xs[b], ys[a]);
                        const double wgt = wys[a] * wxs[b];
                        acc[0] += wgt * c.r, acc[1] += wgt * c.g, acc[2] += wgt * c.b;
                        wsum += wgt;
                    }
            }
            const auto q = [&](double v) {
                return static_cast<std::uint8_t>(std::clamp(std::lround(v / wsum), 0L, 255L));
            };
            out.set(x, y, {q(acc[0]), q(acc[1]), q(acc[2])});
        }
    return out;
}

}  // namespace glimpse::viz
