// glimpse-encode: encode one image with a Qwen2.5-VL / Qwen3-VL vision tower,
// optionally with the heatmap head fed a box, and write the features.
//
//   glimpse-encode --model DIR --image PATH [--heatmap-box X1 Y1 X2 Y2]
//                  [--out features.safetensors] [--threads N] [--precision f32|bf16]
//                  [--device cpu|cuda:N]
//
// --precision bf16 rounds every GEMM input to bf16 (sums stay f32; attention,
// norms and residuals stay f32): several times faster on CPUs with AMX, about
// 3e-3 (relative to the largest value) off the f32 features (docs/benchmarks_encoders.md).
// --device cuda:N runs on the CUDA backend in a build that has it (backend/device.hpp);
// without a device it fails with "no CUDA device visible: ...", never falls back to cpu.
// Prints the resized size, grid_thw, patch / merged token counts, the head's
// source (trained heatmap_head.* or seeded, untrained), per-stage timings and,
// with a box, the attention mass the in-box queries put inside the box.
// The box is in pixels of the ORIGINAL image (x right, y down, x1 < x2, y1 < y2).
// Any error: one line `glimpse-encode: ...` on stderr, exit 1, and no output
// file (save_safetensors writes atomically, and only after everything else).
//
// Output tensors: hidden [N, D] (pre-merger, head applied, MERGE-BLOCK order,
// the rows of pixel_values), merged [N/m^2, out] (merged-raster order),
// deepstack.<j> (Qwen3), and with a box: heatmap [gh, gw], attention.mean
// [gh, gw], attention.per_head [H, gh, gw] (raster order). Metadata: family,
// grid_thw, resized size, box, head source.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <glimpse/backend/device.hpp>
#include <glimpse/glimpse.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

namespace {

using glimpse::cpu;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

std::string join(const glimpse::models::grid_thw_t& g) {
    return "[" + std::to_string(g[0]) + ", " + std::to_string(g[1]) + ", " + std::to_string(g[2]) + "]";
}

template <glimpse::Backend B>
int run(B& be, const glimpse::device_spec& dev, const std::string& model, const std::string& image_path,
        const std::vector<double>& box_arg, const std::string& out_path,
        const glimpse::models::qwen_head_options& head_opt) {
    namespace models = glimpse::models;
    const glimpse::matmul_precision precision = dev.precision;

    // Check what the user typed before the slow load: a bad box is not a reason to wait.
    const auto t_pre = clock_type::now();
    const glimpse::image_u8 img = glimpse::load_image(image_path);
    std::optional<glimpse::heatmap::box> box;
    if (!box_arg.empty()) {
        box = glimpse::heatmap::box{box_arg[0], box_arg[1], box_arg[2], box_arg[3]};
        glimpse::heatmap::validate_box(*box, static_cast<double>(img.width), static_cast<double>(img.height),
                                       "--heatmap-box");
    }
    const double decode_ms = ms_since(t_pre);

    const auto t_load = clock_type::now();
    const auto enc = models::qwen_encoder<B>::load(be, model, head_opt);
    const double load_ms = ms_since(t_load);

    const auto t_prep = clock_type::now();
    const auto px = enc.preprocess(img);
    const double prep_ms = ms_since(t_prep) + decode_ms;

    const auto& cfg = enc.config();
    const auto grid = px.grid_thw[0];
    const std::int64_t n = grid[0] * grid[1] * grid[2], merged = n / cfg.merge_group();
    std::string how;
    if constexpr (std::is_same_v<B, cpu>) how = ", gemm " + std::string(be.gemm_kernel());
    const std::string where = std::is_same_v<B, cpu> ? std::string("cpu") : "cuda:" + std::to_string(dev.index);
    std::string kernels;
    if constexpr (std::is_same_v<B, cpu>) kernels = ", kernels " + glimpse::describe_cpu_isa(be.isa());
    std::printf("glimpse %s: encode (backend: %s, matmul precision %s%s%s)\n", GLIMPSE_VERSION_STRING, where.c_str(),
                std::string(glimpse::name(precision)).c_str(), how.c_str(), kernels.c_str());
    std::printf("  model    %s (%s, depth %lld, D=%lld, heads %lld)\n", model.c_str(),
                std::string(models::name(cfg.family)).c_str(), static_cast<long long>(cfg.depth),
                static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.num_heads));
    std::printf("  image    %s: %lldx%lld -> resized %lldx%lld (w x h)\n", image_path.c_str(),
                static_cast<long long>(img.width), static_cast<long long>(img.height),
                static_cast<long long>(px.resized_hw[0].second), static_cast<long long>(px.resized_hw[0].first));
    std::printf("  grid_thw %s: %lld patches -> %lld merged tokens\n", join(grid).c_str(), static_cast<long long>(n),
                static_cast<long long>(merged));

