// The bundled fine-tuned head (examples/data/qwen3_vl_tiny_finetuned, written
// by glimpse-train: docs/training.md) against the untrained seed-0 head it
// started from, on the comparison demo's image and boxes: it must put clearly
// more of the in-box queries' attention inside the box.

#include <catch2/catch.hpp>

#include <string>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/train/head_checkpoint.hpp>

#include "test_util.hpp"

using namespace glimpse;

TEST_CASE("bundled fine-tuned head: more attention mass inside the demo's boxes than the untrained head", "[train]") {
    cpu be;
    const std::string ex = GLIMPSE_EXAMPLES_DATA_DIR;
    const auto model = test::data_path("qwen3_vl_tiny");
    const auto base = models::qwen_encoder<cpu>::load(be, model, {.seed = 0, .load_trained = false});
    const auto tuned = models::qwen_encoder<cpu>::load(be, model, {.head_dir = ex + "/qwen3_vl_tiny_finetuned"});
    REQUIRE(!base.head_trained());
    REQUIRE(tuned.head_trained());

    const auto img = load_image(ex + "/images/astronaut.jpg");
    const auto px = base.preprocess(img);
    const auto f = base.encode_site(be, px);  // the tower is the same in both
    struct demo_box {
        const char* what;
        heatmap::box b;
        double min_gain;
    };
    // person [20, 15, 362, 512] and helmet [276, 342, 512, 512] (the demo's), and their union (97%
    // of the image: even uniform attention puts 0.969 inside it, so little is left to gain).
    for (const demo_box d : {demo_box{"person", {20, 15, 362, 512}, 0.1}, demo_box{"helmet", {276, 342, 512, 512}, 0.3},
                             demo_box{"union", {20, 15, 512, 512}, 0.01}}) {
        const tensor h = models::box_to_heatmap(d.b, 512, 512, f.grid);
        const auto a0 = base.attend(be, f, h.cv());
        const auto a1 = tuned.attend(be, f, h.cv());
        INFO(d.what << ": untrained " << a0.mass_in_box << ", fine-tuned " << a1.mass_in_box << ", uniform "
                    << static_cast<double>(a0.in_box_count) / static_cast<double>(f.grid[1] * f.grid[2]));
        CHECK(a1.mass_in_box > a0.mass_in_box + d.min_gain);
    }

    // The record says what the head is.
    const auto rec = train::load_record(ex + "/qwen3_vl_tiny_finetuned");
    CHECK(rec.at("format") == "glimpse_head");
    CHECK(rec.at("encoder").at("family") == "qwen3_vl");
    CHECK(rec.at("progress").at("complete") == true);
    CHECK(rec.at("metrics").size() == rec.at("hyperparameters").at("epochs").get<std::size_t>() + 1);
}
