// The heatmap attention head against the PyTorch reference
// (tests/data/head_*.safetensors): outputs and attention maps, with and without
// RoPE, for every execution path that is exact for the case.

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/heatmap/attention_head.hpp>
#include <glimpse/nn/rotary.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::kF32Rel;

TEMPLATE_TEST_CASE("heatmap attention head matches PyTorch on every path", "[heatmap][head][fixture]", reference, cpu) {
    const char* file = GENERATE("head_S16_D32_H4_norope.safetensors", "head_S16_D32_H4_rope.safetensors",
                                "head_S24_D48_H4_rope.safetensors", "head_S35_D64_H8_norope.safetensors");
    INFO(file);
    TestType be;
    const test::fixture fx(file);
    const auto S = fx.i("S"), D = fx.i("D"), H = fx.i("H");
    const bool rope = fx.i("rope") != 0;
    auto head = heatmap::heatmap_attention_head<TestType>::load(be, fx.file, "w", D, H, rope);
    auto [cos, sin] = nn::vision_rotary{D / H, static_cast<float>(fx.f("theta"))}.cos_sin(fx.positions());

    std::vector<heatmap::head_path> paths{heatmap::head_path::automatic, heatmap::head_path::generic};
    if (!rope) paths.insert(paths.end(), {heatmap::head_path::dedup, heatmap::head_path::folded});
    for (auto path : paths) {
        INFO("path " << heatmap::name(path));
        heatmap::head_maps<TestType> maps;
        heatmap::maps_request req{.per_head = true, .mean = true};
        const heatmap::head_inputs in{fx["in.x"], fx["in.h"], rope ? cos.cv() : cview{}, rope ? sin.cv() : cview{}};
        auto y = head.forward(be, in, req, &maps, path);
        GLIMPSE_REQUIRE_CLOSE(y.cv(), fx["out.y"], kF32Rel);
        GLIMPSE_REQUIRE_CLOSE(maps.per_head.cv(), fx["out.probs"], kF32Rel);
        GLIMPSE_REQUIRE_CLOSE(maps.mean.cv(), fx["out.probs_mean"], kF32Rel);
        if (!rope) {  // a four-level heatmap as well
            heatmap::head_maps<TestType> m2;
            auto y2 = head.forward(be, {fx["in.x"], fx["in.h_levels"], {}, {}}, {.mean = true}, &m2, path);
            GLIMPSE_REQUIRE_CLOSE(y2.cv(), fx["out.y_levels"], kF32Rel);
            GLIMPSE_REQUIRE_CLOSE(m2.mean.cv(), fx["out.probs_mean_levels"], kF32Rel);
        }
    }
    (void)S;
}

TEST_CASE("heatmap head rejects bad heatmaps and impossible paths", "[heatmap][head][errors]") {
    cpu be;
    rng g(1);
    auto head = heatmap::heatmap_attention_head<cpu>::init(be, 16, 2, true, g);
    tensor x = test::randn(shape{6, 16}, 2);
    tensor h = test::randn(shape{6}, 3);
    h.set({4}, NAN);
    REQUIRE_THROWS_WITH(head.forward(be, {x.cv(), h.cv(), {}, {}}), Catch::Contains("token 4 is not finite"));
    tensor h5 = test::randn(shape{5}, 3);
    REQUIRE_THROWS_WITH(head.forward(be, {x.cv(), h5.cv(), {}, {}}), Catch::Contains("heatmap must be [6]"));
    tensor ok = test::randn(shape{6}, 4);
    REQUIRE_THROWS_WITH(head.forward(be, {x.cv(), ok.cv(), {}, {}}), Catch::Contains("no cos/sin"));
    REQUIRE_THROWS_WITH(head.forward(be, {x.cv(), ok.cv(), {}, {}}, {}, nullptr, heatmap::head_path::folded),
                        Catch::Contains("exact only without RoPE"));
    REQUIRE_THROWS_WITH((heatmap::heatmap_attention_head<cpu>::init(be, 18, 4, false, g)),
                        Catch::Contains("not divisible by heads"));
    REQUIRE_THROWS_WITH((heatmap::heatmap_attention_head<cpu>::init(be, 24, 4, true, g)),
                        Catch::Contains("divisible by 4"));
}
