// The integration policy (placement, combination, several heads and heatmaps)
// and heatmap preparation (boxes, pooling, normalisation, token order).

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/heatmap/integration.hpp>
#include <glimpse/heatmap/prepare.hpp>
#include <glimpse/io/safetensors.hpp>

#include "temp_dir.hpp"
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
    REQUIRE_THROWS_WITH(box_heatmap(box{10, 10, 120, 20}, 100, 100, 4, 4),
                        Catch::Contains("outside the 100x100 image"));
    REQUIRE_THROWS_WITH(box_heatmap(box{-1, 10, 20, 20}, 100, 100, 4, 4), Catch::Contains("outside"));
    REQUIRE_THROWS_WITH(box_heatmap(box{NAN, 10, 20, 20}, 100, 100, 4, 4), Catch::Contains("non-finite"));
    // Degenerate geometry is an error, never a NaN map: a patch area that underflows, an
    // infinite or NaN image size, a grid no image has.
    REQUIRE_THROWS_WITH(box_heatmap(box{0, 0, 1e-300, 1e-300}, 1e-300, 1e-300, 4, 4),
                        Catch::Contains("no representable area"));
    REQUIRE_THROWS_WITH(box_heatmap(box{0, 0, 1, 1}, INFINITY, 100, 4, 4),
                        Catch::Contains("not a positive finite size"));
    REQUIRE_THROWS_WITH(box_heatmap(box{0, 0, 1, 1}, NAN, 100, 4, 4), Catch::Contains("not a positive finite size"));
    REQUIRE_THROWS_WITH(box_heatmap(box{0, 0, 1, 1}, 100, 100, std::int64_t{1} << 40, std::int64_t{1} << 40),
                        Catch::Contains("larger than 2^24 patches"));
    for (const double s : {1e-150, 1e-3, 1.0, 1e150}) {  // tiny and huge but representable: finite maps
        INFO(s);
        const tensor t = box_heatmap(box{0, 0, s / 2, s}, s, s, 4, 4);
        for (std::int64_t i = 0; i < 16; ++i) REQUIRE(std::isfinite(t.at({i})));
        CHECK(t.at({0}) == Approx(1.0f));
        CHECK(t.at({3}) == Approx(0.0f));
    }
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

namespace {
// x + g * d, elementwise in double: the combination written out, not the backend's add.
tensor plus_scaled(const tensor& x, const tensor& d, const std::vector<float>& g) {
    tensor out(x.shape());
    const std::int64_t D = x.shape()[1];
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        const double gi = g.size() == 1 ? g[0] : g[static_cast<std::size_t>(i % D)];
        out.ptr<float>()[i] = static_cast<float>(double(x.ptr<float>()[i]) + gi * double(d.ptr<float>()[i]));
    }
    return out;
}
}  // namespace

