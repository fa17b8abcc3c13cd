#pragma once
// image_u8: an 8-bit RGB image in HWC order (row-major, 3 bytes per pixel), the vocabulary the
// decoders (io/), the figures (viz/) and the tools share; in core/ so that viz/ needs nothing
// above it. Decoding, and the pixel budget a decoder checks first, are io/image_limits.hpp and
// io/image.hpp.

#include <cstdint>
#include <span>
#include <vector>

#include "glimpse/core/error.hpp"

namespace glimpse {

struct image_u8 {
    std::int64_t width = 0;
    std::int64_t height = 0;
    std::vector<std::uint8_t> rgb;  // HWC: rgb[(y * width + x) * 3 + c]

    std::uint8_t at(std::int64_t y, std::int64_t x, int c) const {
        return rgb[static_cast<std::size_t>((y * width + x) * 3 + c)];
    }
};

// In-memory images (from_rgb, resizes, canvases) larger than this are refused: 2^28 RGB
// pixels are 768 MiB, beyond any image a vision encoder is fed. Decoders use image_limits.
inline constexpr std::int64_t max_image_pixels = std::int64_t{1} << 28;

// An image from packed HWC RGB bytes (tests, callers with their own decoder).
inline image_u8 from_rgb(std::int64_t height, std::int64_t width, std::span<const std::uint8_t> hwc) {
    detail::check(height > 0 && width > 0, "from_rgb: image size ", height, "x", width, " must be positive");
    detail::check(height <= max_image_pixels / width, "from_rgb: image ", height, "x", width,
                  " has more than 2^28 pixels");
    detail::check(static_cast<std::int64_t>(hwc.size()) == height * width * 3, "from_rgb: ", hwc.size(),
                  " bytes for a ", height, "x", width, " RGB image (expected ", height * width * 3, ")");
    return image_u8{width, height, std::vector<std::uint8_t>(hwc.begin(), hwc.end())};
}

}  // namespace glimpse
