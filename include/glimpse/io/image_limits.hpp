#pragma once
// image_limits: the pixel budget a decoder checks from a file's header before it allocates or
// decodes anything (the image type itself, image_u8, is core/image_u8.hpp).
//
// The budget is PIL's decompression-bomb rule (PIL.Image._decompression_bomb_check),
// so glimpse refuses exactly the files transformers' load_image refuses: more than
// 2 x Image.MAX_IMAGE_PIXELS = 178,956,970 pixels is an error, more than
// MAX_IMAGE_PIXELS = 89,478,485 (a 3-channel image of 256 MiB) a warning. A small file
// can declare a huge image (a 472-byte JPEG declaring 200 megapixels decodes into
// 1.6 GB), so the size in the header is all that may be trusted before the check.

#include <cstdint>
#include <string>

#include "glimpse/core/error.hpp"
#include "glimpse/core/image_u8.hpp"

namespace glimpse {

// PIL.Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3.
inline constexpr std::int64_t pil_max_image_pixels = 89478485;

// What load_image accepts. The defaults are PIL's; raise max_pixels to load a larger
// image on purpose (as PIL users set Image.MAX_IMAGE_PIXELS).
struct image_limits {
    std::int64_t max_pixels = 2 * pil_max_image_pixels;  // more is an error
    std::int64_t warn_pixels = pil_max_image_pixels;     // more sets the warning
    // A progressive JPEG may hold any number of scans, and each scan is a pass over the
    // whole coefficient buffer: a small file with thousands of scans takes minutes to
    // decode. Encoders write about 10; libjpeg-turbo's own tools suggest a limit of 500.
    // (PIL has no such limit; no real file reaches it.)
    int max_jpeg_scans = 1000;
};

namespace detail {

// Warnings accumulate, one per line, into the caller's string (if any).
inline void add_warning(std::string* warning, const std::string& msg) {
    if (!warning) return;
    if (!warning->empty()) *warning += '\n';
    *warning += msg;
}

// The header check every decoder runs before allocating: `where` names the file.
// height x width (as in the header) must be positive and within the budget; above
// warn_pixels, a line is added to *warning (if given), as PIL's DecompressionBombWarning does.
inline void check_pixel_budget(const std::string& where, std::int64_t height, std::int64_t width,
                               const image_limits& limits, std::string* warning) {
    if (height <= 0 || width <= 0) fail(where, ": zero-size image (", height, "x", width, ")");
    const std::int64_t n = height * width;  // both < 2^32 in every format glimpse decodes
    if (n > limits.max_pixels)
        fail(where, ": image ", height, "x", width, " = ", n, " pixels exceeds the limit of ", limits.max_pixels,
             " pixels (a decompression-bomb guard, PIL's 2 x Image.MAX_IMAGE_PIXELS by default); to load it, "
             "raise image_limits::max_pixels");
    if (n > limits.warn_pixels)
        add_warning(warning, where + ": image " + std::to_string(height) + "x" + std::to_string(width) + " = " +
                                 std::to_string(n) + " pixels is larger than " + std::to_string(limits.warn_pixels) +
                                 " pixels (PIL warns: possible decompression bomb)");
}

}  // namespace detail
}  // namespace glimpse