    const glimpse::stage_clock stages;
    const auto t_enc = clock_type::now();
    std::optional<models::qwen_encoding<B>> r;
    glimpse::models::vision_output<B> plain;
    if (box) {
        const auto& hc = enc.head_config();
        std::printf("  head     %s block, D=%lld, H=%lld, I=%lld, RoPE on, before merger, residual; %s\n",
                    cfg.family == models::qwen_family::qwen2_5_vl ? "rms_swiglu" : "ln_gelu_tanh",
                    static_cast<long long>(hc.dim), static_cast<long long>(hc.heads),
                    static_cast<long long>(hc.intermediate), enc.head_source().c_str());
        if (!enc.head_trained())
            std::printf("  note     the head is UNTRAINED (no heatmap head in %s; --head DIR loads one)\n",
                        model.c_str());
        r = enc.encode_box(be, px, *box, static_cast<double>(img.width), static_cast<double>(img.height));
    } else {
        std::printf("  head     not run (no --heatmap-box)\n");
        plain = enc.encode(be, px);
    }
    const double enc_ms = ms_since(t_enc);
    const auto& feats = r ? r->features : plain;

    if (r) {
        const auto& a = *r->attention;
        std::printf("  box      [%g, %g, %g, %g] px: %lld of %lld patches touched\n", box->x1, box->y1, box->x2,
                    box->y2, static_cast<long long>(a.in_box_count), static_cast<long long>(n));
        const double area = glimpse::analysis::area_fraction(
            *box, {grid[1], grid[2], static_cast<double>(img.width), static_cast<double>(img.height)});
        std::printf("  attention mass inside the box (in-box queries, mean over heads): %.4f (uniform: %.4f)\n",
                    a.mass_in_box, area);
        std::printf("           on the %lld patches it touches, each whole: %.4f (uniform: %.4f)\n",
                    static_cast<long long>(a.in_box_count), a.mass_on_box_patches,
                    static_cast<double>(a.in_box_count) / static_cast<double>(n));
    }

