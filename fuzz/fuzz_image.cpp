// Image files through the decoder the tools use (load_image: libjpeg-turbo for JPEG,
// stb for PNG / BMP / the rest), with PIL's pixel budget.
#include <glimpse/io/image.hpp>

#include "fuzz_input.hpp"

// stb_image compiled here, with the sanitizers, instead of Debian's prebuilt libstb: its
// decoders are part of what is fuzzed (after the glimpse headers: one implementation).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = glimpse::fuzz::write("image", data, size);
    try {
        const glimpse::image_u8 im = glimpse::load_image(path);
        std::uint64_t sum = 0;
        for (const auto v : im.rgb) sum += v;
        (void)sum;
    } catch (const glimpse::error&) {
    }
    return 0;
}
