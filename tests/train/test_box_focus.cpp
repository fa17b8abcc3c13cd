// The box-focus objective (train/box_focus.hpp) against PyTorch autograd in
// float64 (tests/data/train_box_focus.safetensors, tools/make_train_fixtures.py):
// a minibatch of two images of different grids, three boxes each, both block
// kinds with RoPE — the loss, the masses and every parameter gradient.

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/train/box_focus.hpp>

#include "test_util.hpp"

using namespace glimpse;

namespace {

heatmap::box box_of(const cview& v) { return {v.at({0}), v.at({1}), v.at({2}), v.at({3})}; }

std::pair<std::int64_t, std::int64_t> pair_of(const std::string& s) {
    const auto c = s.find(',');
    return {std::stoll(s.substr(0, c)), std::stoll(s.substr(c + 1))};
}

// Gradient tolerance: f32 forward and backward through softmax, norms and
// GEMMs of width <= 48 against the f64 truth; measured up to 5.3e-7 of each
// gradient's scale (48 checks, cpu and reference, Zen 5, 2026-12-02), held to 5e-6.
constexpr double kGradRel = 5e-6;
constexpr double kLossAbs = 2e-6;

template <class B, class Kind>
void check_kind(const std::string& kind) {
    INFO(B::name() << " " << kind);
    B be;
    const test::fixture fx("train_box_focus.safetensors");
    const std::string p = kind + ".";
    const auto D = fx.i(p + "D"), H = fx.i(p + "H");
    const heatmap::head_config cfg{D, H, fx.i(p + "I"), true, 10000.0f, 1e-6f};
    const auto head = heatmap::heatmap_head<B, Kind>::load(be, fx.file, "w." + kind, cfg);
    const double fw = fx.f("feature_weight");
    const auto n_ex = fx.i("examples");

    auto accum = train::zero_grads(be, head);
    double loss = 0;
    for (std::int64_t e = 0; e < n_ex; ++e) {
        const std::string ex = "ex" + std::to_string(e);
        const auto [gh, gw] = pair_of(fx.s(ex + ".grid"));
        const auto [iw, ih] = pair_of(fx.s(ex + ".image_wh"));
        const auto targets = train::make_focus_targets(
            train::all_box_kinds, box_of(fx["in." + ex + ".person_box"]), box_of(fx["in." + ex + ".object_box"]),
            static_cast<double>(iw), static_cast<double>(ih), gh, gw, heatmap::token_order::identity(gh * gw));
        const auto x = be.upload(fx["in." + p + ex + ".x"]);
        const auto cos = be.upload(fx["in." + p + ex + ".cos"]);
        const auto sin = be.upload(fx["in." + p + ex + ".sin"]);
        const double xx = train::sum_of_squares(be, x.cv());
        const cview mass = fx["out." + p + ex + ".mass"];
        double ex_loss = 0;
        for (std::size_t b = 0; b < targets.size(); ++b) {
            const double scale = 1.0 / (static_cast<double>(n_ex) * static_cast<double>(targets.size()));
            const auto v = train::focus_loss_and_grad(be, head, x.cv(), cos.cv(), sin.cv(), xx, targets[b], fw, scale,
                                                      std::span(accum));
            CHECK(std::abs(v.mass - mass.at({static_cast<std::int64_t>(b)})) < kLossAbs);
            // The evaluation path (fastest exact head path) gives the same mass.
            const auto ev = train::focus_evaluate(be, head, x.cv(), cos.cv(), sin.cv(), xx, targets[b], fw);
            CHECK(std::abs(ev.mass - v.mass) < 1e-5);
            CHECK(std::abs(ev.loss - v.loss) < 1e-5);
            ex_loss += v.loss / static_cast<double>(targets.size());
        }
        CHECK(std::abs(ex_loss - fx["out." + p + "example_loss"].at({e})) < kLossAbs);
        loss += ex_loss / static_cast<double>(n_ex);
    }
    INFO("loss " << loss << " vs " << fx["out." + p + "loss"].at({0}));
    REQUIRE(std::abs(loss - fx["out." + p + "loss"].at({0})) < kLossAbs);

    std::size_t i = 0;
    head.visit("", [&](const std::string& n, const typename B::tensor&) {
        const auto e = test::compare(accum[i++].cv(), fx["grad." + p + n]);
        INFO(n << ": max abs " << e.max_abs << ", max |ref| " << e.max_ref << ", rel " << e.rel());
        CHECK(e.max_ref > 0);
        test::record_bound(__FILE__, __LINE__, "box-focus gradient", e.rel(), kGradRel);
        CHECK(e.rel() <= kGradRel);
    });
}

}  // namespace

TEST_CASE("box focus: loss, masses and parameter gradients match PyTorch autograd (f64)", "[train]") {
    check_kind<cpu, heatmap::ln_gelu_tanh>("ln_gelu_tanh");
    check_kind<cpu, heatmap::rms_swiglu>("rms_swiglu");
    check_kind<reference, heatmap::ln_gelu_tanh>("ln_gelu_tanh");
}

TEST_CASE("box focus: targets follow the token order and reject boxes that touch no patch", "[train]") {
    // 2x3 grid of 10 px patches; box over raster patches 1 and 4 (column 1) at full coverage
    // and half of patch 2's width.
    heatmap::token_order order;
    order.raster_of_token = {5, 4, 3, 2, 1, 0};  // reversed
    const auto t = train::make_focus_target(train::box_kind::object, {10, 0, 25, 20}, 30, 20, 2, 3, order);
    REQUIRE(t.count == 4);
    const std::vector<float> heat{0.5f, 1.0f, 0.0f, 0.5f, 1.0f, 0.0f};  // token order
    for (std::int64_t i = 0; i < 6; ++i) {
        CHECK(t.heatmap.at({i}) == heat[static_cast<std::size_t>(i)]);
        CHECK(t.query_weights.at({0, i}) == (heat[static_cast<std::size_t>(i)] > 0 ? 0.25f : 0.0f));
    }
    REQUIRE_THROWS_AS(train::make_focus_target(train::box_kind::object, {0, 0, 40, 20}, 30, 20, 2, 3, order),
                      glimpse::error);
}
