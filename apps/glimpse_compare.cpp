// glimpse-compare: where the heatmap head of a base and of a fine-tuned Qwen
// vision model looks, for a person box, an object box and their union, on one
// image or a JSONL list of them. The work is glimpse::compare
// (include/glimpse/compare/); this file is the command line. docs/compare.md
// describes the flags, the outputs and the JSON schema.
//
// Any error: one line `glimpse-compare: ...` on stderr, exit 1, and nothing
// written in the output directory (outputs are written under temporary names
// and renamed once all three exist). Batch mode reports a bad line with its
// line number, goes on with the others and exits 1 at the end if any failed.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <glimpse/backend/device.hpp>
#include <glimpse/compare/attention_comparison.hpp>
#include <glimpse/compare/batch.hpp>
#include <glimpse/compare/outputs.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/version.hpp>

namespace {

namespace cmp = glimpse::compare;
namespace fs = std::filesystem;

struct options {
    std::string base_model, finetuned_model, image_path, output_dir, task = "referring", action, object_category;
    std::vector<double> person_box, object_box;
    std::string box_format = "pixels", device = "cpu", batch, interpolation = "bilinear", color_scale = "column",
                precision = "f32", shard, pipeline = "on";
    std::vector<std::string> merge;
    std::uint64_t seed = 0;
    int threads = 0;
    std::int64_t panel_size = 360;
    double alpha = 0.5;
    bool verbose = false;
    // Where each model's head is (models/head_locator.hpp); empty: found by structure.
    std::string head_prefix, head_names, base_head_prefix, base_head_names;
    bool allow_untrained = false;
};

std::string mass_line(const char* label, double uni, double a, double b) {
    char line[160];
    std::snprintf(line, sizeof line, "    %-12s %8.4f %8.4f %11.4f %+12.4f\n", label, uni, a, b, a - b);
    return line;
}

void print_result(const cmp::comparison_result& r, const options& o) {
    std::printf("  image      %s: %lldx%lld -> resized %lldx%lld, grid %lldx%lld patches\n", r.req.image_label.c_str(),
                static_cast<long long>(r.image_w), static_cast<long long>(r.image_h),
                static_cast<long long>(r.resized_w), static_cast<long long>(r.resized_h),
                static_cast<long long>(r.grid_h), static_cast<long long>(r.grid_w));
    if (r.req.task == cmp::task_type::referring) {
        std::printf("  attention mass inside the query box (uniform = the box's share of the image):\n");
        std::printf("    %-12s %8s %8s %11s %12s\n", "box", "uniform", "base", "fine-tuned", "base - ft");
        for (std::size_t i = 0; i < r.base.queries.size(); ++i) {
            const auto& a = r.base.queries[i];
            const auto& b = r.finetuned.queries[i];
            std::fputs(
                mass_line(a.key.c_str(), r.uniform_mass.at(a.key), a.mass_in.at(a.key), b.mass_in.at(a.key)).c_str(),
                stdout);
        }
    } else {
        std::printf("  normalised entropy (1 = uniform):  head, uniform heatmap: base %.4f, fine-tuned %.4f\n",
                    r.base.queries[0].stats.normalized_entropy, r.finetuned.queries[0].stats.normalized_entropy);
        if (r.base.own)
            std::printf(
                "                                     encoder's own attention (block %lld): base %.4f, fine-tuned "
                "%.4f\n",
                static_cast<long long>(r.base.own->map.block), r.base.own->stats.normalized_entropy,
                r.finetuned.own->stats.normalized_entropy);
        for (const auto& bx : r.boxes)
            std::printf("  mass in %-11s head: base %.4f, fine-tuned %.4f; encoder: base %.4f (uniform %.4f)\n",
                        bx.key.c_str(), r.base.queries[0].mass_in.at(bx.key), r.finetuned.queries[0].mass_in.at(bx.key),
                        r.base.own ? r.base.own->mass_in.at(bx.key) : 0.0, r.uniform_mass.at(bx.key));
    }
    (void)o;
}

void print_timings(const cmp::stage_timings& t) {
    double total = 0;
    for (const auto& [k, v] : t.ms) total += v;
    std::printf("  timings (ms):\n");
    for (const auto& [k, v] : t.ms) std::printf("    %-36s %10.1f\n", k.c_str(), v);
    std::printf("    %-36s %10.1f\n", "total", total);
}

cmp::figure_options figure_opts(const options& o) {
    cmp::figure_options f;
    f.panel_long_side = o.panel_size;
    f.alpha = o.alpha;
    f.scale = cmp::parse_color_scale(o.color_scale);
    f.interp =
        o.interpolation == "nearest" ? glimpse::viz::interpolation::nearest : glimpse::viz::interpolation::bilinear;
    return f;
}

// What single and batch runs check and load before any image: the output directory, both
// model sources (the fine-tuned one may be a head-only directory on the base's encoder), fonts.
struct inputs {
    cmp::model_source base, tuned;
    cmp::fonts fonts;
};
inputs resolve_inputs(const options& o) {
    std::error_code ec;
    if (fs::exists(o.output_dir, ec) && !fs::is_directory(o.output_dir, ec))
        glimpse::detail::fail("--output_dir '", o.output_dir, "' exists and is not a directory");
    auto base = cmp::model_source::resolve(o.base_model, "--base_model");
    auto tuned = cmp::model_source::resolve(o.finetuned_model, "--finetuned_model", base.encoder_dir);
    base.head_prefix = o.base_head_prefix;
    tuned.head_prefix = o.head_prefix;
    if (!o.base_head_names.empty()) base.head_names = glimpse::models::head_name_map::from_json(o.base_head_names);
    if (!o.head_names.empty()) tuned.head_names = glimpse::models::head_name_map::from_json(o.head_names);
    tuned.require_head = !o.allow_untrained;  // a fine-tuned model without its head is a mistake, not a result
    return {std::move(base), std::move(tuned), cmp::fonts::system_default()};
}

template <glimpse::Backend B>
int run_single(B& be, const options& o, const char* backend_name) {
    const cmp::task_type task = cmp::parse_task_type(o.task);
    const cmp::box_format bf = cmp::parse_box_format(o.box_format);
    cmp::stage_timings t;
    // Everything the user typed is checked before the slow model load.
    cmp::stopwatch wd;
    const glimpse::image_u8 img = glimpse::load_image(o.image_path);
    t.add("decode image", wd.ms());
    const auto opt = [](const std::vector<double>& v) { return v.empty() ? std::nullopt : std::optional(v); };
    const cmp::request req =
        cmp::make_request(static_cast<double>(img.width), static_cast<double>(img.height), task, bf, opt(o.person_box),
                          opt(o.object_box), o.action, o.object_category, fs::path(o.image_path).filename().string());
    const auto [base, tuned, fonts] = resolve_inputs(o);

    std::printf("glimpse %s: compare attention, %s task (backend: %s)\n", GLIMPSE_VERSION_STRING,
                std::string(cmp::name(task)).c_str(), backend_name);
    if (!fonts.warning.empty()) std::fprintf(stderr, "glimpse-compare: warning: %s\n", fonts.warning.c_str());
    std::fflush(stdout);
    const auto c = cmp::comparer<B>::load(be, base, tuned, o.seed, &t);
    std::printf("  base       %s (%s): %s\n", o.base_model.c_str(),
                std::string(glimpse::models::name(c.base().family())).c_str(), c.base().head_source().c_str());
    std::printf("  fine-tuned %s%s: %s\n", o.finetuned_model.c_str(),
                tuned.head_only() ? " (head-only directory on the base's encoder)" : "",
                c.finetuned().head_source().c_str());
    if (!c.base().head_trained()) std::printf("  note       the base model's head is UNTRAINED (seeded init)\n");
    if (!c.finetuned().head_trained())
        std::printf("  note       the fine-tuned model's head is UNTRAINED (seeded init)\n");
    cmp::comparison_result r = c.run(be, img, req);
    for (const auto& [k, v] : r.timings.ms) t.add(k, v);
    print_result(r, o);
    r.timings = t;
    const auto out = cmp::write_outputs(r, o.output_dir, fonts, figure_opts(o), &t);
    if (o.verbose) {
        std::printf("  kernels    %s\n", glimpse::describe_kernels(be).c_str());
        std::printf("  head path  %s (tower %s)\n", r.base.head_path.c_str(),
                    c.shared_tower() ? "run once, shared by both models" : "run once per model");
        print_timings(t);
    }
    std::printf("  wrote      %s\n             %s\n             %s\n", out.png.c_str(), out.json.c_str(),
                out.maps.c_str());
    return 0;
}

template <glimpse::Backend B>
int run_batch(B& be, const options& o, const char* backend_name, const glimpse::device_spec& dev) {
    glimpse::detail::check(o.person_box.empty() && o.object_box.empty() && o.image_path.empty(),
                           "--batch takes the images and boxes from the JSONL file; drop --image_path, --person_box "
                           "and --object_box");
    const cmp::batch_file file = cmp::read_batch(o.batch);
    const auto [base, tuned, fonts] = resolve_inputs(o);
    std::printf("glimpse %s: compare attention, batch of %zu images from %s (backend: %s)\n", GLIMPSE_VERSION_STRING,
                file.items.size(), o.batch.c_str(), backend_name);
    for (const auto& w : file.warnings()) std::fprintf(stderr, "glimpse-compare: warning: %s\n", w.c_str());
    if (!fonts.warning.empty()) std::fprintf(stderr, "glimpse-compare: warning: %s\n", fonts.warning.c_str());
    cmp::stage_timings load_t;
    const auto c = cmp::comparer<B>::load(be, base, tuned, o.seed, &load_t);
    std::printf("  base       %s: %s\n  fine-tuned %s: %s\n", o.base_model.c_str(), c.base().head_source().c_str(),
                o.finetuned_model.c_str(), c.finetuned().head_source().c_str());
    std::fflush(stdout);

    cmp::batch_options bo;
    bo.output_dir = o.output_dir;
    bo.task = cmp::parse_task_type(o.task);
    bo.boxes = cmp::parse_box_format(o.box_format);
    bo.action = o.action;
    bo.object_category = o.object_category;
    bo.figure = figure_opts(o);
    bo.precision = o.precision;
    bo.device_kind = dev.kind == glimpse::device_spec::kind_t::cpu ? "cpu" : "cuda";
    bo.tty = ::isatty(2) != 0;
    bo.log_prefix = "glimpse-compare: ";
    if (!o.shard.empty()) bo.shard = cmp::shard_spec::parse(o.shard);
    bo.pipeline = o.pipeline == "on";
    bo.report.title = "glimpse-compare: " + fs::path(o.batch).filename().string();
    bo.report.facts = {{"batch file", o.batch},
                       {"base model", o.base_model + " (" + c.base().head_source() + ")"},
                       {"fine-tuned model", o.finetuned_model + " (" + c.finetuned().head_source() + ")"},
                       {"precision, device", o.precision + ", " + dev.str()},
                       {"glimpse", GLIMPSE_VERSION_STRING}};
    if (!bo.shard.whole())
        std::printf("  shard      %s: %lld of the %zu images (those at i mod %lld = %lld)\n", bo.shard.str().c_str(),
                    static_cast<long long>(
                        (static_cast<std::int64_t>(file.items.size()) - bo.shard.k + bo.shard.n - 1) / bo.shard.n),
                    file.items.size(), static_cast<long long>(bo.shard.n), static_cast<long long>(bo.shard.k));
    const cmp::batch_report rep = cmp::run_batch(be, c, base, tuned, file, bo, fonts);

    std::printf("  images     %lld computed, %lld skipped (done before, same fingerprint), %lld failed\n",
                static_cast<long long>(rep.computed), static_cast<long long>(rep.skipped),
                static_cast<long long>(rep.failed));
    if (rep.recomputed) std::printf("             %s\n", rep.recomputed_line().c_str());
    for (const auto& s : rep.summaries) {
        if (s.rows.empty()) continue;
        if (s.task == cmp::task_type::referring)
            std::printf(
                "  referring: mean attention mass inside each box (queries: that box's patches), 95%% CI (%s):\n",
                cmp::ci_method);
        else
            std::printf("  grounding: head under a uniform heatmap and the encoder's own attention, 95%% CI (%s):\n",
                        cmp::ci_method);
        std::fputs(cmp::summary_table(s.rows, s.task).c_str(), stdout);
    }
    if (o.verbose) {
        std::printf("  kernels    %s\n", glimpse::describe_kernels(be).c_str());
        cmp::stage_timings total = rep.timings;
        for (const auto& [k, v] : load_t.ms) total.add(k, v);
        print_timings(total);
    }
    std::printf("  wrote      %s/<id>/attention_comparison_<task>.{png,json,safetensors}\n", o.output_dir.c_str());
    for (const auto& s : rep.summaries)
        std::printf("             %s\n             %s\n", s.summary_csv.c_str(), s.per_image_csv.c_str());
    if (rep.manifest.empty())
        std::printf("             %s\n", (fs::path(o.output_dir) / "index.html").c_str());
    else
        std::printf("             %s  (when all %lld shards are done: glimpse-compare --merge %s --output_dir %s)\n",
                    rep.manifest.c_str(), static_cast<long long>(bo.shard.n), o.output_dir.c_str(),
                    o.output_dir.c_str());
    return rep.failed ? 1 : 0;
}

// --merge: the shards' manifests -> the CSVs and index.html of the whole batch file.
int run_merge(const options& o) {
    std::vector<fs::path> dirs(o.merge.begin(), o.merge.end());
    const cmp::merge_result m = cmp::merge_shards(dirs, o.output_dir);
    std::int64_t failed = 0;
    for (const auto& r : m.rows) failed += r.failed() ? 1 : 0;
    std::printf("glimpse %s: merged %zu shards of %s: %zu images, %lld failed\n", GLIMPSE_VERSION_STRING,
                m.manifests.size(), m.first.batch_path.c_str(), m.rows.size(), static_cast<long long>(failed));
    for (const auto& s : m.summaries) {
        std::printf("  %s, 95%% CI (%s):\n", std::string(cmp::name(s.task)).c_str(), cmp::ci_method);
        std::fputs(cmp::summary_table(s.rows, s.task).c_str(), stdout);
    }
    for (const auto& s : m.summaries)
        std::printf("  wrote      %s\n             %s\n", s.summary_csv.c_str(), s.per_image_csv.c_str());
    std::printf("             %s\n", (fs::path(o.output_dir) / "index.html").c_str());
    return failed ? 1 : 0;
}

template <glimpse::Backend B>
int run_on(B& be, const options& o, const char* backend_name, const glimpse::device_spec& dev) {
    return o.batch.empty() ? run_single(be, o, backend_name) : run_batch(be, o, backend_name, dev);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "glimpse-compare: where the heatmap head of a base and of a fine-tuned Qwen2.5-VL / Qwen3-VL vision model "
        "looks,\n"
        "for a person box, an object box and their union (interaction). Writes\n"
        "  OUTPUT_DIR/attention_comparison_TASK.png          rows base / fine-tuned, columns person / object / "
        "interaction\n"
        "  OUTPUT_DIR/attention_comparison_TASK.json         mass in each box, entropy, peak, base - fine-tuned\n"
        "  OUTPUT_DIR/attention_comparison_TASK.safetensors  the raw maps [grid_h, grid_w], raster order\n"
        "A model is a Hugging Face checkpoint directory, sharded or not, whose heatmap head is found under any\n"
        "prefix (the fine-tuned model must have one unless --allow_untrained; the base model gets a seeded UNTRAINED\n"
        "head without), or a head-only directory written by glimpse-train (its encoder: the base model's). Every\n"
        "flag also has a dashed spelling (--base-model for --base_model)."};
    app.footer(
        "\nExamples:\n"
        "  glimpse-compare --base_model tests/data/qwen3_vl_tiny --finetuned_model "
        "examples/data/qwen3_vl_tiny_finetuned \\\n"
        "      --image_path examples/data/images/astronaut.jpg --output_dir out --task_type referring \\\n"
        "      --person_box 20 15 362 512 --object_box 276 342 512 512 --action holding --object_category helmet\n"
        "  glimpse-compare --base_model Qwen3-VL-8B-Instruct --finetuned_model runs/head --image_path img.jpg \\\n"
        "      --output_dir out --task_type grounding --action \"sitting on\" --object_category bench\n"
        "  glimpse-compare --base_model M --finetuned_model H --batch test.jsonl --output_dir out   # resumable\n"
        "  glimpse-compare ... --batch test.jsonl --output_dir out --shard "
        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n"
        "  glimpse-compare --merge out --output_dir out   # after all shards: the CSVs and index.html\n"
        "See docs/compare.md for the outputs, the JSON schema and the metrics.");
    options o;
    app.add_option("--base_model,--base-model", o.base_model,
                   "base model: a Hugging Face checkpoint directory (config.json + *.safetensors)");
    app.add_option("--finetuned_model,--finetuned-model", o.finetuned_model,
                   "fine-tuned model: a checkpoint directory, or a glimpse-train head directory "
                   "(heatmap_head.safetensors) on the base model's encoder");
    app.add_option("--image_path,--image-path", o.image_path, "the image (JPEG, PNG, BMP); not with --batch");
    app.add_option("--output_dir,--output-dir", o.output_dir, "where the PNG, JSON and safetensors go (created)")
        ->required();
    app.add_option("--task_type,--task-type", o.task,
                   "referring (maps of the heatmap head for the boxes) or grounding (no box input: the head under a "
                   "uniform heatmap and the encoder's own attention); default referring");
    app.add_option("--person_box,--person-box", o.person_box,
                   "person box X1 Y1 X2 Y2 (see --box_format), e.g. 20 15 362 512")
        ->expected(4);
    app.add_option("--object_box,--object-box", o.object_box, "object box X1 Y1 X2 Y2 (see --box_format)")->expected(4);
    app.add_option("--action", o.action, "the interaction, e.g. \"sitting on\" (titles and JSON)");
    app.add_option("--object_category,--object-category", o.object_category,
                   "the object's category, e.g. bench (titles and JSON)");
    app.add_option("--box_format,--box-format", o.box_format,
                   "pixels (original-image pixels, x right, y down, x1 < x2, y1 < y2; default) or norm1000 "
                   "(Qwen3-VL's 0..1000 coordinates)");
    app.add_option("--device", o.device,
                   "cpu (default) or cuda:N (needs a build with the CUDA backend, -DGLIMPSE_CUDA=ON)");
    app.add_option(
        "--batch", o.batch,
        "JSON lines {\"image\", \"person_box\", \"object_box\", [\"action\", \"object_category\", "
        "\"task_type\", \"box_format\", \"id\"]}: every image, each model loaded once; re-running skips images "
        "done with the same inputs (a fingerprint in each JSON) and recomputes the others");
    app.add_option("--shard", o.shard,
                   "K/N: with --batch, compute only the images i (0-based, in file order) with i mod N = K and write "
                   "OUTPUT_DIR/shards/shard-K-of-N.json; --merge makes the CSVs and index.html of all N (an array "
                   "job: examples/slurm/)");
    app.add_option("--merge", o.merge,
                   "DIR...: fold the shards in DIR/shards/ into OUTPUT_DIR's per_image/summary CSVs and index.html, "
                   "as one unsharded run writes them (no model is loaded)")
        ->expected(1, 1 << 20);
    app.add_option("--pipeline", o.pipeline,
                   "on (default): with --batch, decode the next image and write the last one's files on a second "
                   "thread while the tower runs; off: one after the other")
        ->check(CLI::IsMember({"on", "off"}));
    app.add_option("--precision", o.precision,
                   "GEMM inputs: f32 (exact; default) or bf16 (rounded to bf16, f32 sums: several times faster "
                   "on CPUs with AMX, ~3e-3 off)")
        ->check(CLI::IsMember({"f32", "bf16"}));
    app.add_option("--seed", o.seed, "seed of a seeded (untrained) head; default 0");
    app.add_option("--threads", o.threads, "CPU threads (default: all)")->check(CLI::PositiveNumber);
    app.add_option("--panel_size,--panel-size", o.panel_size,
                   "pixels of the image's longer side in each panel (default 360)")
        ->check(CLI::Range(std::int64_t{64}, std::int64_t{2048}));
    app.add_option("--interpolation", o.interpolation,
                   "map upsampling: bilinear (default) or nearest (shows the patches)")
        ->check(CLI::IsMember({"bilinear", "nearest"}));
    app.add_option("--alpha", o.alpha, "weight of the heatmap over the image, 0..1 (default 0.5)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--color_scale,--color-scale", o.color_scale,
                   "column (default: base and fine-tuned share each column's scale), panel (each its own) or figure")
        ->check(CLI::IsMember({"column", "panel", "figure"}));
    app.add_option("--head_prefix,--head-prefix", o.head_prefix,
                   "the fine-tuned head's tensor prefix in its checkpoint, e.g. model.visual.heatmap_head (default: "
                   "found by structure under any prefix; needed when a checkpoint holds several heads)");
    app.add_option("--head_names,--head-names", o.head_names,
                   "JSON name map for a head whose trainer named the leaves differently (docs/weights.md)");
    app.add_option("--base_head_prefix,--base-head-prefix", o.base_head_prefix, "--head_prefix for the base model");
    app.add_option("--base_head_names,--base-head-names", o.base_head_names, "--head_names for the base model");
    app.add_flag("--allow_untrained,--allow-untrained", o.allow_untrained,
                 "compare even when the fine-tuned model has no heatmap head (a seeded, UNTRAINED one is used); "
                 "without it that is an error");
    app.add_flag("--verbose,-v", o.verbose, "print per-stage timings and the head's execution path");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "glimpse-compare: %s (see --help)\n", e.what());
        return 1;
    }
