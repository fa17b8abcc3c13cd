// The exact fast paths (dedup, folded) against the generic path on random,
// binary and many-level heatmaps, maps included; and the path choice.

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/heatmap/attention_head.hpp>

#include "test_util.hpp"

using namespace glimpse;
using heatmap::head_path;

namespace {
tensor make_heatmap(const std::string& kind, std::int64_t s, std::uint64_t seed) {
    rng g(seed);
    tensor h(shape{s});
    for (std::int64_t i = 0; i < s; ++i) {
        float v = 0;
        if (kind == "binary")
            v = (i % 13 < 5) ? 1.0f : 0.0f;
        else if (kind == "levels")
            v = static_cast<float>(static_cast<int>(g.uniform() * 7)) / 6.0f;
        else
            v = static_cast<float>(g.uniform());  // random: every value distinct
        h.ptr<float>()[i] = v;
    }
    return h;
}
}  // namespace

TEST_CASE("fast paths agree with the generic path, maps included", "[heatmap][fast_path]") {
    const std::string kind = GENERATE("binary", "levels", "random");
    INFO("heatmap " << kind);
    cpu be;
    rng g(5);
    const std::int64_t S = 150, D = 64, H = 4;
    auto head = heatmap::heatmap_attention_head<cpu>::init(be, D, H, false, g);
    // Sharpen the softmax (as the fixtures do) so agreement is not trivially easy.
    for (auto* t : {&head.q_proj.weight, &head.q_proj.bias})
        for (std::int64_t i = 0; i < t->numel(); ++i) t->ptr<float>()[i] *= 8.0f;
    tensor x = test::randn(shape{S, D}, 6), h = make_heatmap(kind, S, 7);
    tensor qw(shape{2, S});  // "queries in the box" and "all queries, weighted"
    for (std::int64_t i = 0; i < S; ++i) {
        qw.set({0, i}, h.at({i}) > 0.5f ? 1.0f : 0.0f);
        qw.set({1, i}, 1.0f / static_cast<float>(S));
    }
    const heatmap::maps_request req{.per_head = true, .mean = true, .query_weights = qw.cv()};
    heatmap::head_maps<cpu> mg;
    auto yg = head.forward(be, {x.cv(), h.cv(), {}, {}}, req, &mg, head_path::generic);
    for (auto p : {head_path::dedup, head_path::folded}) {
        INFO("path " << heatmap::name(p));
        heatmap::head_maps<cpu> m;
        auto y = head.forward(be, {x.cv(), h.cv(), {}, {}}, req, &m, p);
        // Different (exact) algebra, same function: f32 reassociation only.
        GLIMPSE_REQUIRE_CLOSE(y.cv(), yg.cv(), test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(m.per_head.cv(), mg.per_head.cv(), test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(m.mean.cv(), mg.mean.cv(), test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(m.pooled.cv(), mg.pooled.cv(), test::kF32Deep);
    }
}

TEST_CASE("the automatic path is the cheapest exact one", "[heatmap][fast_path]") {
    using heatmap::cheapest_path;
    CHECK(cheapest_path(4096, 1280, 16, 2, false) == head_path::folded);      // a box: U = 2
    CHECK(cheapest_path(4096, 1280, 16, 200, false) == head_path::dedup);     // U*H > D: folding no longer pays
    CHECK(cheapest_path(4096, 1280, 16, 4096, false) == head_path::generic);  // every value distinct
    CHECK(cheapest_path(4096, 1280, 16, 2, true) == head_path::generic);      // RoPE: no shortcut
    const double g = heatmap::path_flops(head_path::generic, 4096, 1280, 16, 2);
    const double f = heatmap::path_flops(head_path::folded, 4096, 1280, 16, 2);
    CHECK(g / f > 100);
}
