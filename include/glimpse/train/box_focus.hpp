#pragma once
// The box-focus objective (docs/training.md): teach the head to look where the
// heatmap points.
//
// For one image (site features x [S, D], token order) and one box b in pixels:
//   heatmap   h[t]  = fraction of patch t's area inside b      (models::box_to_heatmap)
//   in-box    K     = {t : h[t] > 0},  n = |K|
//   queries   w[t]  = 1/n on K, 0 elsewhere
//   pooled    p[j, k] = sum_t w[t] P_j[t, k]                    (head j's attention, [H, S])
//   mass      m     = (1/H) sum_j sum_{k in K} p[j, k]          (raster_attention::mass_on_box_patches)
//   term      L_b   = -log(m) + fw * sum(delta^2) / sum(x^2)
// delta [S, D] is what the head adds to the features (z = x + delta); the second
// term is the squared size of that change relative to the features' own, so a
// feature weight fw means the same for every encoder width and feature scale.
// It keeps the head from buying focus with features the rest of the encoder can
// no longer read. An example's loss is the mean of L_b over its boxes (person,
// object, and their union by default); a minibatch's is the mean over examples.
//
// -log(m) rather than -m: its gradient 1/m grows as focus is lost, so boxes the
// head ignores pull hardest, and minibatch means of logs do not let one large
// box drown the small ones.
//
// Gradients (this file; the head's own backward is grad/head_grad.hpp):
//   dL_b/dp[j, k] = -1 / (H m)  for k in K, else 0
//   dL_b/d delta  = 2 fw delta / sum(x^2)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "glimpse/analysis/attention_stats.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/tensor.hpp"
#include "glimpse/grad/head_grad.hpp"
#include "glimpse/heatmap/head_block.hpp"
#include "glimpse/heatmap/prepare.hpp"

namespace glimpse::train {

enum class box_kind : std::uint8_t { person, object, union_ };

constexpr std::string_view name(box_kind k) noexcept {
    switch (k) {
        case box_kind::person:
            return "person";
        case box_kind::object:
            return "object";
        case box_kind::union_:
            return "union";
    }
    return "?";
}

inline constexpr std::array<box_kind, 3> all_box_kinds{box_kind::person, box_kind::object, box_kind::union_};

struct box_focus_options {
    double feature_weight = 0.1;
    std::vector<box_kind> boxes{all_box_kinds.begin(), all_box_kinds.end()};

