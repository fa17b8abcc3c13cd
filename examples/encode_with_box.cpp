// The program to copy first: encode an image with a Qwen vision tower, guide it
// with a box through the heatmap head, and see where the head looks.
//
//   glimpse-example-box MODEL_DIR IMAGE X1 Y1 X2 Y2
//
// MODEL_DIR holds config.json and the model's safetensors (Qwen2.5-VL or
// Qwen3-VL; heatmap_head.* tensors there are the fine-tuned head, otherwise an
// untrained seeded one is used). The box is in pixels of the original image.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

#include <glimpse/glimpse.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

int main(int argc, char** argv) try {
    if (argc != 7) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IMAGE X1 Y1 X2 Y2\n", argv[0]);
        return 1;
    }
    glimpse::cpu be;

    // 1. The checkpoint: the tower of its family, and the heatmap head.
    const auto encoder = glimpse::models::qwen_encoder<glimpse::cpu>::load(be, argv[1]);
    std::printf("%s tower, head: %s\n", std::string(name(encoder.family())).c_str(), encoder.head_source().c_str());

    // 2. The image, resized and patchified exactly as transformers does.
    const glimpse::image_u8 image = glimpse::load_image(argv[2]);
    const auto pixels = encoder.preprocess(image);
    const auto [t, gh, gw] = pixels.grid_thw[0];

    // 3. A box in pixels of the original image -> heatmap -> encoder with the head.
    const glimpse::heatmap::box box{std::atof(argv[3]), std::atof(argv[4]), std::atof(argv[5]), std::atof(argv[6])};
    const auto result = encoder.encode_box(be, pixels, box, double(image.width), double(image.height));

    // 4. Features for the language model: one row per merged token.
    std::printf("merged features %s, grid %lldx%lld patches\n", result.features.merged.shape().str().c_str(),
                static_cast<long long>(gh), static_cast<long long>(gw));

    // 5. Where the in-box patches look (raster order, mean over heads).
    const auto& attn = *result.attention;
    std::printf("attention mass inside the box: %.3f (on the %lld of %lld patches it touches, each whole: %.3f)\n",
                attn.mass_in_box, static_cast<long long>(attn.in_box_count), static_cast<long long>(gh * gw),
                attn.mass_on_box_patches);
    const float* map = attn.mean.ptr<float>();
    std::vector<std::int64_t> order(static_cast<std::size_t>(gh * gw));
    std::iota(order.begin(), order.end(), 0);
    const auto top = std::min<std::size_t>(5, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(top), order.end(),
                      [&](auto a, auto b) { return map[a] > map[b]; });
    std::printf("top 5 patches by attention (row, col):\n");
    for (std::size_t i = 0; i < top; ++i) {
        const auto p = order[i];
        std::printf("  (%lld, %lld): %.4f%s\n", static_cast<long long>(p / gw), static_cast<long long>(p % gw), map[p],
                    attn.in_box[static_cast<std::size_t>(p)] ? "  in box" : "");
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "glimpse-example-box: %s\n", e.what());
    return 1;
}
