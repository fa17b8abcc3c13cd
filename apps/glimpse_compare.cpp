// glimpse-compare: where the heatmap head of a base and of a fine-tuned Qwen
// vision model looks, for a person box, an object box and their union, on one
// image or a JSONL list of them. The work is glimpse::compare
// (include/glimpse/compare/, comparison_run.hpp for this command's runs); this
// file is the command line. docs/compare.md describes the flags, the outputs and
// the JSON schema.
//
// Any error: one line `glimpse-compare: ...` on stderr, exit 1, and nothing
// written in the output directory (outputs are written under temporary names
// and renamed once all three exist). Batch mode reports a bad line with its
// line number, goes on with the others and exits 1 at the end if any failed.

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "app_common.hpp"

#include <glimpse/compare/comparison_run.hpp>
#include <glimpse/version.hpp>

namespace {

namespace cmp = glimpse::compare;
namespace fs = std::filesystem;

struct options {
    cmp::run_options run;
    glimpse::app::backend_flags backend;
    std::string pipeline = "on";
    bool verbose = false;
};

void warn(const std::string& w) {
    if (!w.empty()) std::fprintf(stderr, "glimpse-compare: warning: %s\n", w.c_str());
}

template <glimpse::Backend B>
int compare_one(B& be, const options& opt, const glimpse::device_spec& dev) {
    const cmp::run_options& o = opt.run;
    auto job = cmp::single_image::read(o);  // everything the user typed is checked before the slow load
    const auto src = cmp::resolve_inputs(o);
    std::printf("glimpse %s: compare attention, %s task (backend: %s)\n", GLIMPSE_VERSION_STRING,
                std::string(cmp::name(job.req.task)).c_str(), dev.str().c_str());
    warn(src.fonts.warning);
    std::fflush(stdout);
    const auto c = cmp::comparer<B>::load(be, src.base, src.tuned, o.seed, &job.timings);
    std::printf("  base       %s (%s): %s\n", o.base_model.c_str(),
                std::string(glimpse::models::name(c.base().family())).c_str(), c.base().head_source().c_str());
    std::printf("  fine-tuned %s%s: %s\n", o.finetuned_model.c_str(),
                src.tuned.head_only() ? " (head-only directory on the base's encoder)" : "",
                c.finetuned().head_source().c_str());
    if (!c.base().head_trained()) std::printf("  note       the base model's head is UNTRAINED (seeded init)\n");
    if (!c.finetuned().head_trained())
        std::printf("  note       the fine-tuned model's head is UNTRAINED (seeded init)\n");
    const cmp::comparison_result r = job.run(be, c);
    std::fputs(cmp::result_summary(r).c_str(), stdout);
    const auto out = job.write(r, o, src.fonts);
    if (opt.verbose) {
        std::printf("  kernels    %s\n", glimpse::describe_kernels(be).c_str());
        std::printf("  head path  %s (tower %s)\n", r.base.head_path.c_str(),
                    c.shared_tower() ? "run once, shared by both models" : "run once per model");
        std::fputs(cmp::timings_table(job.timings).c_str(), stdout);
    }
    std::printf("  wrote      %s\n             %s\n             %s\n", out.png.c_str(), out.json.c_str(),
                out.maps.c_str());
    return 0;
}

template <glimpse::Backend B>
int compare_batch(B& be, const options& opt, const glimpse::device_spec& dev) {
    const cmp::run_options& o = opt.run;
    const cmp::batch_file file = cmp::read_batch(o.batch);
    const auto src = cmp::resolve_inputs(o);
    std::printf("glimpse %s: compare attention, batch of %zu images from %s (backend: %s)\n", GLIMPSE_VERSION_STRING,
                file.items.size(), o.batch.c_str(), dev.str().c_str());
    for (const auto& w : file.warnings()) warn(w);
    warn(src.fonts.warning);
    cmp::stage_timings load_t;
    const auto c = cmp::comparer<B>::load(be, src.base, src.tuned, o.seed, &load_t);
    std::printf("  base       %s: %s\n  fine-tuned %s: %s\n", o.base_model.c_str(), c.base().head_source().c_str(),
                o.finetuned_model.c_str(), c.finetuned().head_source().c_str());
    std::fflush(stdout);

    cmp::batch_options bo =
        cmp::batch_options_for(o, c.base().head_source(), c.finetuned().head_source(),
                               dev.kind == glimpse::device_spec::kind_t::cpu ? "cpu" : "cuda", dev.str());
    bo.tty = glimpse::app::stderr_is_tty();
    bo.log_prefix = "glimpse-compare: ";
    if (!bo.shard.whole())
        std::printf("  shard      %s: %lld of the %zu images (those at i mod %lld = %lld)\n", bo.shard.str().c_str(),
                    static_cast<long long>(cmp::shard_size(bo.shard, static_cast<std::int64_t>(file.items.size()))),
                    file.items.size(), static_cast<long long>(bo.shard.n), static_cast<long long>(bo.shard.k));
    const cmp::batch_report rep = cmp::run_batch(be, c, src.base, src.tuned, file, bo, src.fonts);

    std::printf("  images     %lld computed, %lld skipped (done before, same fingerprint), %lld failed\n",
                static_cast<long long>(rep.computed), static_cast<long long>(rep.skipped),
                static_cast<long long>(rep.failed));
    if (rep.recomputed) std::printf("             %s\n", rep.recomputed_line().c_str());
    std::fputs(cmp::batch_summaries(rep.summaries).c_str(), stdout);
    if (opt.verbose) {
        std::printf("  kernels    %s\n", glimpse::describe_kernels(be).c_str());
        cmp::stage_timings total = rep.timings;
        for (const auto& [k, v] : load_t.ms) total.add(k, v);
        std::fputs(cmp::timings_table(total).c_str(), stdout);
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
int merge(const cmp::run_options& o) {
    const cmp::merge_result m = cmp::merge_shards(std::vector<fs::path>(o.merge.begin(), o.merge.end()), o.output_dir);
    const std::int64_t failed = cmp::failed_count(m);
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

void add_flags(CLI::App& app, options& opt) {
    cmp::run_options& o = opt.run;
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
    app.add_option("--pipeline", opt.pipeline,
                   "on (default): with --batch, decode the next image and write the last one's files on a second "
                   "thread while the tower runs; off: one after the other")
        ->check(CLI::IsMember({"on", "off"}));
    opt.backend.add_to(app, "cpu (default) or cuda:N (needs a build with the CUDA backend, -DGLIMPSE_CUDA=ON)");
    app.add_option("--seed", o.seed, "seed of a seeded (untrained) head; default 0");
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
    app.add_flag("--verbose,-v", opt.verbose, "print per-stage timings and the head's execution path");
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
    options opt;
    add_flags(app, opt);
    if (const auto done = glimpse::app::parse(app, argc, argv, "glimpse-compare")) return *done;
    return glimpse::app::run("glimpse-compare", [&] {
        const glimpse::device_spec dev = opt.backend.spec();
        opt.run.precision = opt.backend.precision;
        opt.run.pipeline = opt.pipeline == "on";
        switch (cmp::check(opt.run)) {
            case cmp::run_kind::merge:
                return merge(opt.run);
            case cmp::run_kind::batch:
                return glimpse::with_backend(dev, [&](auto& be) { return compare_batch(be, opt, dev); });
            case cmp::run_kind::single:
                break;
        }
        return glimpse::with_backend(dev, [&](auto& be) { return compare_one(be, opt, dev); });
    });
}
