// README.md's library snippet, run literally: its relative paths ("Qwen3-VL-8B-Instruct",
// "photo.jpg") are links in a scratch directory to the bundled tiny Qwen3-VL, the head
// glimpse-train fine-tuned on it and the astronaut photograph. Its attention mass must be the
// one the tower computes with the head inside it (encode_box: the raster heatmap is put in the
// tower's order by the tower itself), which the old snippet's raster heatmap on the site's
// merge-block-ordered features misses (the last check measures by how much).

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

#include "docs/readme_prelude.hpp"
#include "temp_dir.hpp"
#include "test_util.hpp"

void glimpse_readme_snippet_0();

namespace {

namespace fs = std::filesystem;
using namespace glimpse;

// The snippet's box: README's {20, 15, 512, 512} (the union of the demo's person and helmet boxes).
const heatmap::box kBox{20, 15, 512, 512};

struct in_dir {
    fs::path old;
    explicit in_dir(const fs::path& p) : old(fs::current_path()) { fs::current_path(p); }
    ~in_dir() { fs::current_path(old); }
};

void link(const fs::path& target, const fs::path& name) { fs::create_symlink(fs::absolute(target), name); }

}  // namespace

TEST_CASE("README: every ```cpp block is compiled into glimpse_tests", "[docs]") {
    // cmake/GlimpseReadmeSnippets.cmake found them; 0 would mean the extraction broke.
    CHECK(GLIMPSE_README_SNIPPETS >= 1);
}

TEST_CASE("README's library snippet, run as written, gives the tower's attention mass", "[docs][models]") {
    const test::temp_dir dir("readme");
    const fs::path tiny = test::data_path("qwen3_vl_tiny");
    const fs::path examples = GLIMPSE_EXAMPLES_DATA_DIR;
    const fs::path model = dir / "Qwen3-VL-8B-Instruct";
    fs::create_directories(model);
    link(tiny / "config.json", model / "config.json");
    link(tiny / "model.safetensors", model / "model.safetensors");
    link(examples / "qwen3_vl_tiny_finetuned" / "heatmap_head.safetensors", model / "heatmap_head.safetensors");
    link(examples / "images" / "astronaut.jpg", dir / "photo.jpg");

    auto& r = glimpse_readme::readme_results();
    r = {};
    {
        const in_dir here(dir.path);
        glimpse_readme_snippet_0();
    }
    REQUIRE(r.ran);
    INFO("snippet: encoder mass " << r.encoder_mass << ", head by hand " << r.head_mass << ", head " << r.head_source);
    CHECK(r.head_source.find("'heatmap_head.*' in ") != std::string::npos);  // the trained head, not a seeded one

    // The independent path: the whole tower with the head at its site, fed the RASTER box
    // heatmap and permuting it itself (raster_to_tokens inside the tower).
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, model);
    const image_u8 img = load_image(dir / "photo.jpg");
    const auto px = enc.preprocess(img);
    const auto full = enc.encode_box(be, px, kBox, double(img.width), double(img.height));
    const double want = full.attention->mass_in_box;
    // Same weights, same features; the site capture and the tower's own head differ only by
    // f32 summation order: measured |diff| < 1e-7 here, bound 1e-5.
    CHECK(r.encoder_mass == Approx(want).margin(1e-5));
    CHECK(r.head_mass == Approx(want).margin(1e-5));
    CHECK(r.in_box == full.attention->in_box_count);

    // The old snippet: box_heatmap's raster map straight into head_inputs with the site's
    // features, queries on the raster in-box patches. It runs, and is wrong. (On the helmet box:
    // the snippet's own box covers nearly the whole image, where any order gives about the
    // same mass.)
    const heatmap::box ctl{276, 342, 512, 512};
    const double want_ctl = enc.encode_box(be, px, ctl, double(img.width), double(img.height)).attention->mass_in_box;
    const auto f = enc.encode_site(be, px);
    const tensor raster = heatmap::box_heatmap(ctl, double(img.width), double(img.height), f.grid[1], f.grid[2]);
    const std::int64_t S = f.tokens();
    std::vector<std::uint8_t> in_box(static_cast<std::size_t>(S));
    std::int64_t count = 0;
    for (std::int64_t i = 0; i < S; ++i) count += (in_box[static_cast<std::size_t>(i)] = raster.ptr<float>()[i] != 0);
    tensor qw(shape{1, S});
    for (std::int64_t i = 0; i < S; ++i)
        qw.ptr<float>()[i] = in_box[static_cast<std::size_t>(i)] ? 1.0f / static_cast<float>(count) : 0.0f;
    const glimpse::safetensors_file ckpt(model / "heatmap_head.safetensors");
    const auto head =
        heatmap::heatmap_head<cpu, heatmap::ln_gelu_tanh>::load(be, ckpt, "heatmap_head", enc.head_config());
    heatmap::head_maps<cpu> maps;
    heatmap::maps_request req;
    req.query_weights = qw.cv();
    (void)head.forward(be, heatmap::head_inputs{f.x.cv(), raster.cv(), f.cos.cv(), f.sin.cv()}, req, &maps);
    const auto wrong = models::maps_to_raster(maps.pooled.cv(), f.order, f.grid[1], f.grid[2], in_box,
                                              std::span<const float>(raster.ptr<float>(), static_cast<std::size_t>(S)));
    INFO("raster heatmap on site-ordered features: mass " << wrong.mass_in_box << " (right: " << want_ctl << ")");
    CHECK(std::abs(wrong.mass_in_box - want_ctl) > 0.02);
}
