// The head's gradients against finite differences computed here, on the
// reference backend (every op in f64, results stored f32): for every parameter
// tensor, the features x and the heatmap, the directional derivative of
//   L = sum(R . delta) + sum(Rp . pooled)        (R, Rp, query weights random)
// along random directions V, by central differences with Richardson
// extrapolation (error O(h^4)), against <g, V> from head_backward.
//
// Tolerance: the forward stores f32 between ops, so L carries rounding noise of
// ~1e-7 relative per element; divided by the step (h = 1e-2 max(rms of the
// tensor, 1)) that is ~1e-5 of the derivative, and the h^4 truncation is below it.
// Measured worst case 5.6e-5 relative to the scale max(|<g,V>|, |g||V|/sqrt(n), 1)
// (|g||V|/sqrt(n) is the typical size of a random projection); 1e-3 is the bound,
// while a wrong sign or a dropped term changes the derivative by O(1).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <glimpse/backend/reference.hpp>
#include <glimpse/grad/head_grad.hpp>
#include <glimpse/nn/rotary.hpp>

#include "grad/grad_test_util.hpp"

using namespace glimpse;

namespace {

constexpr double kFdRel = 1e-3;
// An absolute floor for the scale: the finite differences' own noise is ~3e-5 (the
// exactly-zero k_proj.bias gradient without RoPE reads as 3.5e-5), so derivatives below 1
// are held to 1e-3 absolute. The other derivatives here are O(0.05) to O(60).
constexpr double kFdFloor = 1.0;

double dot(const cview& a, const cview& b) {
    double s = 0;
    std::vector<std::int64_t> bo;
    detail::for_each_offset(b, [&](std::int64_t, std::int64_t off) { bo.push_back(off); });
    detail::for_each_offset(a, [&](std::int64_t i, std::int64_t off) {
        s += static_cast<double>(load_f32(a.data(), a.type(), off)) *
             load_f32(b.data(), b.type(), bo[static_cast<std::size_t>(i)]);
    });
    return s;
}

template <class Kind>
void check_fd(bool rope) {
    reference be;
    rng g(rope ? 11 : 12);
    const std::int64_t gh = 3, gw = 4, S = gh * gw, D = 16, H = 2;
    const heatmap::head_config cfg{D, H, 24, rope};
    auto head = heatmap::heatmap_head<reference, Kind>::init(be, cfg, g);
    std::vector<std::pair<std::string, tensor*>> params;
    head.visit("p", [&](const std::string& n, tensor& t) { params.emplace_back(n, &t); });
    std::uint64_t seed = 100;
    // Norms away from (weight 1, bias 0) and sharper queries, so that every term matters.
    for (auto& entry : params) {
        const std::string& n = entry.first;
        float* p = reinterpret_cast<float*>(entry.second->data());
        const bool q = n.find("q_proj") != std::string::npos, nw = n.find("norm") != std::string::npos;
        if (!q && !nw) continue;
        const tensor r = test::randn(entry.second->shape(), seed++, 0.3f);
        const bool unit = n.find("norm1.weight") != std::string::npos || n.find("norm2.weight") != std::string::npos;
        for (std::int64_t i = 0; i < entry.second->numel(); ++i)
            p[i] = (q ? 3.0f * p[i] : 0.0f) + (unit ? 1.0f : 0.0f) + r.ptr<float>()[i];
    }
    auto [cos, sin] = nn::vision_rotary{D / H}.cos_sin(nn::raster_positions(gh, gw));
    tensor x = test::randn(shape{S, D}, 1), h = test::randn(shape{S}, 2), w = test::randn(shape{S}, 3);
    for (std::int64_t i = 0; i < S; ++i) w.ptr<float>()[i] = std::abs(w.ptr<float>()[i]);
    const tensor R = test::randn(shape{S, D}, 4), Rp = test::randn(shape{1, H, S}, 5);
    auto loss = [&] {
        auto f = grad::head_forward(be, head, {x.cv(), h.cv(), rope ? cos.cv() : cview{}, rope ? sin.cv() : cview{}},
                                    w.cv());
        return dot(f.delta.cv(), R.cv()) + dot(f.pooled.cv(), Rp.cv());
    };
    auto f =
        grad::head_forward(be, head, {x.cv(), h.cv(), rope ? cos.cv() : cview{}, rope ? sin.cv() : cview{}}, w.cv());
    auto gr = grad::head_backward(be, head, f.tape, R.cv(), Rp.cv(), "p");

    // Directional derivative of L along V for the f32 tensor t (restored afterwards).
    auto check_dir = [&](const std::string& what, tensor& t, const cview& grad_t, std::uint64_t s) {
        const std::int64_t n = t.numel();
        double rms = 0;
        for (std::int64_t i = 0; i < n; ++i) rms += double(t.ptr<float>()[i]) * t.ptr<float>()[i];
        rms = std::max(std::sqrt(rms / static_cast<double>(n)), 1.0);
        const tensor V = test::randn(t.shape(), s);
        const tensor orig = t.clone();
        auto at = [&](double step) {
            for (std::int64_t i = 0; i < n; ++i)
                t.ptr<float>()[i] = static_cast<float>(orig.ptr<float>()[i] + step * rms * V.ptr<float>()[i]);
            return loss();
        };
        const double hstep = 1e-2;
        const double d1 = (at(hstep) - at(-hstep)) / (2 * hstep * rms);
        const double d2 = (at(hstep / 2) - at(-hstep / 2)) / (hstep * rms);
        std::memcpy(t.data(), orig.data(), orig.nbytes());
        const double fd = (4 * d2 - d1) / 3;
        const double gv = dot(grad_t, V.cv());
        const double gn = std::sqrt(dot(grad_t, grad_t)), vn = std::sqrt(dot(V.cv(), V.cv()));
        const double scale = std::max({std::abs(gv), gn * vn / std::sqrt(static_cast<double>(n)), kFdFloor});
        const double rel = std::abs(fd - gv) / std::max(scale, 1e-30);
        if (test::grad_report())
            std::printf("grad-fd    %-14s %-32s fd % .6e  <g,V> % .6e  rel %.2e\n", rope ? "rope" : "norope",
                        what.c_str(), fd, gv, rel);
        INFO(what << ": finite difference " << fd << ", <g, V> " << gv << ", scale " << scale << ", rel " << rel);
        REQUIRE(scale > 0);
        REQUIRE(rel <= kFdRel);
    };
    std::uint64_t s = 1000;
    for (std::size_t i = 0; i < params.size(); ++i) {
        REQUIRE(gr.params.names[i] == params[i].first);
        for (int rep = 0; rep < 2; ++rep) check_dir(params[i].first, *params[i].second, gr.params.grads[i].cv(), s++);
    }
    for (int rep = 0; rep < 2; ++rep) {
        check_dir("x", x, gr.dx.cv(), s++);
        check_dir("heatmap", h, gr.dheatmap.cv(), s++);
    }
}

}  // namespace

TEST_CASE("head gradients match finite differences (rms_swiglu, RoPE on and off)", "[grad][fd]") {
    const bool rope = GENERATE(false, true);
    check_fd<heatmap::rms_swiglu>(rope);
}

TEST_CASE("head gradients match finite differences (ln_gelu_tanh, RoPE on and off)", "[grad][fd]") {
    const bool rope = GENERATE(false, true);
    check_fd<heatmap::ln_gelu_tanh>(rope);
}
