// Builds against the installed glimpse and runs the head once on each backend.
#include <cstdio>

#include <glimpse/glimpse.hpp>

int main() {
    glimpse::cpu be;
    glimpse::reference ref;
    glimpse::rng g(1);
    glimpse::rng g2(1);
    const glimpse::heatmap::head_config cfg{16, 2, 24, true};
    auto a = glimpse::heatmap::heatmap_head<glimpse::cpu, glimpse::heatmap::ln_gelu_tanh>::init(be, cfg, g);
    auto b = glimpse::heatmap::heatmap_head<glimpse::reference, glimpse::heatmap::ln_gelu_tanh>::init(ref, cfg, g2);
    glimpse::tensor x(glimpse::shape{12, 16});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.ptr<float>()[i] = static_cast<float>(i % 7) - 3.0f;
    const glimpse::tensor h = glimpse::heatmap::box_heatmap({1, 1, 3, 2}, 4, 3, 3, 4);
    auto [c, s] = glimpse::nn::vision_rotary{8}.cos_sin(glimpse::nn::raster_positions(3, 4));
    auto za = a.forward(be, {x.cv(), h.cv(), c.cv(), s.cv()});
    auto zb = b.forward(ref, {x.cv(), h.cv(), c.cv(), s.cv()});
    double err = 0;
    for (std::int64_t i = 0; i < za.numel(); ++i) {
        const double d = za.ptr<float>()[i] - zb.ptr<float>()[i];
        err = d * d > err * err ? (d < 0 ? -d : d) : err;
    }
    std::printf("glimpse %s consumer: cpu vs reference max abs diff %.2e\n", GLIMPSE_VERSION_STRING, err);
    return err < 1e-4 ? 0 : 1;
}