#ifdef _OPENMP
    if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
    try {
        // The device seam (backend/device.hpp): cpu, or cuda:N in a build with the CUDA backend.
        glimpse::device_spec dev = glimpse::parse_device(o.device);
        dev.precision = glimpse::parse_matmul_precision(o.precision);
        if (!o.merge.empty()) {
            glimpse::detail::check(o.batch.empty() && o.image_path.empty() && o.base_model.empty() &&
                                       o.finetuned_model.empty() && o.shard.empty(),
                                   "--merge reads the shards' results: drop --batch, --image_path, --base_model, "
                                   "--finetuned_model and --shard");
            return run_merge(o);
        }
        glimpse::detail::check(!o.base_model.empty() && !o.finetuned_model.empty(),
                               "give --base_model and --finetuned_model (or --merge DIR...)");
        glimpse::detail::check(!o.batch.empty() || !o.image_path.empty(), "give --image_path (or --batch FILE.jsonl)");
        glimpse::detail::check(o.shard.empty() || !o.batch.empty(), "--shard splits a --batch file");
        if (!o.shard.empty()) (void)cmp::shard_spec::parse(o.shard);
        (void)cmp::parse_task_type(o.task);
        (void)cmp::parse_box_format(o.box_format);
        const std::string dev_name = dev.str();
        return glimpse::with_backend(dev, [&](auto& be) { return run_on(be, o, dev_name.c_str(), dev); });
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "glimpse-compare: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "glimpse-compare: unknown error\n");
    }
    return 1;
}
