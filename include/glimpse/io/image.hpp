#pragma once
// load_image: an image file decoded to RGB (image_u8) as transformers' load_image +
// image processor see it.
//
// JPEG goes through libjpeg-turbo with PIL's settings and EXIF orientation applied
// (io/jpeg.hpp): bit-identical to PIL.Image.open -> ImageOps.exif_transpose ->
// convert("RGB"). PNG, BMP and the other formats stb_image reads go through the compiled
// stb_image of Debian's libstb (linked through the glimpse target's usage requirements,
// so no translation unit defines STB_IMAGE_IMPLEMENTATION); they are lossless, so any
// correct decoder gives PIL's pixels. (stb's own JPEG decoder, used before, is not
// libjpeg-turbo: issue 13 measured Qwen2.5-VL's embeddings 4.6e-2 (relative) away from
// transformers' on a JPEG, against 3e-6 for the same image as PNG.)
//
// What transformers does to an input before resizing is part of the input: images
// with alpha are composited onto WHITE (PIL's `alpha_composite` over an opaque white
// background, integer arithmetic reproduced exactly), greyscale is expanded to RGB.
// Dropping alpha instead would change every translucent pixel.
//
// Every format's size is checked against image_limits (PIL's decompression-bomb rule)
// from its header, before decoding.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <stb/stb_image.h>

#include "glimpse/core/error.hpp"
#include "glimpse/io/image_limits.hpp"
#include "glimpse/io/jpeg.hpp"

namespace glimpse {

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

// A PNG's bytes with its zero-length IDAT chunks left out, every other byte kept in order.
// An empty IDAT is legal (PIL decodes it, the zlib stream is the concatenation of the
// IDATs' data, so leaving it out changes no pixel) but Debian's stb_image then calls
// memcpy(NULL, src, 0) for it (stbi__getn; undefined behaviour, UBSan: found by
// fuzz/fuzz_image, fuzz/regressions/fuzz_image/png_zero_length_idat). A chunk is
// 4 bytes length (big-endian), 4 type, data, 4 CRC; a chunk that runs past the end is
// copied as it is and left to stb to refuse.
inline std::vector<std::uint8_t> without_empty_idat(std::vector<std::uint8_t> png) {
    constexpr std::size_t sig = 8, frame = 12;
    std::size_t in = sig, out = sig;
    while (png.size() - in >= frame) {
        const std::uint8_t* c = png.data() + in;
        const std::uint64_t len = (std::uint64_t{c[0]} << 24) | (std::uint64_t{c[1]} << 16) |
                                  (std::uint64_t{c[2]} << 8) | std::uint64_t{c[3]};
        if (len > png.size() - in - frame) break;
        const std::size_t whole = frame + static_cast<std::size_t>(len);
        const bool empty_idat = len == 0 && c[4] == 'I' && c[5] == 'D' && c[6] == 'A' && c[7] == 'T';
        if (!empty_idat) {
            if (out != in) std::memmove(png.data() + out, c, whole);
            out += whole;
        }
        in += whole;
    }
    if (out != in) {
        std::memmove(png.data() + out, png.data() + in, png.size() - in);
        png.resize(out + (png.size() - in));
    }
    return png;
}

}  // namespace detail

// Decodes an image file to RGB. Throws glimpse::error naming the file and the reason
// (missing, unreadable, not an image, truncated, zero-size, over limits.max_pixels).
// Warnings (an image over limits.warn_pixels, libjpeg's corrupt-data warnings) are added
// to *warning, one per line, if given.
inline image_u8 load_image(const std::filesystem::path& path, const image_limits& limits = {},
                           std::string* warning = nullptr) {
    const std::string where = "image '" + path.string() + "'";
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (st.type() == std::filesystem::file_type::not_found) detail::fail(where, ": no such file");
    if (ec) detail::fail(where, ": ", ec.message());
    if (!std::filesystem::is_regular_file(st)) detail::fail(where, ": not a regular file");

    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) detail::fail(where, ": cannot open");

    std::uint8_t magic[8] = {};
    const std::size_t got = std::fread(magic, 1, sizeof magic, f.get());
    const auto read_all = [&] {
        const auto size = std::filesystem::file_size(path, ec);
        if (ec) detail::fail(where, ": ", ec.message());
        std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
        std::rewind(f.get());
        if (std::fread(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) detail::fail(where, ": read error");
        return bytes;
    };
    if (is_jpeg(std::span<const std::uint8_t>(magic, got))) return decode_jpeg(read_all(), where, limits, warning);

    // stb gets only the formats it is here for, recognised by their signatures as PIL's
    // plugins do. Left to guess, stb also takes fill bytes before an SOI (FF FF ... FF D8)
    // as a JPEG and runs its own JPEG decoder, whose Huffman setup reads out of bounds on a
    // corrupt table (found by fuzz/fuzz_image; fuzz/regressions/fuzz_image/).
    static constexpr std::uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    const bool png = got == 8 && std::equal(std::begin(png_sig), std::end(png_sig), magic);
    const bool bmp = got >= 2 && magic[0] == 'B' && magic[1] == 'M';
    if (!png && !bmp) detail::fail(where, ": cannot decode (not a JPEG, PNG or BMP file)");
    std::vector<std::uint8_t> bytes = read_all();
    // stb's memory reader takes an int length.
    detail::check(bytes.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()), where, ": ", bytes.size(),
                  " bytes is larger than the 2 GiB a PNG or BMP may have here");
    if (png) bytes = detail::without_empty_idat(std::move(bytes));
    const int len = static_cast<int>(bytes.size());

    // Header first: refuse absurd sizes before stb allocates for them.
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &comp)) {
        const char* why = stbi_failure_reason();
        detail::fail(where, ": cannot decode (", why ? why : "unknown image format", ")");
    }
    detail::check_pixel_budget(where, h, w, limits, warning);

    // Always ask for RGBA: stb then expands grey to RGB and turns a PNG's tRNS chunk
    // (palette or colour-key transparency) into alpha, as PIL's convert("RGBA") does.
    // Compositing an opaque pixel onto white is the identity, so opaque images pass
    // through unchanged.
    int w2 = 0, h2 = 0, comp2 = 0;
    std::unique_ptr<stbi_uc, detail::stbi_deleter> px(stbi_load_from_memory(bytes.data(), len, &w2, &h2, &comp2, 4));
    if (!px) {
        const char* why = stbi_failure_reason();
        detail::fail(where, ": cannot decode (", why ? why : "unknown reason", ")");
    }
    detail::check(w2 == w && h2 == h, where, ": size changed between header and decode (", h, "x", w, " vs ", h2, "x",
                  w2, ")");

    image_u8 img{w, h, {}};
    const std::size_t n = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
    img.rgb.resize(n * 3);
    const stbi_uc* s = px.get();
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < 3; ++c) img.rgb[i * 3 + c] = detail::composite_on_white(s[i * 4 + c], s[i * 4 + 3]);
    return img;
}

}  // namespace glimpse
