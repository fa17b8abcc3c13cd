// The integration policy (placement, combination, several heads and heatmaps)
// and heatmap preparation (boxes, pooling, normalisation, token order).

#include <catch2/catch.hpp>

#include <filesystem>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/heatmap/integration.hpp>
#include <glimpse/heatmap/prepare.hpp>
#include <glimpse/io/safetensors.hpp>

#include "test_util.hpp"

using namespace glimpse;
using namespace glimpse::heatmap;

TEST_CASE("box heatmaps cover exactly the patches under the box", "[heatmap][prepare]") {
    // 6 x 10 patch grid over a 140 x 84 image (14-pixel patches), non-square.
    const box b{28, 14, 70, 56};  // columns 2..4, rows 1..3, exactly on patch edges
    tensor h = box_heatmap(b, 140, 84, 6, 10);
    for (std::int64_t r = 0; r < 6; ++r)
        for (std::int64_t c = 0; c < 10; ++c) {
            INFO("patch " << r << "," << c);
            REQUIRE(h.at({r * 10 + c}) == ((r >= 1 && r < 4 && c >= 2 && c < 5) ? 1.0f : 0.0f));
        }
    // A box cutting patches: fractional coverage; binary mode thresholds at one half.
    tensor f = box_heatmap(box{7, 0, 21, 14}, 140, 84, 6, 10);
    REQUIRE(f.at({0}) == Approx(0.5));
    REQUIRE(f.at({1}) == Approx(0.5));
    tensor bin = box_heatmap(box{7, 0, 22, 14}, 140, 84, 6, 10, box_mode::binary);
    REQUIRE(bin.at({0}) == 0.0f);
    REQUIRE(bin.at({1}) == 1.0f);
    // Edges: a box touching the image border covers the last row/column.
    tensor e = box_heatmap(box{126, 70, 140, 84}, 140, 84, 6, 10);
    REQUIRE(e.at({59}) == 1.0f);
    REQUIRE(e.at({58}) == 0.0f);
}

TEST_CASE("bad boxes and maps are rejected with a clear message", "[heatmap][prepare][errors]") {
    REQUIRE_THROWS_WITH(box_heatmap(box{10, 10, 5, 20}, 100, 100, 4, 4), Catch::Contains("inverted or empty"));
    REQUIRE_THROWS_WITH(box_heatmap(box{10, 10, 10, 20}, 100, 100, 4, 4), Catch::Contains("inverted or empty"));
    REQUIRE_THROWS_WITH(box_heatmap(box{10, 10, 120, 20}, 100, 100, 4, 4), Catch::Contains("outside the 100x100 image"));
    REQUIRE_THROWS_WITH(box_heatmap(box{-1, 10, 20, 20}, 100, 100, 4, 4), Catch::Contains("outside"));
    REQUIRE_THROWS_WITH(box_heatmap(box{NAN, 10, 20, 20}, 100, 100, 4, 4), Catch::Contains("non-finite"));
    tensor m(shape{3});
    m.set({1}, NAN);
    REQUIRE_THROWS_WITH(normalize(m.cv(), normalization::none), Catch::Contains("patch 1 is not finite"));
}

TEST_CASE("pooling a full-resolution map equals the box coverage it represents", "[heatmap][prepare]") {
    const std::int64_t H = 84, W = 140;  // one value per pixel
    tensor map(shape{H, W});
    const box b{9.0, 5.0, 61.0, 40.0};
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) map.set({y, x}, (x >= 9 && x < 61 && y >= 5 && y < 40) ? 1.0f : 0.0f);
    tensor pooled = pool_to_patches(map.cv(), 6, 10);
    tensor cov = box_heatmap(b, W, H, 6, 10);
    GLIMPSE_REQUIRE_CLOSE(pooled.cv(), cov.cv(), 1e-6);
    // Sizes that do not divide: total mass is preserved (area weights sum to one per patch).
    tensor ones(shape{31, 17});
    for (std::int64_t i = 0; i < ones.numel(); ++i) ones.ptr<float>()[i] = 1.0f;
    tensor p = pool_to_patches(ones.cv(), 4, 6);
    for (std::int64_t i = 0; i < 24; ++i) REQUIRE(p.at({i}) == Approx(1.0f));
}

TEST_CASE("normalisation modes", "[heatmap][prepare]") {
    tensor h = tensor::from(shape{4}, std::vector<float>{1, 3, 2, 2});
    CHECK(normalize(h.cv(), normalization::max_one).at({1}) == 1.0f);
    CHECK(normalize(h.cv(), normalization::min_max).at({0}) == 0.0f);
    CHECK(normalize(h.cv(), normalization::sum_one).at({1}) == Approx(3.0 / 8));
    tensor z(shape{4});
    CHECK(normalize(z.cv(), normalization::min_max).at({2}) == 0.0f);
    REQUIRE_THROWS_WITH(normalize(z.cv(), normalization::sum_one), Catch::Contains("sum is 0"));
}

