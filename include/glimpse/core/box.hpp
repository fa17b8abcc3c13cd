#pragma once
// box: a rectangle in pixels of an image, and how much of each patch of a grid laid over the
// image it covers. The vocabulary that heatmap preparation, the figures and the attention
// statistics share, in core/ so that viz/ and analysis/ need nothing above it.
//
// Pixel coordinates [x1, x2) x [y1, y2), x to the right, y down (HICO-DET / COCO xyxy,
// continuous). A grid is grid_h x grid_w equal patches over the image, raster (row-major).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "glimpse/core/error.hpp"

namespace glimpse {

struct box {
    double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

// Rejects boxes that are not finite, inverted, empty, or not inside the image.
inline void validate_box(const box& b, double image_w, double image_h, std::string_view what = "box") {
    const bool finite = std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2);
    detail::check(finite, what, " has a non-finite coordinate");
    detail::check(b.x2 > b.x1 && b.y2 > b.y1, what, " [", b.x1, ", ", b.y1, ", ", b.x2, ", ", b.y2,
                  "] is inverted or empty (need x1 < x2 and y1 < y2)");
    detail::check(b.x1 >= 0 && b.y1 >= 0 && b.x2 <= image_w && b.y2 <= image_h, what, " [", b.x1, ", ", b.y1, ", ",
                  b.x2, ", ", b.y2, "] is outside the ", image_w, "x", image_h, " image");
}

inline box union_of(const box& a, const box& b) {
    return {std::min(a.x1, b.x1), std::min(a.y1, b.y1), std::max(a.x2, b.x2), std::max(a.y2, b.y2)};
}

// The fraction of each patch's area inside b, [grid_h * grid_w] raster, each in [0, 1]. b must
// be valid and inside the image (validate_box); a degenerate grid or image is an error (`what`
// names the caller in it), never a NaN.
inline std::vector<double> patch_coverage(const box& b, double image_w, double image_h, std::int64_t grid_h,
                                          std::int64_t grid_w, std::string_view what = "box_heatmap") {
    detail::check(grid_h > 0 && grid_w > 0, what, ": empty patch grid ", grid_h, "x", grid_w);
    // A grid no image has (the largest Qwen input is a few 10^5 patches); also keeps
    // grid_h * grid_w from overflowing.
    detail::check(grid_h <= (std::int64_t{1} << 24) / grid_w, what, ": a ", grid_h, "x", grid_w,
                  " patch grid is larger than 2^24 patches");
    detail::check(image_w > 0 && image_h > 0 && std::isfinite(image_w) && std::isfinite(image_h), what, ": image size ",
                  image_w, "x", image_h, " is not a positive finite size");
    validate_box(b, image_w, image_h);
    const double pw = image_w / static_cast<double>(grid_w), ph = image_h / static_cast<double>(grid_h);
    // A patch area that underflows (a 1e-300-pixel image) would make every coverage 0/0 = NaN.
    detail::check(std::isnormal(pw * ph), what, ": a patch of the ", image_w, "x", image_h, " image on a ", grid_h, "x",
                  grid_w, " grid has no representable area");
    std::vector<double> out(static_cast<std::size_t>(grid_h * grid_w));
    for (std::int64_t r = 0; r < grid_h; ++r) {
        const double oy = std::max(0.0, std::min(b.y2, (r + 1) * ph) - std::max(b.y1, r * ph));
        for (std::int64_t c = 0; c < grid_w; ++c) {
            const double ox = std::max(0.0, std::min(b.x2, (c + 1) * pw) - std::max(b.x1, c * pw));
            out[static_cast<std::size_t>(r * grid_w + c)] = (ox * oy) / (pw * ph);
        }
    }
    return out;
}

}  // namespace glimpse
