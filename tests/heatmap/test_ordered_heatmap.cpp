// ordered_heatmap (heatmap/prepare.hpp) and the order-aware calls of site_features
// (models/qwen_heatmap.hpp): a heatmap that knows its token order is converted to the
// features' order wherever it is consumed, so the raster / site mix-up cannot happen silently.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/heatmap/prepare.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/models/qwen_token_order.hpp>

#include "test_util.hpp"

using namespace glimpse;

namespace {

tensor iota(std::int64_t n) {
    tensor t(shape{n});
    for (std::int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = static_cast<float>(i + 1);
    return t;
}

}  // namespace

TEST_CASE("ordered_heatmap: raster <-> a token order, exactly, and back", "[heatmap][order]") {
    // The Qwen3 merge-block order of a 4x6 grid (m = 2): token t holds raster patch raster_of_token[t].
    const models::grid_thw_t g{1, 4, 6};
    const auto order = models::make_qwen_layout(std::span(&g, 1), 0, 2).merge_order;
    REQUIRE_FALSE(order.is_identity());
    const tensor r = iota(24);
    const auto h = heatmap::ordered_heatmap::raster(r.cv().reshape(shape{4, 6}));
    CHECK(h.order.is_identity());
    const auto site = h.in_order(order);
    CHECK(site.order == order);
    for (std::int64_t t = 0; t < 24; ++t)  // heat of raster patch raster_of_token[t], i.e. raster value + 1
        CHECK(site.values.ptr<float>()[t] ==
              static_cast<float>(order.raster_of_token[static_cast<std::size_t>(t)] + 1));
    // Token 2 of the merge-block order is raster patch (1, 0) = 6: the orders really differ.
    CHECK(site.values.ptr<float>()[2] == 7.0f);
    const tensor back = site.to_raster();
    CHECK(test::compare(back.cv(), r.cv()).max_abs == 0);
    // Same order: a copy; the window order of Qwen2.5 (V = 2 merged tokens) from the merge-block one.
    CHECK(test::compare(site.in_order(order).values.cv(), site.values.cv()).max_abs == 0);
    const models::grid_thw_t g8{1, 8, 8};
    const auto L = models::make_qwen_layout(std::span(&g8, 1), 2, 2);
    const tensor r64 = iota(64);
    const auto via_mb = heatmap::ordered_heatmap::raster(r64.cv()).in_order(L.merge_order).in_order(L.window_order);
    const tensor direct = models::raster_to_tokens(r64.cv(), L.window_order, std::span(&g8, 1));
    CHECK(test::compare(via_mb.values.cv(), direct.cv()).max_abs == 0);
}

TEST_CASE("ordered_heatmap: what cannot be converted is an error", "[heatmap][order]") {
    const tensor r = iota(16);
    const auto h = heatmap::ordered_heatmap::raster(r.cv());
    CHECK_THROWS_WITH(h.in_order(heatmap::token_order::identity(24)),
                      Catch::Contains("16 values") && Catch::Contains("24 tokens"));
    heatmap::token_order dup = heatmap::token_order::identity(16);
    dup.raster_of_token[3] = 5;
    CHECK_THROWS_WITH(h.in_order(dup), Catch::Contains("not a permutation"));
    tensor bad = iota(4);
    bad.ptr<float>()[2] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(heatmap::ordered_heatmap::raster(bad.cv()), Catch::Contains("not finite"));
    CHECK_THROWS_WITH(heatmap::box_heatmap({0, 0, 4, 4}, 8, 8, 2, 2, heatmap::token_order::identity(5)),
                      Catch::Contains("token order of 5 tokens for a 2x2"));
}

TEST_CASE("site_features: heatmaps made in the site's order, raster ones converted, not trusted",
          "[heatmap][order][models]") {
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, test::data_path("qwen3_vl_tiny"));
    const image_u8 img = load_image(test::data_path("images/wide_67x203.png"));
    const auto f = enc.encode_site(be, enc.preprocess(img));
    REQUIRE_FALSE(f.order.is_identity());  // merge-block order: what makes the mix-up possible
    const heatmap::box b{50, 10, 120, 50};
    const double W = double(img.width), H = double(img.height);

    const auto site = f.box_heatmap(b, W, H);
    CHECK(site.order == f.order);
    const tensor raster = heatmap::box_heatmap(b, W, H, f.grid[1], f.grid[2]);
    CHECK(test::compare(site.to_raster().cv(), raster.cv()).max_abs == 0);

    // inputs(): a raster heatmap and the site's one give the same heat, in the site's order.
    const auto from_site = f.inputs(be, site);
    const auto from_raster = f.inputs(be, heatmap::ordered_heatmap::raster(raster.cv()));
    CHECK(test::compare(from_raster.heat.cv(), from_site.heat.cv()).max_abs == 0);
    CHECK(test::compare(from_raster.heat.cv(), site.values.cv()).max_abs == 0);
    CHECK(from_site.in.x.data() == f.x.cv().data());
    // Query weights: 1/count on the tokens the box touches, summing to 1.
    double sum = 0;
    for (std::int64_t t = 0; t < f.tokens(); ++t) sum += from_site.query_weights.ptr<float>()[t];
    CHECK(sum == Approx(1.0).margin(1e-6));

    // The head by hand through inputs()/attention() is enc.attend (the same maps, same mass).
    const auto& integ = std::get<heatmap::heatmap_integration<cpu, heatmap::ln_gelu_tanh>>(enc.head());
    heatmap::head_maps<cpu> maps;
    (void)integ.entries()[0].head.forward(be, from_raster, from_raster.pooled_request(), &maps);
    const auto by_hand = f.attention(be, maps, site);
    const auto a = enc.attend(be, f, raster.cv());  // the raster overload: the encoder converts
    const auto a2 = enc.attend(be, f, site);        // the ordered overload
    const auto cache = enc.prepare_head(be, f);
    const auto a3 = enc.attend(be, f, cache, site);
    CHECK(by_hand.mass_in_box == Approx(a.mass_in_box).margin(1e-6));
    CHECK(a2.mass_in_box == Approx(a.mass_in_box).margin(1e-6));
    CHECK(a3.mass_in_box == Approx(a.mass_in_box).margin(1e-5));  // cached K/V: f32 rounding only
    CHECK(test::compare(by_hand.mean.cv(), a.mean.cv()).max_abs < 1e-6);

    // Misuse that can be caught is: another image's heatmap, maps from no pooled request.
    const auto other = heatmap::ordered_heatmap::raster(iota(f.tokens() + 4).cv());
    CHECK_THROWS_WITH(f.inputs(be, other), Catch::Contains("cannot be put in an order"));
    CHECK_THROWS_WITH(f.attention(be, heatmap::head_maps<cpu>{}, site), Catch::Contains("no pooled map"));
    const auto zero = heatmap::ordered_heatmap::raster(tensor(shape{f.tokens()}).cv());
    CHECK_THROWS_WITH(f.inputs(be, zero), Catch::Contains("no query patch"));
}
