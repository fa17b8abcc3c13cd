// AdamW, the warm-up + cosine schedule and global-norm clipping
// (train/adamw.hpp, schedule.hpp, clip.hpp) replayed step by step against
// torch.optim.AdamW + SequentialLR(LinearLR, CosineAnnealingLR) +
// clip_grad_norm_ in float32 (tests/data/train_adamw.safetensors).

#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <glimpse/train/adamw.hpp>
#include <glimpse/train/clip.hpp>
#include <glimpse/train/schedule.hpp>

#include "test_util.hpp"

using namespace glimpse;

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string t; std::getline(ss, t, ',');) out.push_back(t);
    return out;
}

}  // namespace

TEST_CASE("AdamW + warm-up/cosine + clipping match torch step by step", "[train]") {
    const test::fixture fx("train_adamw.safetensors");
    const auto names = split(fx.s("names"));
    const auto steps = fx.i("steps");
    train::lr_schedule sched{fx.f("lr"), fx.i("warmup"), steps, fx.f("min_lr_ratio")};
    sched.validate();
    train::adamw_options o;
    o.beta1 = fx.f("beta1");
    o.beta2 = fx.f("beta2");
    o.eps = fx.f("eps");
    o.weight_decay = fx.f("weight_decay");

    std::vector<tensor> params;
    std::vector<shape> shapes;
    for (const auto& n : names) {
        params.push_back(fx.file.load("in.param." + n).to(dtype::f32));
        shapes.push_back(params.back().shape());
    }
    train::adamw opt(o, names, shapes);
    CHECK(opt.decays(0));   // layer.weight [4, 3]
    CHECK(!opt.decays(1));  // layer.bias [4]
    CHECK(!opt.decays(2));  // norm.weight [3]
    CHECK(opt.decays(3));   // proj.weight [2, 4]

    // Same f32 operation order as torch: the observed difference is at most one
    // f32 ulp of the parameters' scale (4.5e-8 relative); bound 5e-7.
    constexpr double kRel = 5e-7;
    for (std::int64_t s = 0; s < steps; ++s) {
        INFO("step " << s);
        std::vector<tensor> grads;
        for (const auto& n : names) grads.push_back(fx.file.load("in.grad." + std::to_string(s) + "." + n));
        const double norm = train::clip_grad_norm(std::span(grads), fx.f("clip"));
        CHECK(std::abs(norm - fx["out.grad_norm." + std::to_string(s)].at({0})) <= 1e-6 * norm);
        const double lr = sched.at(s);
        CHECK(std::abs(lr - fx["out.lr." + std::to_string(s)].at({0})) <= 1e-7 * lr);
        std::vector<view> pv;
        for (auto& p : params) pv.push_back(p.v());
        opt.step(pv, grads, lr);
        for (std::size_t i = 0; i < names.size(); ++i) {
            INFO(names[i]);
            GLIMPSE_REQUIRE_CLOSE(params[i].cv(), fx["out.param." + std::to_string(s) + "." + names[i]], kRel);
        }
    }
    CHECK(opt.steps() == steps);
    for (std::size_t i = 0; i < names.size(); ++i) {
        GLIMPSE_REQUIRE_CLOSE(opt.exp_avg()[i].cv(), fx["out.exp_avg." + names[i]], kRel);
        GLIMPSE_REQUIRE_CLOSE(opt.exp_avg_sq()[i].cv(), fx["out.exp_avg_sq." + names[i]], kRel);
    }
}

TEST_CASE("schedule: warm-up ramp, cosine to the floor, edge cases", "[train]") {
    const train::lr_schedule s{1.0, 4, 14, 0.1};
    CHECK(s.at(0) == Approx(0.25));
    CHECK(s.at(3) == Approx(1.0));
    CHECK(s.at(4) == Approx(1.0));
    CHECK(s.at(9) == Approx(0.55));  // halfway down the cosine: (1 + 0.1) / 2
    CHECK(s.at(14) == Approx(0.1));
    const train::lr_schedule flat{0.5, 0, 3, 0.0};
    CHECK(flat.at(0) == Approx(0.5));
    REQUIRE_THROWS_AS((train::lr_schedule{1.0, 5, 3, 0.0}.validate()), glimpse::error);
    REQUIRE_THROWS_AS((train::lr_schedule{-1.0, 0, 3, 0.0}.validate()), glimpse::error);
}

TEST_CASE("clipping: below the limit nothing changes, above it the norm becomes the limit", "[train]") {
    std::vector<tensor> g;
    g.push_back(tensor::from(shape{2}, std::vector<float>{3.0f, 0.0f}));
    g.push_back(tensor::from(shape{1}, std::vector<float>{4.0f}));
    CHECK(train::clip_grad_norm(std::span(g), 10.0) == Approx(5.0));
    CHECK(g[0].at({0}) == 3.0f);
    CHECK(train::clip_grad_norm(std::span(g), 1.0) == Approx(5.0));
    CHECK(train::global_grad_norm(g) == Approx(1.0).epsilon(1e-5));
    CHECK(train::clip_grad_norm(std::span(g), 0.0) == Approx(1.0).epsilon(1e-5));  // 0: report only
}
