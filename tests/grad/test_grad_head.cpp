// The heatmap head block's backward (grad/head_grad.hpp) and the combinations
// (grad/combine_grad.hpp) against PyTorch autograd in float64
// (tests/data/grad_block_*.safetensors, grad_combine.safetensors), on both
// backends; the forward against heatmap_head::delta; the API's contracts
// (names, linearity in the upstream gradients, bad input).

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/grad/combine_grad.hpp>
#include <glimpse/grad/head_grad.hpp>
#include <glimpse/nn/rotary.hpp>

#include "grad/grad_test_util.hpp"

using namespace glimpse;
using test::require_grad;
using test::require_grads;

namespace {

template <class B, class Kind>
void check_block(const test::fixture& fx, const std::string& file) {
    B be;
    const std::string bn(B::name());
    const auto D = fx.i("D");
    const heatmap::head_config cfg{
        D, fx.i("H"), fx.i("I"), fx.i("rope") != 0, static_cast<float>(fx.f("theta")), static_cast<float>(fx.f("eps"))};
    auto head = heatmap::heatmap_head<B, Kind>::load(be, fx.file, "w", cfg);
    auto [cos, sin] = nn::vision_rotary{D / cfg.heads, cfg.rope_theta}.cos_sin(fx.positions());
    const heatmap::head_inputs in{fx["in.x"], fx["in.h"], cfg.rope ? cos.cv() : cview{}, cfg.rope ? sin.cv() : cview{}};

    auto f = grad::head_forward(be, head, in, fx["in.query_weights"]);
    // The forward is the generic path of heatmap_head::delta, op for op: identical bits.
    const tensor qw = fx.file.load("in.query_weights");
    heatmap::head_maps<B> maps;
    auto ref_delta = head.delta(be, in, {.query_weights = qw.cv().reshape(shape{1, qw.numel()})}, &maps,
                                heatmap::head_path::generic);
    REQUIRE(test::compare(f.delta.cv(), ref_delta.cv()).max_abs == 0);
    REQUIRE(test::compare(f.pooled.cv(), maps.pooled.cv()).max_abs == 0);
    require_grad(bn, file + " out.delta", f.delta.cv(), fx["out.delta"], test::kF32Rel);
    require_grad(bn, file + " out.pooled", f.pooled.cv(), fx["out.pooled"], test::kF32Rel);

    auto b = grad::head_backward(be, head, f.tape, fx["in.d_delta"], fx["in.d_pooled"], "w");
    require_grads(bn, fx, b.params, "grad.", "w.", file + " ");
    require_grad(bn, file + " grad.x", b.dx.cv(), fx["grad.x"]);
    require_grad(bn, file + " grad.heatmap", b.dheatmap.cv(), fx["grad.heatmap"]);
}

template <class B>
void check_block_file(const std::string& file) {
    INFO(file);
    const test::fixture fx(file);
    if (fx.s("kind") == "rms_swiglu")
        check_block<B, heatmap::rms_swiglu>(fx, file);
    else
        check_block<B, heatmap::ln_gelu_tanh>(fx, file);
}

}  // namespace

TEMPLATE_TEST_CASE("head block gradients match PyTorch autograd (both kinds, RoPE on/off, bf16 weights)",
                   "[grad][head][fixture]", reference, cpu) {
    const char* file =
        GENERATE("grad_block_rms_swiglu_rope_f32.safetensors", "grad_block_ln_gelu_tanh_rope_f32.safetensors",
                 "grad_block_rms_swiglu_norope_f32.safetensors", "grad_block_ln_gelu_tanh_norope_f32.safetensors",
                 "grad_block_rms_swiglu_rope_bf16.safetensors");
    check_block_file<TestType>(file);
}