    double write_ms = 0;
    if (!out_path.empty()) {
        const auto t_write = clock_type::now();
        const glimpse::tensor hidden = be.download(feats.hidden.cv());
        const glimpse::tensor merged_t = be.download(feats.merged.cv());
        std::vector<glimpse::tensor> ds;
        for (const auto& d : feats.deepstack) ds.push_back(be.download(d.cv()));
        std::vector<std::pair<std::string, glimpse::cview>> tensors = {{"hidden", hidden.cv()},
                                                                       {"merged", merged_t.cv()}};
        std::vector<std::string> ds_names;
        for (std::size_t j = 0; j < ds.size(); ++j) ds_names.push_back("deepstack." + std::to_string(j));
        for (std::size_t j = 0; j < ds.size(); ++j) tensors.emplace_back(ds_names[j], ds[j].cv());
        std::map<std::string, std::string> meta = {
            {"format", "pt"},
            {"family", std::string(models::name(cfg.family))},
            {"grid_thw", join(grid)},
            {"resized_hw",
             "[" + std::to_string(px.resized_hw[0].first) + ", " + std::to_string(px.resized_hw[0].second) + "]"},
            {"image_wh", "[" + std::to_string(img.width) + ", " + std::to_string(img.height) + "]"},
            {"hidden_order", "merge-block (rows of pixel_values)"},
            {"merged_order", "merged raster"}};
        if (r) {
            const auto& a = *r->attention;
            tensors.emplace_back("heatmap", r->heatmap.cv().reshape(glimpse::shape{grid[1], grid[2]}));
            tensors.emplace_back("attention.mean", a.mean.cv());
            tensors.emplace_back("attention.per_head", a.per_head.cv());
            meta["box_xyxy"] = "[" + std::to_string(box->x1) + ", " + std::to_string(box->y1) + ", " +
                               std::to_string(box->x2) + ", " + std::to_string(box->y2) + "]";
            meta["head"] = enc.head_source();
            meta["attention_mass_in_box"] = std::to_string(a.mass_in_box);
            meta["attention_mass_on_box_patches"] = std::to_string(a.mass_on_box_patches);
            meta["maps_order"] = "raster";
        }
        glimpse::save_safetensors(out_path, tensors, meta);
        write_ms = ms_since(t_write);
    }

    std::printf("  timings  load %.1f ms, preprocess %.1f ms, encode%s %.1f ms, write %.1f ms\n", load_ms, prep_ms,
                r ? " + head" : "", enc_ms, write_ms);
    // On cuda the scopes time the launches, not the kernels: only the cpu breakdown is printed.
    if constexpr (std::is_same_v<B, glimpse::cpu>) std::printf("  stages   %s\n", stages.summary(enc_ms).c_str());
    if (!out_path.empty()) std::printf("  wrote    %s\n", out_path.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Encode an image with a Qwen2.5-VL / Qwen3-VL vision tower, optionally guided by a heatmap box."};
    std::string model, image, out;
    std::vector<double> box;
    int threads = 0;
    std::string precision = "f32", device = "cpu", head_names;
    glimpse::models::qwen_head_options head_opt;
    app.add_option("--model", model, "checkpoint directory (config.json + safetensors)")->required();
    app.add_option("--head", head_opt.head_dir,
                   "where the heatmap head is, when not in --model: a glimpse-train head directory, a checkpoint "
                   "directory or a .safetensors file (the head must be there)");
    app.add_option("--head-prefix,--head_prefix", head_opt.prefix,
                   "the head's tensor prefix, e.g. model.visual.heatmap_head (default: found by structure)");
    app.add_option("--head-names,--head_names", head_names,
                   "JSON name map for a head whose leaves are named otherwise (docs/weights.md)");
    app.add_option("--image", image, "image file (PNG, JPEG, BMP)")->required();
    app.add_option("--heatmap-box", box, "box in pixels of the original image: X1 Y1 X2 Y2")->expected(4);
    app.add_option("--out", out, "write features to this .safetensors file");
    app.add_option("--threads", threads, "CPU threads (default: all)")->check(CLI::PositiveNumber);
    app.add_option("--precision", precision, "GEMM input precision: f32 (exact) or bf16 (rounded inputs, f32 sums)")
        ->check(CLI::IsMember({"f32", "bf16"}));
    app.add_option("--device", device, "cpu (default) or cuda:N (a build with the CUDA backend, -DGLIMPSE_CUDA=ON)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "glimpse-encode: %s\n", e.what());
        return 1;
    }
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#endif
    try {
        glimpse::device_spec dev = glimpse::parse_device(device);
        dev.precision = glimpse::parse_matmul_precision(precision);
        if (!head_names.empty()) head_opt.names = glimpse::models::head_name_map::from_json(head_names);
        return glimpse::with_backend(dev, [&](auto& be) { return run(be, dev, model, image, box, out, head_opt); });
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "glimpse-encode: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "glimpse-encode: unknown error\n");
    }
    return 1;
}
