// Multi-head SDPA against PyTorch (tests/data/sdpa.safetensors): outputs and
// attention probabilities per head and head-averaged, with and without a mask.

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/nn/attention.hpp>

#include "test_util.hpp"

using namespace glimpse;
using test::kF32Op;

TEMPLATE_TEST_CASE("sdpa matches PyTorch with maps", "[nn][attention][fixture]", reference, cpu) {
    TestType be;
    const test::fixture fx("sdpa.safetensors");
    const auto S = fx.i("S"), Sk = fx.i("Sk"), H = fx.i("H");
    for (bool masked : {false, true}) {
        INFO("masked " << masked);
        const std::string sfx = masked ? "_mask" : "";
        tensor ph(shape{H, S, Sk}), mean(shape{S, Sk});
        nn::sdpa_options o;  // default scale 1/sqrt(d), which the fixture used
        if (masked) o.mask = fx["in.mask"];
        o.maps.per_head = ph.v();
        o.maps.mean = mean.v();
        auto out = nn::sdpa(be, fx["in.q"], fx["in.k"], fx["in.v"], o);
        GLIMPSE_REQUIRE_CLOSE(out.cv(), fx["out.o" + sfx], kF32Op);
        GLIMPSE_REQUIRE_CLOSE(ph.cv(), fx["out.probs" + sfx], kF32Op);
        GLIMPSE_REQUIRE_CLOSE(mean.cv(), fx["out.probs" + sfx + "_mean"], kF32Op);
    }
}