TEMPLATE_TEST_CASE("head_backward: names, order and shapes of visit, and linear in (d_delta, d_pooled)", "[grad][head]",
                   reference, cpu) {
    TestType be;
    rng g(7);
    const heatmap::head_config cfg{32, 4, 40, true};
    auto head = heatmap::heatmap_head<TestType, heatmap::ln_gelu_tanh>::init(be, cfg, g, dtype::bf16);
    auto [cos, sin] = nn::vision_rotary{8}.cos_sin(nn::raster_positions(4, 5));
    tensor x = test::randn(shape{20, 32}, 1), h = test::randn(shape{20}, 2), w = test::randn(shape{20}, 3);
    tensor dd = test::randn(shape{20, 32}, 4), dp = test::randn(shape{1, 4, 20}, 5);
    const heatmap::head_inputs in{x.cv(), h.cv(), cos.cv(), sin.cv()};
    auto f = grad::head_forward(be, head, in, w.cv());
    auto both = grad::head_backward(be, head, f.tape, dd.cv(), dp.cv(), "heatmap_head.0");
    auto only_d = grad::head_backward(be, head, f.tape, dd.cv(), cview{}, "heatmap_head.0");
    auto only_p = grad::head_backward(be, head, f.tape, cview{}, dp.cv(), "heatmap_head.0");
    auto none = grad::head_backward(be, head, f.tape, cview{}, cview{}, "heatmap_head.0");

    std::size_t i = 0;
    head.visit("heatmap_head.0", [&](const std::string& n, const tensor& p) {
        REQUIRE(i < both.params.size());
        CHECK(both.params.names[i] == n);
        CHECK(both.params.grads[i].shape() == p.shape());
        CHECK(both.params.grads[i].type() == dtype::f32);  // bf16 weights, f32 gradients
        ++i;
    });
    REQUIRE(i == both.params.size());

    auto sum_equals = [&](const cview& a, const cview& b, const cview& c, const std::string& what) {
        const shape flat{1, a.numel()};  // 2-D: reference's add mis-handles rank-1 operands (xtensor)
        tensor s(flat);
        be.add(b.reshape(flat), c.reshape(flat), s.v(), 1.0f);
        s.reshape_inplace(a.shape());
        INFO(what);
        GLIMPSE_REQUIRE_CLOSE(s.cv(), a, test::kF32Rel);
    };
    for (std::size_t j = 0; j < both.params.size(); ++j) {
        sum_equals(both.params.grads[j].cv(), only_d.params.grads[j].cv(), only_p.params.grads[j].cv(),
                   both.params.names[j]);
        REQUIRE(test::compare(none.params.grads[j].cv(), both.params.grads[j].cv()).max_abs > 0);
        const tensor zeros(none.params.grads[j].shape());
        REQUIRE(test::compare(none.params.grads[j].cv(), zeros.cv()).max_abs == 0);  // no loss, no gradient
    }
    sum_equals(both.dx.cv(), only_d.dx.cv(), only_p.dx.cv(), "dx");
    sum_equals(both.dheatmap.cv(), only_d.dheatmap.cv(), only_p.dheatmap.cv(), "dheatmap");
}

