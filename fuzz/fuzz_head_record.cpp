// A head directory's glimpse_head.json (the input) beside a valid heatmap_head.safetensors,
// loaded with the bundled tiny Qwen3-VL model as glimpse-compare --finetuned_model does: the
// record's family, widths, heads and RoPE flag are checked against the model.
#include <glimpse/backend/cpu.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

#include "fuzz_input.hpp"

#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = std::filesystem;
    static const fs::path dir = [] {
        const auto d = glimpse::fuzz::scratch() / "head";
        fs::create_directories(d);
        fs::copy_file(fs::path(GLIMPSE_FUZZ_HEAD_DIR) / "heatmap_head.safetensors", d / "heatmap_head.safetensors",
                      fs::copy_options::overwrite_existing);
        return d;
    }();
    (void)glimpse::fuzz::write("head/glimpse_head.json", data, size);
    glimpse::cpu be;
    glimpse::models::qwen_head_options opt;
    opt.head_dir = dir;
    opt.require_trained = true;
    try {
        const auto enc = glimpse::models::qwen_encoder<glimpse::cpu>::load(be, GLIMPSE_FUZZ_MODEL_DIR, opt);
        (void)enc.head_config().heads;
    } catch (const glimpse::error&) {
    }
    return 0;
}
