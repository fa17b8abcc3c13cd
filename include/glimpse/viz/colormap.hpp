#pragma once
// matplotlib's `hot` colormap, exactly: the segment data of matplotlib/_cm.py
// (_hot_data), sampled into matplotlib's 256-entry lookup table the way
// LinearSegmentedColormap does (entry i = the piecewise-linear value at i/255),
// and looked up as Colormap.__call__ does (index = floor(x * 256), clipped to
// [0, 255]; bytes = floor(v * 255)). Black -> red -> yellow -> white.
//
//   red   (0, 0.0416) (0.365079, 1) (1, 1)
//   green (0, 0) (0.365079, 0) (0.746032, 1) (1, 1)
//   blue  (0, 0) (0.746032, 0) (1, 1)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>

namespace glimpse::viz {

struct rgb8 {
    std::uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(const rgb8&, const rgb8&) = default;
};

struct rgbf {
    double r = 0, g = 0, b = 0;
};

namespace detail {

struct anchor {
    double x, y;
};

// Piecewise-linear through anchors sorted by x (x[0] = 0, x[last] = 1).
inline double segment_value(std::span<const anchor> a, double x) {
    if (x <= a.front().x) return a.front().y;
    for (std::size_t i = 1; i < a.size(); ++i)
        if (x <= a[i].x) return a[i - 1].y + (x - a[i - 1].x) / (a[i].x - a[i - 1].x) * (a[i].y - a[i - 1].y);
    return a.back().y;
}

inline constexpr anchor hot_red[] = {{0.0, 0.0416}, {0.365079, 1.0}, {1.0, 1.0}};
inline constexpr anchor hot_green[] = {{0.0, 0.0}, {0.365079, 0.0}, {0.746032, 1.0}, {1.0, 1.0}};
inline constexpr anchor hot_blue[] = {{0.0, 0.0}, {0.746032, 0.0}, {1.0, 1.0}};

}  // namespace detail

// The continuous colormap at x in [0, 1] (clamped): the segment data itself.
inline rgbf hot_continuous(double x) {
    x = std::clamp(std::isfinite(x) ? x : 0.0, 0.0, 1.0);
    return {detail::segment_value(detail::hot_red, x), detail::segment_value(detail::hot_green, x),
            detail::segment_value(detail::hot_blue, x)};
}

// matplotlib's 256-entry table (colormaps['hot']._lut[:256]).
inline const std::array<rgbf, 256>& hot_lut() {
    static const std::array<rgbf, 256> lut = [] {
        std::array<rgbf, 256> t{};
        for (int i = 0; i < 256; ++i) t[static_cast<std::size_t>(i)] = hot_continuous(i / 255.0);
        return t;
    }();
    return lut;
}

// colormaps['hot'](x): NaN -> the "bad" colour (transparent black; here black).
inline rgbf hot(double x) {
    if (!std::isfinite(x)) return {0, 0, 0};
    const double xa = x * 256.0;
    const int i = xa < 0 ? 0 : (xa >= 255.0 ? 255 : static_cast<int>(xa));
    return hot_lut()[static_cast<std::size_t>(i)];
}

// colormaps['hot'](x, bytes=True)[:3].
inline rgb8 hot_u8(double x) {
    const rgbf c = hot(x);
    const auto q = [](double v) { return static_cast<std::uint8_t>(std::clamp(v, 0.0, 1.0) * 255.0); };
    return {q(c.r), q(c.g), q(c.b)};
}

}  // namespace glimpse::viz