TEMPLATE_TEST_CASE("head_forward / head_backward reject bad shapes with a message naming the tensor",
                   "[grad][head][errors]", reference, cpu) {
    TestType be;
    rng g(9);
    const heatmap::head_config cfg{16, 2, 24, false};
    auto head = heatmap::heatmap_head<TestType, heatmap::rms_swiglu>::init(be, cfg, g);
    tensor x = test::randn(shape{6, 16}, 1), h = test::randn(shape{6}, 2), w = test::randn(shape{6}, 3);
    const heatmap::head_inputs in{x.cv(), h.cv(), {}, {}};
    auto err = [](auto&& fn) -> std::string {
        try {
            fn();
        } catch (const error& e) {
            return e.what();
        }
        return "no error";
    };
    using Catch::Matchers::Contains;
    tensor w_bad = test::randn(shape{2, 6}, 4), x_bad = test::randn(shape{6, 15}, 5);
    CHECK_THAT(err([&] { grad::head_forward(be, head, in, w_bad.cv()); }),
               Contains("query_weights must be [6] or [1, 6], got [2, 6]"));
    CHECK_THAT(err([&] {
                   grad::head_forward(be, head, {x_bad.cv(), h.cv(), {}, {}}, w.cv());
               }),
               Contains("features x must be [S, 16], got [6, 15]"));

    auto f = grad::head_forward(be, head, in, w.cv());
    auto f_nw = grad::head_forward(be, head, in, cview{});
    const tensor tape_x = f.tape.x.clone();
    tensor dd_bad = test::randn(shape{6, 8}, 6), dp_bad = test::randn(shape{1, 3, 6}, 7);
    tensor dd = test::randn(shape{6, 16}, 8), dp = test::randn(shape{1, 2, 6}, 9);
    tensor dd_bf16 = dd.to(dtype::bf16);
    CHECK_THAT(err([&] { grad::head_backward(be, head, f.tape, dd_bad.cv(), dp.cv()); }),
               Contains("d_delta must be f32 [6, 16] (the shape of delta) with unit inner stride, got f32 [6, 8]"));
    CHECK_THAT(err([&] { grad::head_backward(be, head, f.tape, dd_bf16.cv(), dp.cv()); }),
               Contains("d_delta must be f32 [6, 16] (the shape of delta) with unit inner stride, got bf16 [6, 16]"));
    CHECK_THAT(
        err([&] { grad::head_backward(be, head, f.tape, dd.cv(), dp_bad.cv()); }),
        Contains("d_pooled must be f32 [1, 2, 6] (the shape of pooled) with unit inner stride, got f32 [1, 3, 6]"));
    CHECK_THAT(err([&] { grad::head_backward(be, head, f_nw.tape, dd.cv(), dp.cv()); }),
               Contains("d_pooled [1, 2, 6] given but head_forward was called without query_weights"));
    CHECK_THAT(
        err([&] { grad::head_backward(be, head, grad::head_tape<TestType, heatmap::rms_swiglu>{}, dd.cv(), {}); }),
        Contains("the tape is empty"));
    // Query weights as a strided [S] view (a column of a matrix) are fine.
    tensor wm = test::randn(shape{6, 3}, 11);
    const tensor wcol = be.download(wm.cv().select(1, 1));
    REQUIRE(test::compare(grad::head_forward(be, head, in, wm.cv().select(1, 1)).pooled.cv(),
                          grad::head_forward(be, head, in, wcol.cv()).pooled.cv())
                .max_abs == 0);
    // Nothing changed: the tape and the head are as before, and a good call still works.
    REQUIRE(test::compare(f.tape.x.cv(), tape_x.cv()).max_abs == 0);
    auto ok = grad::head_backward(be, head, f.tape, dd.cv(), dp.cv());
    REQUIRE(ok.params.size() > 0);

    // combine_backward
    tensor gate_bad = test::randn(shape{3}, 10);
    CHECK_THAT(err([&] {
                   grad::combine_backward(be, heatmap::combine_mode::gated_channel, x.cv(), dd.cv(), gate_bad.cv(),
                                          dd.cv());
               }),
               Contains("gated_channel needs gate [16], got [3]"));
    CHECK_THAT(err([&] {
                   grad::combine_backward(be, heatmap::combine_mode::residual, x.cv(), dd.cv(), cview{}, dd_bad.cv());
               }),
               Contains("dz must be [6, 16] (the shape of z), got [6, 8]"));
}

TEMPLATE_TEST_CASE("combination gradients match PyTorch autograd", "[grad][combine][fixture]", reference, cpu) {
    TestType be;
    const std::string bn(TestType::name());
    const test::fixture fx("grad_combine.safetensors");
    using C = heatmap::combine_mode;
    for (auto mode : {C::residual, C::gated_scalar, C::gated_channel, C::replace}) {
        const std::string m(heatmap::name(mode));
        INFO(m);
        const cview gate = mode == C::gated_scalar    ? fx["in.gate_scalar"]
                           : mode == C::gated_channel ? fx["in.gate_channel"]
                                                      : cview{};
        auto z = grad::combine(be, mode, fx["in.x"], fx["in.delta"], gate);
        GLIMPSE_REQUIRE_CLOSE(z.cv(), fx["out." + m + ".z"], test::kF32Op);
        auto r = grad::combine_backward(be, mode, fx["in.x"], fx["in.delta"], gate, fx["in.dz"]);
        if (mode == C::replace)
            REQUIRE(test::compare(r.dx.cv(), fx["grad.replace.x"]).max_abs == 0);  // all zeros
        else
            require_grad(bn, "combine grad." + m + ".x", r.dx.cv(), fx["grad." + m + ".x"]);
        require_grad(bn, "combine grad." + m + ".delta", r.d_delta.cv(), fx["grad." + m + ".delta"]);
        if (!gate.empty()) require_grad(bn, "combine grad." + m + ".gate", r.d_gate.cv(), fx["grad." + m + ".gate"]);
    }
}
