// Your own loss on the heatmap head, and its gradient through grad::head_backward.
//
// The loss here mixes the two things a head exposes:
//   * its attention map: the in-box queries should look inside the box,
//       L_att = -(1/H) sum_h log m_h,  m_h = sum_{k in box} pooled[0, h, k],
//     pooled[0, h, k] = sum_q w[q] P[h, q, k] with w = the box indicator / its size;
//   * its output features: keep delta small, L_feat = lambda mean(delta^2).
// head_backward takes dL/d delta and dL/d pooled and returns dL/d(every parameter)
// (named as head.visit names them), dL/dx and dL/dheatmap. One plain SGD step follows.
//
//   ./build/dev/examples/glimpse-example-custom-loss

#include <cmath>
#include <cstdio>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/grad/head_grad.hpp>
#include <glimpse/heatmap/prepare.hpp>

namespace hm = glimpse::heatmap;
using glimpse::shape;
using glimpse::tensor;

constexpr std::int64_t kGrid = 8, S = kGrid * kGrid, D = 64;
constexpr double kLambda = 0.1;

struct loss_and_grads {
    double loss;
    tensor d_delta, d_pooled;  // dL/d delta [S, D], dL/d pooled [1, H, S]
};

// The user's loss: any function of delta and pooled, with its two gradients.
loss_and_grads box_loss(const tensor& delta, const tensor& pooled, const tensor& in_box) {
    const std::int64_t H = pooled.size(1);
    loss_and_grads r{0.0, tensor(delta.shape()), tensor(pooled.shape())};
    for (std::int64_t h = 0; h < H; ++h) {
        double mass = 0;
        for (std::int64_t k = 0; k < S; ++k) mass += in_box.at({k}) * pooled.at({0, h, k});
        r.loss -= std::log(mass) / H;
        for (std::int64_t k = 0; k < S; ++k)
            r.d_pooled.set({0, h, k}, static_cast<float>(-in_box.at({k}) / (H * mass)));
    }
    const double n = static_cast<double>(delta.numel());
    for (std::int64_t i = 0; i < delta.numel(); ++i) {
        const float d = delta.ptr<float>()[i];
        r.loss += kLambda * d * d / n;
        r.d_delta.ptr<float>()[i] = static_cast<float>(2 * kLambda * d / n);
    }
    return r;
}

int main() {
    glimpse::cpu be;
    glimpse::rng g(42);
    auto head =
        hm::heatmap_head<glimpse::cpu, hm::rms_swiglu>::init(be, {.dim = D, .heads = 4, .intermediate = 128}, g);

    tensor x(shape{S, D});  // stand-in for encoder features
    for (std::int64_t i = 0; i < x.numel(); ++i) x.ptr<float>()[i] = static_cast<float>(g.normal());
    tensor h = hm::box_heatmap({16, 16, 48, 40}, 64, 64, kGrid, kGrid);  // a box in a 64x64 image: the heatmap [S]
    tensor w(shape{S});                                                  // query weights: the in-box queries
    double n_in = 0;
    for (std::int64_t i = 0; i < S; ++i) n_in += h.at({i}) > 0.5f;
    for (std::int64_t i = 0; i < S; ++i) w.set({i}, h.at({i}) > 0.5f ? static_cast<float>(1 / n_in) : 0.0f);
    tensor in_box(shape{S});
    for (std::int64_t i = 0; i < S; ++i) in_box.set({i}, h.at({i}) > 0.5f ? 1.0f : 0.0f);

    const hm::head_inputs in{x.cv(), h.cv(), {}, {}};
    auto fwd = glimpse::grad::head_forward(be, head, in, w.cv());
    auto l = box_loss(fwd.delta, fwd.pooled, in_box);
    std::printf("loss before: %.6f\n", l.loss);

    auto back = glimpse::grad::head_backward(be, head, fwd.tape, l.d_delta.cv(), l.d_pooled.cv());
    const float lr = 0.5f;
    std::size_t i = 0;
    head.visit("heatmap_head", [&](const std::string& name, tensor& p) {  // same order as back.params
        if (back.params.names[i] != name) throw glimpse::error("gradient order differs from visit");
        be.add(p.cv(), back.params.grads[i++].cv(), p.v(), -lr);  // p <- p - lr dL/dp
    });

    auto after = glimpse::grad::head_forward(be, head, in, w.cv());
    std::printf("loss after one SGD step (lr %.2f): %.6f\n", lr, box_loss(after.delta, after.pooled, in_box).loss);
}
