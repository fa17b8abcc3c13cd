#pragma once
// image_u8: an 8-bit RGB image in HWC order (row-major, 3 bytes per pixel), and
// `load_image`, which decodes JPEG / PNG / BMP (anything stb_image reads) into one.
//
// What transformers does to an input before resizing is part of the input: images
// with alpha are composited onto WHITE (PIL's `alpha_composite` over an opaque white
// background, integer arithmetic reproduced exactly), greyscale is expanded to RGB.
// Dropping alpha instead would change every translucent pixel.
//
// Decoding uses the compiled stb_image of Debian's libstb (linked through the glimpse
// target's usage requirements), so no translation unit has to define
// STB_IMAGE_IMPLEMENTATION. Caveat: stb's JPEG decoder is not libjpeg-turbo, which PIL
// uses; a JPEG may decode a few levels differently from what transformers sees
// (see docs: qwen_vision_reference.md §8.21). PNG and BMP are lossless and identical.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <stb/stb_image.h>

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

// More pixels than this is refused before decoding: 2^28 RGB pixels are 768 MiB,
// far beyond any image a vision encoder is fed, and most likely a hostile header.
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

namespace detail {

// PIL's ImagingAlphaComposite with an opaque white destination, specialised:
// coef1 = a*128, coef2 = (255-a)*128 (PRECISION_BITS 7), a fully transparent pixel is
// the background. Result = round(c*a/255 + 255*(255-a)/255) in PIL's fixed point.
inline std::uint8_t composite_on_white(std::uint32_t c, std::uint32_t a) noexcept {
    if (a == 0) return 255;
    const std::uint32_t tmp = c * (a << 7) + 255u * ((255u - a) << 7) + (0x80u << 7);
    return static_cast<std::uint8_t>(((((tmp >> 8) + tmp) >> 8)) >> 7);
}

struct stbi_deleter {
    void operator()(stbi_uc* p) const noexcept { stbi_image_free(p); }
};

}  // namespace detail

// Decodes an image file to RGB. Throws glimpse::error naming the file and the reason
// (missing, unreadable, not an image, truncated, zero-size, > 2^28 pixels).
inline image_u8 load_image(const std::filesystem::path& path) {
    const std::string where = "image '" + path.string() + "'";
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (st.type() == std::filesystem::file_type::not_found) detail::fail(where, ": no such file");
    if (ec) detail::fail(where, ": ", ec.message());
    if (!std::filesystem::is_regular_file(st)) detail::fail(where, ": not a regular file");

    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) detail::fail(where, ": cannot open");

    // Header first: refuse absurd sizes before stb allocates for them.
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_file(f.get(), &w, &h, &comp)) {
        const char* why = stbi_failure_reason();
        detail::fail(where, ": cannot decode (", why ? why : "unknown image format", ")");
    }
    if (w <= 0 || h <= 0) detail::fail(where, ": zero-size image (", h, "x", w, ")");
    if (static_cast<std::int64_t>(h) > max_image_pixels / w)
        detail::fail(where, ": image ", h, "x", w, " has more than 2^28 pixels");

    // Always ask for RGBA: stb then expands grey to RGB and turns a PNG's tRNS chunk
    // (palette or colour-key transparency) into alpha, as PIL's convert("RGBA") does.
    // Compositing an opaque pixel onto white is the identity, so opaque images pass
    // through unchanged.
    int w2 = 0, h2 = 0, comp2 = 0;
    std::unique_ptr<stbi_uc, detail::stbi_deleter> px(stbi_load_from_file(f.get(), &w2, &h2, &comp2, 4));
    if (!px) {
        const char* why = stbi_failure_reason();
        detail::fail(where, ": cannot decode (", why ? why : "unknown reason", ")");
    }
    detail::check(w2 == w && h2 == h, where, ": size changed between header and decode (", h, "x", w, " vs ", h2,
                  "x", w2, ")");

    image_u8 img{w, h, {}};
    const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    img.rgb.resize(n * 3);
    const stbi_uc* s = px.get();
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < 3; ++c) img.rgb[i * 3 + c] = detail::composite_on_white(s[i * 4 + c], s[i * 4 + 3]);
    return img;
}

}  // namespace glimpse
