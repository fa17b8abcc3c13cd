// A glimpse-train JSON-lines dataset (the input) whose lines may name the one valid
// image beside it ("img.png"): JSON, boxes, paths, duplicate keys, nesting.
#include <glimpse/train/dataset.hpp>

#include "fuzz_input.hpp"

// stb_image compiled here, with the sanitizers, instead of Debian's prebuilt libstb: its
// decoders are part of what is fuzzed (after the glimpse headers: one implementation).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = std::filesystem;
    static const bool image = [] {
        fs::copy_file(GLIMPSE_FUZZ_IMAGE, glimpse::fuzz::scratch() / "img.png", fs::copy_options::overwrite_existing);
        return true;
    }();
    (void)image;
    const auto path = glimpse::fuzz::write("d.jsonl", data, size);
    try {
        const auto ds = glimpse::train::load_dataset(path, glimpse::train::bad_line_policy::skip);
        for (const auto& b : ds.bad) (void)b.str();
    } catch (const glimpse::error&) {
    }
    return 0;
}
