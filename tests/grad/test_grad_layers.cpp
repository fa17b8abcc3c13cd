// Layer backward passes against PyTorch autograd in float64
// (tests/data/grad_layers.safetensors, grad_sdpa.safetensors; tools/make_grad_fixtures.py),
// on both backends. Tolerance: kGradRel (grad_test_util.hpp).

#include <catch2/catch.hpp>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/grad/attention_grad.hpp>
#include <glimpse/grad/linear_grad.hpp>
#include <glimpse/grad/mlp_grad.hpp>
#include <glimpse/grad/norm_grad.hpp>
#include <glimpse/grad/rotary_grad.hpp>
#include <glimpse/nn/rotary.hpp>

#include "grad/grad_test_util.hpp"

using namespace glimpse;
using test::require_grad;
using test::require_grads;

TEMPLATE_TEST_CASE("linear, norm and MLP gradients match PyTorch autograd", "[grad][layers][fixture]", reference, cpu) {
    TestType be;
    const std::string bn(TestType::name());
    const test::fixture fx("grad_layers.safetensors");
    const auto D = fx.i("D"), I = fx.i("I"), O = fx.i("linear_out");
    const float eps = static_cast<float>(fx.f("eps"));
    const cview x = fx["in.x"], dy = fx["in.dy"];

    for (const char* tag : {"linear", "linear_bf16"}) {
        INFO(tag);
        auto l = nn::linear<TestType>::load(be, fx.file, std::string("w.") + tag, D, O, true);
        auto r = grad::linear_backward(be, l, x, fx["in.dy_linear"]);
        for (const auto& g : r.params.grads) REQUIRE(g.type() == dtype::f32);  // f32 even for bf16 weights
        require_grads(bn, fx, r.params, std::string("grad.") + tag + ".");
        require_grad(bn, std::string("grad.") + tag + ".x", r.dx.cv(), fx[std::string("grad.") + tag + ".x"]);
    }
    {
        auto n = nn::rms_norm<TestType>::load(be, fx.file, "w.rms", D, eps);
        auto r = grad::norm_backward(be, n, x, dy);
        require_grads(bn, fx, r.params, "grad.rms.");
        require_grad(bn, "grad.rms.x", r.dx.cv(), fx["grad.rms.x"]);
    }
    {
        auto n = nn::layer_norm<TestType>::load(be, fx.file, "w.ln", D, eps);
        auto r = grad::norm_backward(be, n, x, dy);
        require_grads(bn, fx, r.params, "grad.ln.");
        require_grad(bn, "grad.ln.x", r.dx.cv(), fx["grad.ln.x"]);
    }
    {
        auto m = nn::swiglu_mlp<TestType>::load(be, fx.file, "w.swiglu", D, I);
        grad::mlp_tape<TestType> tape;
        auto y = grad::mlp_forward(be, m, x, tape);
        REQUIRE(test::compare(y.cv(), m(be, x).cv()).max_abs == 0);  // the nn layer's numbers, bit for bit
        auto r = grad::mlp_backward(be, m, x, tape, dy);
        require_grads(bn, fx, r.params, "grad.swiglu.");
        require_grad(bn, "grad.swiglu.x", r.dx.cv(), fx["grad.swiglu.x"]);
    }
    for (auto [act, tag] : {std::pair{activation::gelu_tanh, "gelu_tanh"}, {activation::gelu_erf, "gelu_erf"}}) {
        INFO(tag);
        auto m = nn::gelu_mlp<TestType>::load(be, fx.file, "w.gelu", D, I, act);
        grad::mlp_tape<TestType> tape;
        auto y = grad::mlp_forward(be, m, x, tape);
        REQUIRE(test::compare(y.cv(), m(be, x).cv()).max_abs == 0);
        auto r = grad::mlp_backward(be, m, x, tape, dy);
        require_grads(bn, fx, r.params, std::string("grad.") + tag + ".");
        require_grad(bn, std::string("grad.") + tag + ".x", r.dx.cv(), fx[std::string("grad.") + tag + ".x"]);
    }
}

TEMPLATE_TEST_CASE("activation, softmax and rotary gradients match PyTorch autograd", "[grad][layers][fixture]",
                   reference, cpu) {
    TestType be;
    const std::string bn(TestType::name());
    const test::fixture fx("grad_layers.safetensors");
    const cview xa = fx["in.x_act"], dy = fx["in.dy"];
    for (auto [act, tag] : {std::pair{activation::silu, "silu"},
                            {activation::gelu_tanh, "gelu_tanh"},
                            {activation::gelu_erf, "gelu_erf"}}) {
        tensor dx(xa.shape());
        be.activate_backward(act, xa, dy, dx.v());
        require_grad(bn, std::string("grad.act_") + tag + ".x", dx.cv(), fx[std::string("grad.act_") + tag + ".x"]);
    }
    {
        const float scale = static_cast<float>(fx.f("softmax_scale"));
        tensor p = be.download(xa);
        be.softmax_rows(p.v(), scale);
        tensor dx(xa.shape());
        be.softmax_rows_backward(p.cv(), dy, scale, dx.v());
        require_grad(bn, "grad.softmax.x", dx.cv(), fx["grad.softmax.x"]);
    }
    {
        auto [cos, sin] = nn::vision_rotary{fx.i("rotary_head_dim"), 10000.0f}.cos_sin(fx.positions());
        auto sin_t = grad::rotary_transpose_sin(be, sin.cv());
        tensor d = be.download(fx["in.dqk"]);
        grad::rotary_backward(be, d.v(), cos.cv(), sin_t.cv());
        require_grad(bn, "grad.rotary.x", d.cv(), fx["grad.rotary.x"]);
    }
}

TEMPLATE_TEST_CASE("multi-head attention gradients (output and pooled map, with and without mask) match autograd",
                   "[grad][layers][attention][fixture]", reference, cpu) {
    TestType be;
    const std::string bn(TestType::name());
    const test::fixture fx("grad_sdpa.safetensors");
    const cview q = fx["in.q"], k = fx["in.k"], v = fx["in.v"];
    for (const char* tag : {"", "_mask"}) {
        INFO("variant '" << tag << "'");
        tensor dq(q.shape()), dk(k.shape()), dv(v.shape());
        grad::sdpa_grad_options o;
        o.scale = static_cast<float>(fx.f("scale"));
        if (std::string(tag) == "_mask") o.mask = fx["in.mask"];
        o.query_weights = fx["in.query_weights"];
        o.d_pooled = fx["in.d_pooled"];
        grad::sdpa_backward(be, q, k, v, fx["in.d_out"], dq.v(), dk.v(), dv.v(), o);
        for (auto [t, n] : {std::pair{&dq, "q"}, {&dk, "k"}, {&dv, "v"}})
            require_grad(bn, std::string("grad") + tag + "." + n, t->cv(), fx[std::string("grad") + tag + "." + n]);
    }
}
