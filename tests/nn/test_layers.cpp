// Every nn layer against the PyTorch reference (tests/data/layers.safetensors,
// written by tools/make_fixtures.py), on both CPU backends.

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/nn/linear.hpp>
#include <glimpse/nn/mlp.hpp>
#include <glimpse/nn/norm.hpp>
#include <glimpse/nn/rotary.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::kF32Op;

TEMPLATE_TEST_CASE("nn layers match PyTorch", "[nn][fixture]", reference, cpu) {
    TestType be;
    const test::fixture fx("layers.safetensors");
    const cview x = fx["in.x"];
    const auto D = fx.i("D"), I = fx.i("I"), O = fx.i("linear_out");

    SECTION("linear with and without bias") {
        auto l = nn::linear<TestType>::load(be, fx.file, "w.linear", D, O, true);
        GLIMPSE_REQUIRE_CLOSE(l(be, x).cv(), fx["out.linear"], kF32Op);
        auto nb = nn::linear<TestType>::load(be, fx.file, "w.linear", D, O, false);
        GLIMPSE_REQUIRE_CLOSE(nb(be, x).cv(), fx["out.linear_nobias"], kF32Op);
        // F16 parameters in the file (safetensors "F16"): kept as f16, computed in f32.
        auto h = nn::linear<TestType>::load(be, fx.file, "w.linear_f16", D, O, true);
        CHECK(fx["w.linear_f16.weight"].type() == dtype::f16);
        GLIMPSE_REQUIRE_CLOSE(h(be, x).cv(), fx["out.linear_f16"], kF32Op);
        // f16 rounding is far outside that bound: the f32 weights' output is not the f16 one.
        CHECK(test::compare(l(be, x).cv(), fx["out.linear_f16"]).rel() > 1e-4);
    }
    SECTION("norms") {
        auto rms = nn::rms_norm<TestType>::load(be, fx.file, "w.rms", D, static_cast<float>(fx.f("eps")));
        GLIMPSE_REQUIRE_CLOSE(rms(be, x).cv(), fx["out.rmsnorm"], kF32Op);
        auto ln = nn::layer_norm<TestType>::load(be, fx.file, "w.ln", D, static_cast<float>(fx.f("eps")));
        GLIMPSE_REQUIRE_CLOSE(ln(be, x).cv(), fx["out.layernorm"], kF32Op);
    }
    SECTION("MLPs") {
        auto sw = nn::swiglu_mlp<TestType>::load(be, fx.file, "w.swiglu", D, I);
        GLIMPSE_REQUIRE_CLOSE(sw(be, x).cv(), fx["out.swiglu"], kF32Op);
        auto gt = nn::gelu_mlp<TestType>::load(be, fx.file, "w.gelu", D, I, activation::gelu_tanh);
        GLIMPSE_REQUIRE_CLOSE(gt(be, x).cv(), fx["out.gelu_tanh"], kF32Op);
        auto ge = nn::gelu_mlp<TestType>::load(be, fx.file, "w.gelu", D, I, activation::gelu_erf);
        GLIMPSE_REQUIRE_CLOSE(ge(be, x).cv(), fx["out.gelu_erf"], kF32Op);
    }
    SECTION("activations and softmax") {
        tensor o(x.shape());
        for (auto [act, name] : {std::pair{activation::silu, "out.silu"},
                                 {activation::gelu_tanh, "out.gelu_tanh_act"},
                                 {activation::gelu_erf, "out.gelu_erf_act"}}) {
            be.activate(act, x, o.v());
            GLIMPSE_REQUIRE_CLOSE(o.cv(), fx[name], kF32Op);
        }
        be.copy(x, o.v());
        be.softmax_rows(o.v(), static_cast<float>(fx.f("softmax_scale")));
        GLIMPSE_REQUIRE_CLOSE(o.cv(), fx["out.softmax"], kF32Op);
    }
    SECTION("2-D vision rotary: tables and rotate-half application") {
        const nn::vision_rotary rot{fx.i("rotary_head_dim"), static_cast<float>(fx.f("theta"))};
        auto [c, s] = rot.cos_sin(fx.positions());
        GLIMPSE_REQUIRE_CLOSE(c.cv(), fx["out.cos"], kF32Op);
        GLIMPSE_REQUIRE_CLOSE(s.cv(), fx["out.sin"], kF32Op);
        tensor q = be.download(fx["in.qk"]);
        be.rotary(q.v(), c.cv(), s.cv());
        GLIMPSE_REQUIRE_CLOSE(q.cv(), fx["out.rotated"], kF32Op);
    }
    SECTION("a missing or mis-shaped parameter is named") {
        REQUIRE_THROWS_WITH((nn::linear<TestType>::load(be, fx.file, "w.nope", D, O, true)),
                            Catch::Contains("missing tensor 'w.nope.weight'"));
        REQUIRE_THROWS_WITH((nn::linear<TestType>::load(be, fx.file, "w.linear", D + 1, O, true)),
                            Catch::Contains("'w.linear.weight' has shape [10, 24], expected [10, 25]"));
    }
}
