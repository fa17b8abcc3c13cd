// glimpse-head-demo: run the heatmap head block on the bundled input and show
// what it did — which execution path it took and how fast each is, that it
// matches the PyTorch reference, and where the in-box queries look.
//
//   glimpse-head-demo [--input FILE] [--box ROW0 COL0 ROW1 COL1] [--path automatic|generic|dedup|folded]
//
// The bundled input (examples/data/head_demo.safetensors, made by
// tools/make_demo_input.py) holds synthetic features on a 32 x 32 patch grid
// with two "objects", a randomly initialised head under the documented names
// heatmap_head.*, and PyTorch's float64 output for a box over the first object.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <glimpse/glimpse.hpp>

namespace {

using glimpse::cpu;
namespace hm = glimpse::heatmap;

struct patch_box {
    std::int64_t r0, c0, r1, c1;
    bool contains(std::int64_t r, std::int64_t c) const { return r >= r0 && r < r1 && c >= c0 && c < c1; }
    std::int64_t area() const { return (r1 - r0) * (c1 - c0); }
};

patch_box box_from_meta(const glimpse::safetensors_file& f, const char* key) {
    const auto j = nlohmann::json::parse(f.metadata().at(key));
    return {j.at(0).get<std::int64_t>(), j.at(1).get<std::int64_t>(), j.at(2).get<std::int64_t>(),
            j.at(3).get<std::int64_t>()};
}

double mass_in(const float* map, std::int64_t gw, const patch_box& b) {
    double m = 0;
    for (std::int64_t r = b.r0; r < b.r1; ++r)
        for (std::int64_t c = b.c0; c < b.c1; ++c) m += map[r * gw + c];
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Run the heatmap head block on a bundled input and report paths, parity and attention."};
    std::string input = GLIMPSE_DEMO_INPUT;
    std::vector<std::int64_t> box_arg;
    std::string path_name = "automatic";
    app.add_option("--input", input, "safetensors with features, heatmap_head.* weights, expected.z")
        ->check(CLI::ExistingFile);
    app.add_option("--box", box_arg,
                   "heatmap box in patches: ROW0 COL0 ROW1 COL1 (half-open; default: the file's box_a)")
        ->expected(4);
    app.add_option("--path", path_name, "execution path")
        ->check(CLI::IsMember({"automatic", "generic", "dedup", "folded"}));
    CLI11_PARSE(app, argc, argv);

    try {
        cpu be;
        const glimpse::safetensors_file f(input);
        const auto& meta = f.metadata();
        const std::int64_t gh = std::stoll(meta.at("grid_h")), gw = std::stoll(meta.at("grid_w")), S = gh * gw;
        const hm::head_config cfg{std::stoll(meta.at("dim")), std::stoll(meta.at("heads")),
                                  std::stoll(meta.at("intermediate")), false};
        const auto block = hm::heatmap_head<cpu, hm::rms_swiglu>::load(be, f, "heatmap_head", cfg);
        const glimpse::tensor x = f.load("features").to(glimpse::dtype::f32);
        glimpse::detail::check(x.shape() == glimpse::shape{S, cfg.dim}, "features ", x.shape().str(),
                               " do not match the grid and dim in the metadata");

        const patch_box a =
            box_arg.empty() ? box_from_meta(f, "box_a") : patch_box{box_arg[0], box_arg[1], box_arg[2], box_arg[3]};
        const patch_box b = box_from_meta(f, "box_b");
        // One patch = one pixel of a gh x gw "image": the box maps onto exactly its patches.
        const glimpse::tensor h = hm::box_heatmap(hm::box{double(a.c0), double(a.r0), double(a.c1), double(a.r1)},
                                                  double(gw), double(gh), gh, gw);
        glimpse::tensor qw(glimpse::shape{1, S});  // pool the attention of the in-box queries
        for (std::int64_t i = 0; i < S; ++i) qw.ptr<float>()[i] = h.ptr<float>()[i] / static_cast<float>(a.area());

        std::printf("glimpse %s: heatmap head demo (backend: %s)\n", GLIMPSE_VERSION_STRING, cpu::name().data());
        std::printf("  input    %s\n  features [%lld, %lld] (stored %s), grid %lldx%lld\n", input.c_str(), (long long)S,
                    (long long)cfg.dim, glimpse::name(f.find("features")->dtype.value()).data(), (long long)gh,
                    (long long)gw);
        std::printf("  head     %s block, D=%lld, H=%lld, I=%lld, RoPE off, weights heatmap_head.*\n",
                    hm::rms_swiglu::name.data(), (long long)cfg.dim, (long long)cfg.heads, (long long)cfg.intermediate);
        std::printf("  heatmap  box rows [%lld,%lld) cols [%lld,%lld): %lld of %lld patches = 1, rest 0\n",
                    (long long)a.r0, (long long)a.r1, (long long)a.c0, (long long)a.c1, (long long)a.area(),
                    (long long)S);

        const auto want = path_name == "generic"  ? hm::head_path::generic
                          : path_name == "dedup"  ? hm::head_path::dedup
                          : path_name == "folded" ? hm::head_path::folded
                                                  : hm::head_path::automatic;
        std::printf("\n  %-10s %10s %14s\n", "path", "time", "GFLOP (head)");
        glimpse::tensor z_keep, pooled_keep;
        for (auto p : {hm::head_path::generic, hm::head_path::dedup, hm::head_path::folded}) {
            hm::head_maps<cpu> maps;
            const auto t0 = std::chrono::steady_clock::now();
            auto z = block.forward(be, {x.cv(), h.cv(), {}, {}}, {.query_weights = qw.cv()}, &maps, p);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            const bool chosen = p == block.attn.choose(S, 2, want);
            std::printf("  %-10s %8.2f ms %14.3f%s\n", hm::name(p).data(), ms,
                        hm::path_flops(p, double(S), double(cfg.dim), double(cfg.heads), 2.0) * 1e-9,
                        chosen ? "   <- used" : "");
            if (chosen) {
                z_keep = std::move(z);
                pooled_keep = std::move(maps.pooled);
            }
        }

        const auto err = [&] {
            const glimpse::cview e = f.get("expected.z");
            double mx = 0, ref = 0;
            for (std::int64_t i = 0; i < z_keep.numel(); ++i) {
                const double r = glimpse::load_f32(e.data(), e.type(), i);
                mx = std::max(mx, std::abs(z_keep.ptr<float>()[i] - r));
                ref = std::max(ref, std::abs(r));
            }
            return std::pair{mx, ref};
        }();
        std::printf("\n  parity   max |z - z_pytorch_f64| = %.2e (max |z| %.2f, relative %.1e)\n", err.first,
                    err.second, err.first / err.second);

        // Head-mean of the pooled map: where, on average, the in-box queries look.
        std::vector<float> map(static_cast<std::size_t>(S), 0.0f);
        for (std::int64_t j = 0; j < cfg.heads; ++j)
            for (std::int64_t k = 0; k < S; ++k)
                map[static_cast<std::size_t>(k)] += pooled_keep.ptr<float>()[j * S + k] / static_cast<float>(cfg.heads);
        std::printf(
            "  attention of in-box queries: %.3f inside box A (uniform: %.3f), %.3f inside box B (uniform: %.3f)\n",
            mass_in(map.data(), gw, a), double(a.area()) / double(S), mass_in(map.data(), gw, b),
            double(b.area()) / double(S));
        std::printf("  (the head is untrained: random weights, so attention is not yet steered by the box)\n\n");

        const char* ramp = " .:-=+*#%@";
        const float peak = *std::max_element(map.begin(), map.end());
        std::printf("  attention map (head mean, in-box queries; [ ] = box A edge):\n");
        for (std::int64_t r = 0; r < gh; ++r) {
            std::printf("  ");
            for (std::int64_t c = 0; c < gw; ++c) {
                const int lvl = static_cast<int>(std::lround(9.0 * map[static_cast<std::size_t>(r * gw + c)] / peak));
                const bool edge = a.contains(r, c) && (r == a.r0 || r == a.r1 - 1 || c == a.c0 || c == a.c1 - 1);
                std::putchar(edge && lvl < 3 ? '+' : ramp[lvl]);
                std::putchar(' ');
            }
            std::putchar('\n');
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "glimpse-head-demo: %s\n", e.what());
        return 1;
    }
}
