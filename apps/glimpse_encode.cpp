// glimpse-encode: encode one image with a Qwen2.5-VL / Qwen3-VL vision tower,
// optionally with the heatmap head fed a box, and write the features.
//
//   glimpse-encode --model DIR --image PATH [--heatmap-box X1 Y1 X2 Y2]
//                  [--out features.safetensors] [--threads N] [--precision f32|bf16]
//                  [--device cpu|cuda:N]
//
// The work is models/encode_image.hpp (what the output file holds is written there); this file
// is the command line. --precision bf16 rounds every GEMM input to bf16 (sums, attention, norms
// and residuals stay f32): several times faster on CPUs with AMX, about 3e-3 (relative to the
// largest value) off the f32 features (docs/benchmarks_encoders.md). --device cuda:N runs on the
// CUDA backend in a build that has it; without a device it fails with "no CUDA device visible:
// ...", never falls back to cpu. The box is in pixels of the ORIGINAL image (x right, y down,
// x1 < x2, y1 < y2). Any error: one line `glimpse-encode: ...` on stderr, exit 1, and no output
// file (it is written atomically, and only after everything else).

#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "app_common.hpp"

#include <glimpse/models/encode_image.hpp>
#include <glimpse/version.hpp>

namespace {

namespace models = glimpse::models;

struct options {
    std::string model, image, out, head_names;
    std::vector<double> box;
    models::qwen_head_options head;
    glimpse::app::backend_flags backend;
};

template <glimpse::Backend B>
int encode(B& be, const glimpse::device_spec& dev, const options& o) {
    constexpr bool on_cpu = std::is_same_v<B, glimpse::cpu>;
    const auto in = models::read_image_box(o.image, o.box);  // a bad box is not a reason to wait for the load
    const glimpse::stopwatch t_load;
    const auto enc = models::qwen_encoder<B>::load(be, o.model, o.head);
    const double load_ms = t_load.ms();
    const auto g = models::preprocess_image(enc, in);

    const auto& cfg = enc.config();
    std::string how;
    if constexpr (on_cpu) how = ", gemm " + std::string(be.gemm_kernel()) + ", kernels " + glimpse::app::kernels(be);
    std::printf("glimpse %s: encode (backend: %s, matmul precision %s%s)\n", GLIMPSE_VERSION_STRING,
                on_cpu ? "cpu" : ("cuda:" + std::to_string(dev.index)).c_str(),
                std::string(glimpse::name(dev.precision)).c_str(), how.c_str());
    std::printf("  model    %s (%s, depth %lld, D=%lld, heads %lld)\n", o.model.c_str(),
                std::string(models::name(cfg.family)).c_str(), static_cast<long long>(cfg.depth),
                static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_heads));
    std::printf("  image    %s: %lldx%lld -> resized %lldx%lld (w x h)\n", o.image.c_str(),
                static_cast<long long>(in.image.width), static_cast<long long>(in.image.height),
                static_cast<long long>(g.resized_w), static_cast<long long>(g.resized_h));
    std::printf("  grid_thw %s: %lld patches -> %lld merged tokens\n", models::grid_string(g.grid).c_str(),
                static_cast<long long>(g.patches), static_cast<long long>(g.merged_tokens));
    if (in.b) {
        const auto& hc = enc.head_config();
        std::printf("  head     %s block, D=%lld, H=%lld, I=%lld, RoPE on, before merger, residual; %s\n",
                    cfg.family == models::qwen_family::qwen2_5_vl ? "rms_swiglu" : "ln_gelu_tanh",
                    static_cast<long long>(hc.dim), static_cast<long long>(hc.heads),
                    static_cast<long long>(hc.intermediate), enc.head_source().c_str());
        if (!enc.head_trained())
            std::printf("  note     the head is UNTRAINED (no heatmap head in %s; --head DIR loads one)\n",
                        o.model.c_str());
    } else {
        std::printf("  head     not run (no --heatmap-box)\n");
    }

    const glimpse::stage_clock stages;
    const auto e = models::encode_image(be, enc, in, g);
    if (const auto* a = e.attention()) {
        const glimpse::box& b = *in.b;
        std::printf("  box      [%g, %g, %g, %g] px: %lld of %lld patches touched\n", b.x1, b.y1, b.x2, b.y2,
                    static_cast<long long>(a->in_box_count), static_cast<long long>(g.patches));
        std::printf("  attention mass inside the box (in-box queries, mean over heads): %.4f (uniform: %.4f)\n",
                    a->mass_in_box, e.box_area);
        std::printf("           on the %lld patches it touches, each whole: %.4f (uniform: %.4f)\n",
                    static_cast<long long>(a->in_box_count), a->mass_on_box_patches, e.box_patch_share);
    }
    const double write_ms = o.out.empty() ? 0.0 : models::save_encoding(o.out, be, enc, in, g, e);

    std::printf("  timings  load %.1f ms, preprocess %.1f ms, encode%s %.1f ms, write %.1f ms\n", load_ms,
                g.preprocess_ms, in.b ? " + head" : "", e.encode_ms, write_ms);
    // On cuda the scopes time the launches, not the kernels: only the cpu breakdown is printed.
    if constexpr (on_cpu) std::printf("  stages   %s\n", stages.summary(e.encode_ms).c_str());
    if (!o.out.empty()) std::printf("  wrote    %s\n", o.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Encode an image with a Qwen2.5-VL / Qwen3-VL vision tower, optionally guided by a heatmap box."};
    options o;
    app.add_option("--model", o.model, "checkpoint directory (config.json + safetensors)")->required();
    app.add_option("--head", o.head.head_dir,
                   "where the heatmap head is, when not in --model: a glimpse-train head directory, a checkpoint "
                   "directory or a .safetensors file (the head must be there)");
    app.add_option("--head-prefix,--head_prefix", o.head.prefix,
                   "the head's tensor prefix, e.g. model.visual.heatmap_head (default: found by structure)");
    app.add_option("--head-names,--head_names", o.head_names,
                   "JSON name map for a head whose leaves are named otherwise (docs/weights.md)");
    app.add_option("--image", o.image, "image file (PNG, JPEG, BMP)")->required();
    app.add_option("--heatmap-box", o.box, "box in pixels of the original image: X1 Y1 X2 Y2")->expected(4);
    app.add_option("--out", o.out, "write features to this .safetensors file");
    o.backend.add_to(app, "cpu (default) or cuda:N (a build with the CUDA backend, -DGLIMPSE_CUDA=ON)");
    if (const auto done = glimpse::app::parse(app, argc, argv, "glimpse-encode")) return *done;
    return glimpse::app::run("glimpse-encode", [&] {
        const glimpse::device_spec dev = o.backend.spec();
        if (!o.head_names.empty()) o.head.names = models::head_name_map::from_json(o.head_names);
        return glimpse::with_backend(dev, [&](auto& be) { return encode(be, dev, o); });
    });
}