    void validate() const {
        detail::check(std::isfinite(feature_weight) && feature_weight >= 0, "feature weight must be >= 0, got ",
                      feature_weight);
        detail::check(!boxes.empty(), "box focus: no box kind selected");
    }
};

// One box on one image's patch grid, in the token order of the head's site.
struct focus_target {
    box_kind kind = box_kind::person;
    tensor heatmap;                    // [S] f32 coverage
    tensor query_weights;              // [1, S] f32: 1/n on K
    std::vector<std::uint8_t> in_box;  // [S]: 1 on K
    std::int64_t count = 0;            // n
};

// b in pixels of an image_w x image_h image whose patch grid is grid_h x grid_w;
// order.raster_of_token[t] is the raster patch of token t (identity: raster order).
inline focus_target make_focus_target(box_kind kind, const heatmap::box& b, double image_w, double image_h,
                                      std::int64_t grid_h, std::int64_t grid_w, const heatmap::token_order& order) {
    const std::int64_t S = grid_h * grid_w;
    detail::check(order.size() == S, "make_focus_target: token order of ", order.size(), " tokens for a ", grid_h, "x",
                  grid_w, " grid");
    const tensor raster = heatmap::box_heatmap(b, image_w, image_h, grid_h, grid_w);
    focus_target t;
    t.kind = kind;
    t.heatmap = tensor(shape{S});
    t.query_weights = tensor(shape{1, S});
    t.in_box.assign(static_cast<std::size_t>(S), 0);
    for (std::int64_t i = 0; i < S; ++i) {
        const float h = raster.ptr<float>()[order.raster_of_token[static_cast<std::size_t>(i)]];
        t.heatmap.ptr<float>()[i] = h;
        if (h > 0.0f) {
            t.in_box[static_cast<std::size_t>(i)] = 1;
            ++t.count;
        }
    }
    detail::check(t.count > 0, "make_focus_target: the box touches no patch");
    for (std::int64_t i = 0; i < S; ++i)
        if (t.in_box[static_cast<std::size_t>(i)]) t.query_weights.ptr<float>()[i] = 1.0f / static_cast<float>(t.count);
    return t;
}

// The boxes of an example, in `kinds` order.
inline std::vector<focus_target> make_focus_targets(std::span<const box_kind> kinds, const heatmap::box& person,
                                                    const heatmap::box& object, double image_w, double image_h,
                                                    std::int64_t grid_h, std::int64_t grid_w,
                                                    const heatmap::token_order& order) {
    std::vector<focus_target> out;
    for (const box_kind k : kinds) {
        const heatmap::box b = k == box_kind::person   ? person
                               : k == box_kind::object ? object
                                                       : heatmap::union_of(person, object);
        out.push_back(make_focus_target(k, b, image_w, image_h, grid_h, grid_w, order));
    }
    return out;
}

// Sum of squares of x in double: the feature term's denominator, once per image.
template <Backend B>
double sum_of_squares(B& be, const cview& x) {
    const tensor h = be.download(x).to(dtype::f32);
    double s = 0;
    const float* p = h.ptr<float>();
    for (std::int64_t i = 0; i < h.numel(); ++i) s += static_cast<double>(p[i]) * p[i];
    return s;
}

// m from pooled [1, H, S] (any backend) and the in-box set.
template <Backend B>
double mass_on_box_patches(B& be, const cview& pooled, const focus_target& t) {
    const tensor p = be.download(pooled).to(dtype::f32);
    const std::int64_t H = p.size(1), S = p.size(2);
    detail::check(p.rank() == 3 && p.size(0) == 1 && S == static_cast<std::int64_t>(t.in_box.size()),
                  "box focus: pooled map ", p.shape(), " for ", t.in_box.size(), " tokens");
    double m = 0;
    for (std::int64_t j = 0; j < H; ++j)
        m += analysis::mass_on_patches(std::span<const float>(p.ptr<float>() + j * S, static_cast<std::size_t>(S)),
                                       t.in_box);
    return m / static_cast<double>(H);
}

// Floor under m inside the log: a head that puts no mass at all in the box gets
// a large finite loss and gradient instead of inf.
inline constexpr double min_mass = 1e-12;

struct focus_value {
    double loss = 0;     // L_b
    double mass = 0;     // m
    double feature = 0;  // sum(delta^2) / sum(x^2)
};

// m and sum(delta^2) / sum(x^2) on the head's fastest exact path (evaluation; no tape).
template <Backend B, heatmap::block_kind Kind>
focus_value focus_evaluate(B& be, const heatmap::heatmap_head<B, Kind>& head, const cview& x, const cview& cos,
                           const cview& sin, double x_sum_sq, const focus_target& t, double feature_weight = 0) {
    const auto heat = be.upload(t.heatmap.cv());
    const auto qw = be.upload(t.query_weights.cv());
    heatmap::maps_request req;
    req.query_weights = qw.cv();
    heatmap::head_maps<B> maps;
    const auto delta = head.delta(be, heatmap::head_inputs{x, heat.cv(), cos, sin}, req, &maps);
    focus_value v;
    v.mass = mass_on_box_patches(be, maps.pooled.cv(), t);
    v.feature = sum_of_squares(be, delta.cv()) / x_sum_sq;
    v.loss = -std::log(std::max(v.mass, min_mass)) + feature_weight * v.feature;
    return v;
}

// L_b and its parameter gradients times `scale` (the minibatch weight
// 1 / (examples * boxes)), added into `accum` (f32 tensors in head.visit order,
// as grad::named_grads; allocate them with zero_grads).
template <TrainingBackend B, heatmap::block_kind Kind>
focus_value focus_loss_and_grad(B& be, const heatmap::heatmap_head<B, Kind>& head, const cview& x, const cview& cos,
                                const cview& sin, double x_sum_sq, const focus_target& t, double feature_weight,
                                double scale, std::span<typename B::tensor> accum) {
    detail::check(x_sum_sq > 0 && std::isfinite(x_sum_sq), "box focus: the features are all zero or not finite");
    const auto heat = be.upload(t.heatmap.cv());
    const auto qw = be.upload(t.query_weights.cv());
    auto fwd = grad::head_forward(be, head, heatmap::head_inputs{x, heat.cv(), cos, sin}, qw.cv());

    focus_value v;
    v.mass = mass_on_box_patches(be, fwd.pooled.cv(), t);
    v.feature = sum_of_squares(be, fwd.delta.cv()) / x_sum_sq;
    const double m = std::max(v.mass, min_mass);
    v.loss = -std::log(m) + feature_weight * v.feature;

    const std::int64_t H = fwd.pooled.shape()[1], S = fwd.pooled.shape()[2];
    tensor dp(shape{1, H, S});
    const auto g = static_cast<float>(-scale / (static_cast<double>(H) * m));
    for (std::int64_t j = 0; j < H; ++j)
        for (std::int64_t k = 0; k < S; ++k)
            if (t.in_box[static_cast<std::size_t>(k)]) dp.ptr<float>()[j * S + k] = g;
    const auto dp_dev = be.upload(dp.cv());

    typename B::tensor dd;
    if (feature_weight != 0.0) {
        // dL/d delta = c * delta: 0 + c * delta, one rounding, from a zero tensor.
        dd = be.alloc(fwd.delta.shape(), dtype::f32);
        be.add(dd.cv(), fwd.delta.cv(), dd.v(), static_cast<float>(2.0 * feature_weight * scale / x_sum_sq));
    }
    auto back = grad::head_backward(be, head, fwd.tape, feature_weight != 0.0 ? dd.cv() : cview{}, dp_dev.cv());
    detail::check(back.params.size() == accum.size(), "box focus: ", back.params.size(), " gradients for ",
                  accum.size(), " accumulators");
    for (std::size_t i = 0; i < accum.size(); ++i) {
        // As [1, n]: every backend adds 2-D operands (the reference backend's add refuses rank 1).
        const shape flat{1, accum[i].shape().numel()};
        be.add(accum[i].cv().reshape(flat), back.params.grads[i].cv().reshape(flat), accum[i].v().reshape(flat), 1.0f);
    }
    return v;
}

// Zero f32 gradient accumulators shaped like head.visit's parameters.
template <Backend B, heatmap::block_kind Kind>
std::vector<typename B::tensor> zero_grads(B& be, const heatmap::heatmap_head<B, Kind>& head) {
    std::vector<typename B::tensor> g;
    head.visit("",
               [&](const std::string&, const typename B::tensor& p) { g.push_back(be.alloc(p.shape(), dtype::f32)); });
    return g;
}

}  // namespace glimpse::train
