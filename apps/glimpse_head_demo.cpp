// glimpse-head-demo: run the heatmap head block on the bundled input and show
// what it did — which execution path it took and how fast each is, that it
// matches the PyTorch reference, and where the in-box queries look.
//
//   glimpse-head-demo [--input FILE] [--box ROW0 COL0 ROW1 COL1] [--path automatic|generic|dedup|folded]
//                     [--device cpu|cuda:N] [--precision f32|bf16] [--threads N]
//
// The bundled input (examples/data/head_demo.safetensors, made by
// tools/make_demo_input.py) holds synthetic features on a 32 x 32 patch grid
// with two "objects", a randomly initialised head under the documented names
// heatmap_head.*, and PyTorch's float64 output for a box over the first object.
// One patch is one pixel of a grid_w x grid_h "image", so a box in patches is a box in pixels.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app_common.hpp"

#include <glimpse/analysis/attention_stats.hpp>
#include <glimpse/glimpse.hpp>
#include <glimpse/viz/ascii_map.hpp>

namespace {

namespace hm = glimpse::heatmap;

// A box [row0, col0, row1, col1) in patches from the file's metadata or the command line.
glimpse::box patch_box(const std::vector<std::int64_t>& rc) {
    return {double(rc[1]), double(rc[0]), double(rc[3]), double(rc[2])};
}
glimpse::box patch_box(const glimpse::safetensors_file& f, const char* key) {
    return patch_box(nlohmann::json::parse(f.metadata().at(key)).get<std::vector<std::int64_t>>());
}

template <glimpse::Backend B>
int demo(B& be, const std::string& device, const std::string& input, const std::vector<std::int64_t>& box_arg,
         const std::string& path_name) {
    const glimpse::safetensors_file f(input);
    const auto& meta = f.metadata();
    const std::int64_t gh = std::stoll(meta.at("grid_h")), gw = std::stoll(meta.at("grid_w")), S = gh * gw;
    const hm::head_config cfg{std::stoll(meta.at("dim")), std::stoll(meta.at("heads")),
                              std::stoll(meta.at("intermediate")), false};
    const auto block = hm::heatmap_head<B, hm::rms_swiglu>::load(be, f, "heatmap_head", cfg);
    const glimpse::tensor x = f.load("features").to(glimpse::dtype::f32);
    if (x.shape() != glimpse::shape{S, cfg.dim})
        throw glimpse::error("features " + x.shape().str() + " do not match the grid and dim in the metadata");

    const glimpse::box a = box_arg.empty() ? patch_box(f, "box_a") : patch_box(box_arg), b = patch_box(f, "box_b");
    const glimpse::analysis::grid_geometry grid{gh, gw, double(gw), double(gh)};
    const glimpse::tensor h = hm::box_heatmap(a, double(gw), double(gh), gh, gw);
    const auto area = static_cast<std::int64_t>((a.x2 - a.x1) * (a.y2 - a.y1));
    glimpse::tensor qw(glimpse::shape{1, S});  // pool the attention of the in-box queries
    for (std::int64_t i = 0; i < S; ++i) qw.ptr<float>()[i] = h.ptr<float>()[i] / static_cast<float>(area);

    const auto x_dev = be.upload(x.cv()), h_dev = be.upload(h.cv()), qw_dev = be.upload(qw.cv());

    std::printf("glimpse %s: heatmap head demo (backend: %s)\n", GLIMPSE_VERSION_STRING, device.c_str());
    std::printf("  input    %s\n  features [%lld, %lld] (stored %s), grid %lldx%lld\n", input.c_str(), (long long)S,
                (long long)cfg.dim, glimpse::name(f.find("features")->dtype.value()).data(), (long long)gh,
                (long long)gw);
    std::printf("  head     %s block, D=%lld, H=%lld, I=%lld, RoPE off, weights heatmap_head.*\n",
                hm::rms_swiglu::name.data(), (long long)cfg.dim, (long long)cfg.heads, (long long)cfg.intermediate);
    std::printf("  heatmap  box rows [%g,%g) cols [%g,%g): %lld of %lld patches = 1, rest 0\n", a.y1, a.y2, a.x1, a.x2,
                (long long)area, (long long)S);

    const auto want = path_name == "generic"  ? hm::head_path::generic
                      : path_name == "dedup"  ? hm::head_path::dedup
                      : path_name == "folded" ? hm::head_path::folded
                                              : hm::head_path::automatic;
    std::printf("\n  %-10s %10s %14s\n", "path", "time", "GFLOP (head)");
    glimpse::tensor z_keep, pooled_keep;
    for (auto p : {hm::head_path::generic, hm::head_path::dedup, hm::head_path::folded}) {
        hm::head_maps<B> maps;
        const glimpse::stopwatch t;
        const auto z_dev =
            block.forward(be, {x_dev.cv(), h_dev.cv(), {}, {}}, {.query_weights = qw_dev.cv()}, &maps, p);
        glimpse::tensor z = be.download(z_dev.cv());  // waits for an asynchronous backend: the time is the work
        const double ms = t.ms();
        const bool chosen = p == block.attn.choose(S, 2, want);
        std::printf("  %-10s %8.2f ms %14.3f%s\n", hm::name(p).data(), ms,
                    hm::path_flops(p, double(S), double(cfg.dim), double(cfg.heads), 2.0) * 1e-9,
                    chosen ? "   <- used" : "");
        if (chosen) {
            z_keep = std::move(z);
            pooled_keep = be.download(maps.pooled.cv());
        }
    }

    const glimpse::cview e = f.get("expected.z");
    double err = 0, ref = 0;
    for (std::int64_t i = 0; i < z_keep.numel(); ++i) {
        const double r = glimpse::load_f32(e.data(), e.type(), i);
        err = std::max(err, std::abs(z_keep.ptr<float>()[i] - r));
        ref = std::max(ref, std::abs(r));
    }
    std::printf("\n  parity   max |z - z_pytorch_f64| = %.2e (max |z| %.2f, relative %.1e)\n", err, ref, err / ref);

    // Head-mean of the pooled map: where, on average, the in-box queries look.
    std::vector<float> map(static_cast<std::size_t>(S), 0.0f);
    for (std::int64_t j = 0; j < cfg.heads; ++j)
        for (std::int64_t k = 0; k < S; ++k)
            map[static_cast<std::size_t>(k)] += pooled_keep.ptr<float>()[j * S + k] / static_cast<float>(cfg.heads);
    namespace an = glimpse::analysis;
    std::printf("  attention of in-box queries: %.3f inside box A (uniform: %.3f), %.3f inside box B (uniform: %.3f)\n",
                an::mass_in_box(map, a, grid), an::area_fraction(a, grid), an::mass_in_box(map, b, grid),
                an::area_fraction(b, grid));
    std::printf("  (the head is untrained: random weights, so attention is not yet steered by the box)\n\n");
    std::printf("  attention map (head mean, in-box queries; [ ] = box A edge):\n%s",
                glimpse::viz::ascii_map(map, gh, gw, a).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Run the heatmap head block on a bundled input and report paths, parity and attention."};
    std::string input = GLIMPSE_DEMO_INPUT;
    std::vector<std::int64_t> box;
    std::string path = "automatic";
    glimpse::app::backend_flags backend;
    app.add_option("--input", input, "safetensors with features, heatmap_head.* weights, expected.z")
        ->check(CLI::ExistingFile);
    app.add_option("--box", box, "heatmap box in patches: ROW0 COL0 ROW1 COL1 (half-open; default: the file's box_a)")
        ->expected(4);
    app.add_option("--path", path, "execution path")->check(CLI::IsMember({"automatic", "generic", "dedup", "folded"}));
    backend.add_to(app, "cpu (default) or cuda:N (a build with the CUDA backend, -DGLIMPSE_CUDA=ON)");
    if (const auto done = glimpse::app::parse(app, argc, argv, "glimpse-head-demo")) return *done;
    return glimpse::app::run("glimpse-head-demo", [&] {
        const glimpse::device_spec dev = backend.spec();
        return glimpse::with_backend(dev, [&](auto& be) { return demo(be, dev.str(), input, box, path); });
    });
}