TEST_CASE("integration: sites, several heads with several heatmaps, gates combine in order", "[heatmap][integration]") {
    // The policy is checked against the combination formulas of integration.hpp
    // applied to each head's own delta (held to PyTorch in test_block.cpp): the
    // gates are non-zero, so a gate that is ignored, applied twice, or applied
    // to the wrong head fails, and so does running the heads of one site out of
    // order (head 2 must see head 1's output, not x).
    cpu be;
    rng g(3);
    const std::int64_t S = 20, D = 32;
    const head_config cfg{D, 4, 48, false};
    heatmap_integration<cpu, rms_swiglu> policy;
    policy.add(be, binding{site::after_block(1), combine_mode::residual, 1}, cfg, g);
    policy.add(be, binding{site::before_merger(), combine_mode::gated_scalar, 0}, cfg, g);
    policy.add(be, binding{site::before_merger(), combine_mode::residual, 0}, cfg, g);
    policy.add(be, binding{site::after_block(0), combine_mode::gated_channel, 1}, cfg, g);
    policy.add(be, binding{site::after_block(2), combine_mode::replace, 0}, cfg, g);
    static_assert(integration_policy<heatmap_integration<cpu, rms_swiglu>, cpu>);
    static_assert(integration_policy<no_heatmap, cpu>);
    REQUIRE(policy.applies_at(site::after_block(1)));
    REQUIRE_FALSE(policy.applies_at(site::after_block(3)));

    // Fresh gates are 0: a gated head starts as the identity.
    REQUIRE(policy.entries()[1].gate.at({0}) == 0.0f);
    const std::vector<float> gs{0.7f};
    std::vector<float> gc(static_cast<std::size_t>(D));
    for (std::int64_t c = 0; c < D; ++c) gc[static_cast<std::size_t>(c)] = 0.05f * static_cast<float>(c - D / 2);
    policy.entries()[1].gate.set({0}, gs[0]);
    for (std::int64_t c = 0; c < D; ++c) policy.entries()[3].gate.set({c}, gc[static_cast<std::size_t>(c)]);
    std::vector<float> tgs{std::tanh(gs[0])}, tgc;
    for (float v : gc) tgc.push_back(std::tanh(v));

    tensor x = test::randn(shape{S, D}, 4);
    tensor h0 = box_heatmap(box{0, 0, 2, 2}, 5, 4, 4, 5), h1 = box_heatmap(box{3, 1, 5, 4}, 5, 4, 4, 5);
    const cview hms[] = {h0.cv(), h1.cv()};
    std::vector<head_maps<cpu>> maps;
    integration_context<cpu> ctx{hms, {}, {}, {.mean = true}, &maps};
    auto delta = [&](std::size_t i, const tensor& in, const tensor& hm) {
        return policy.entries()[i].head.delta(be, {in.cv(), hm.cv(), {}, {}});
    };

    // after_block(1): head 0, fed heatmap 1, residual.
    tensor xa = x.clone();
    policy.apply(be, site::after_block(1), xa.v(), ctx);
    GLIMPSE_REQUIRE_CLOSE(xa.cv(), plus_scaled(x, delta(0, x, h1), {1.0f}).cv(), 1e-6);
    REQUIRE(maps.size() == 1);

    // before_merger: the gated-scalar head, then the residual head on its output.
    tensor xb = x.clone();
    policy.apply(be, site::before_merger(), xb.v(), ctx);
    const tensor y1 = plus_scaled(x, delta(1, x, h0), tgs);
    const tensor y2 = plus_scaled(y1, delta(2, y1, h0), {1.0f});
    REQUIRE(test::compare(y1.cv(), x.cv()).max_abs > 1e-2);  // the gate really contributes
    GLIMPSE_REQUIRE_CLOSE(xb.cv(), y2.cv(), 1e-6);
    REQUIRE(maps.size() == 3);

    // after_block(0): gated per channel, heatmap 1.
    tensor xd = x.clone();
    policy.apply(be, site::after_block(0), xd.v(), ctx);
    GLIMPSE_REQUIRE_CLOSE(xd.cv(), plus_scaled(x, delta(3, x, h1), tgc).cv(), 1e-6);

    // after_block(2): replace, x <- delta.
    tensor xe = x.clone();
    policy.apply(be, site::after_block(2), xe.v(), ctx);
    GLIMPSE_REQUIRE_CLOSE(xe.cv(), delta(4, x, h0).cv(), 1e-6);
    REQUIRE(maps.size() == 5);

    // Heatmap index out of range is an error, not a read past the span.
    const cview one[] = {h0.cv()};
    tensor xc = x.clone();
    REQUIRE_THROWS_WITH(
        policy.apply(be, site::after_block(1), xc.v(), integration_context<cpu>{one, {}, {}, {}, nullptr}),
        Catch::Contains("reads heatmap 1 but 1 were given"));
    REQUIRE(test::compare(xc.cv(), x.cv()).max_abs == 0.0);  // and leaves x as it was
}

TEST_CASE("heads save and load through safetensors with the documented names", "[heatmap][integration][io]") {
    cpu be;
    rng g(9);
    const head_config cfg{32, 4, 40, true};
    heatmap_integration<cpu, ln_gelu_tanh> a;
    a.add(be, binding{site::before_merger(), combine_mode::gated_channel, 0}, cfg, g, dtype::bf16);
    for (std::int64_t c = 0; c < 32; ++c) a.entries()[0].gate.set({c}, 0.03f * static_cast<float>(c) - 0.4f);
    std::vector<std::pair<std::string, cview>> named;
    a.visit([&](const std::string& n, const tensor& t) { named.emplace_back(n, t.cv()); });
    REQUIRE(named.size() == 17);  // norm1 w/b (2), q/k/v/proj w/b (8), norm2 w/b (2), fc1/fc2 w/b (4), gate
    const test::temp_dir dir("head-roundtrip");
    const auto path = dir / "head.safetensors";
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
    // Same weights: equal up to the threaded attention's order of summing (not assumed
    // bit-identical: with several tiles per head the order follows the schedule).
    GLIMPSE_REQUIRE_CLOSE(yb.cv(), ya.cv(), test::kF32Op);
    // The gates travel too: the whole site's output is the same.
    const cview hm[] = {h.cv()};
    tensor xa = x.clone(), xb = x.clone();
    a.apply(be, site::before_merger(), xa.v(), integration_context<cpu>{hm, c.cv(), s.cv(), {}, nullptr});
    b.apply(be, site::before_merger(), xb.v(), integration_context<cpu>{hm, c.cv(), s.cv(), {}, nullptr});
    REQUIRE(test::compare(xa.cv(), x.cv()).max_abs > 1e-3);
    GLIMPSE_REQUIRE_CLOSE(xb.cv(), xa.cv(), test::kF32Op);
}