TEST_CASE("token order is a validated permutation", "[heatmap][prepare]") {
    token_order t{{2, 0, 3, 1}};
    REQUIRE(t.inverse() == std::vector<std::int64_t>{1, 3, 0, 2});
    token_order bad{{0, 0, 1, 2}};
    REQUIRE_THROWS_WITH(bad.inverse(), Catch::Contains("not a permutation"));
}

TEST_CASE("integration: sites, several heads with several heatmaps, gates start as identity", "[heatmap][integration]") {
    cpu be;
    rng g(3);
    const std::int64_t S = 20, D = 32;
    const head_config cfg{D, 4, 48, false};
    heatmap_integration<cpu, rms_swiglu> policy;
    policy.add(be, binding{site::after_block(1), combine_mode::residual, 1}, cfg, g);
    policy.add(be, binding{site::before_merger(), combine_mode::gated_scalar, 0}, cfg, g);
    policy.add(be, binding{site::before_merger(), combine_mode::residual, 0}, cfg, g);
    static_assert(integration_policy<heatmap_integration<cpu, rms_swiglu>, cpu>);
    static_assert(integration_policy<no_heatmap, cpu>);
    REQUIRE(policy.applies_at(site::after_block(1)));
    REQUIRE_FALSE(policy.applies_at(site::after_block(0)));

    tensor x = test::randn(shape{S, D}, 4);
    tensor h0 = box_heatmap(box{0, 0, 2, 2}, 5, 4, 4, 5), h1 = box_heatmap(box{3, 1, 5, 4}, 5, 4, 4, 5);
    const cview hms[] = {h0.cv(), h1.cv()};
    std::vector<head_maps<cpu>> maps;
    integration_context<cpu> ctx{hms, {}, {}, {.mean = true}, &maps};

    // after_block(1): head 0, fed heatmap 1, residual
    tensor xa = x.clone();
    policy.apply(be, site::after_block(1), xa.v(), ctx);
    auto d0 = policy.entries()[0].head.delta(be, {x.cv(), h1.cv(), {}, {}});
    tensor want(shape{S, D});
    be.add(x.cv(), d0.cv(), want.v(), 1.0f);
    GLIMPSE_REQUIRE_CLOSE(xa.cv(), want.cv(), 1e-6);
    REQUIRE(maps.size() == 1);

    // before_merger: the gated head (gate 0: identity), then the residual head.
    tensor xb = x.clone();
    policy.apply(be, site::before_merger(), xb.v(), ctx);
    auto d2 = policy.entries()[2].head.forward(be, {x.cv(), h0.cv(), {}, {}});
    GLIMPSE_REQUIRE_CLOSE(xb.cv(), d2.cv(), 1e-6);
    REQUIRE(maps.size() == 3);

    // Heatmap index out of range is an error, not a read past the span.
    const cview one[] = {h0.cv()};
    tensor xc = x.clone();
    REQUIRE_THROWS_WITH(policy.apply(be, site::after_block(1), xc.v(), integration_context<cpu>{one, {}, {}, {}, nullptr}),
                        Catch::Contains("reads heatmap 1 but 1 were given"));
}

TEST_CASE("heads save and load through safetensors with the documented names", "[heatmap][integration][io]") {
    cpu be;
    rng g(9);
    const head_config cfg{32, 4, 40, true};
    heatmap_integration<cpu, ln_gelu_tanh> a;
    a.add(be, binding{site::before_merger(), combine_mode::gated_channel, 0}, cfg, g, dtype::bf16);
    std::vector<std::pair<std::string, cview>> named;
    a.visit([&](const std::string& n, const tensor& t) { named.emplace_back(n, t.cv()); });
    REQUIRE(named.size() == 17);  // norm1 w/b (2), q/k/v/proj w/b (8), norm2 w/b (2), fc1/fc2 w/b (4), gate
    const auto path = std::filesystem::temp_directory_path() / "glimpse_head_roundtrip.safetensors";
    save_safetensors(path, named);
    safetensors_file f(path);
    REQUIRE(f.contains("heatmap_head.attn.q_proj.weight"));
    REQUIRE(f.contains("heatmap_head.mlp.linear_fc1.bias"));
    REQUIRE(f.contains("heatmap_head.gate"));
    heatmap_integration<cpu, ln_gelu_tanh> b;
    b.add_loaded(be, f, binding{site::before_merger(), combine_mode::gated_channel, 0}, cfg, 0, 1);
    REQUIRE(b.entries()[0].head.attn.k_proj.weight.type() == dtype::bf16);
    auto [c, s] = nn::vision_rotary{8}.cos_sin(nn::raster_positions(3, 4));
    tensor x = test::randn(shape{12, 32}, 10), h = test::randn(shape{12}, 11);
    auto ya = a.entries()[0].head.forward(be, {x.cv(), h.cv(), c.cv(), s.cv()});
    auto yb = b.entries()[0].head.forward(be, {x.cv(), h.cv(), c.cv(), s.cv()});
    REQUIRE(test::compare(ya.cv(), yb.cv()).max_abs == 0.0);
    std::filesystem::remove(path);
}
