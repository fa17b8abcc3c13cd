#pragma once
// glimpse-compare's job as library calls (docs/compare.md): its options as typed, which of the
// three runs they ask for (one image, a batch file, the merge of a sharded batch), the checks
// made before any model is loaded, and the text of its results.
//
//   compare::run_options o{.base_model = "Qwen3-VL-8B-Instruct", .finetuned_model = "runs/head",
//                          .image_path = "img.jpg", .output_dir = "out", .person_box = {20, 15, 362, 512}};
//   compare::check(o);                                   // the run it is; throws on what cannot run
//   auto job = compare::single_image::read(o);          // the image decoded, its boxes checked
//   const auto src = compare::resolve_inputs(o);        // both models, the fonts
//   const auto c = compare::comparer<cpu>::load(be, src.base, src.tuned, o.seed, &job.timings);
//   const compare::comparison_result r = job.run(be, c);
//   job.write(r, o, src.fonts);                          // PNG + JSON + safetensors

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "glimpse/compare/attention_comparison.hpp"
#include "glimpse/compare/batch.hpp"
#include "glimpse/compare/comparison_figure.hpp"
#include "glimpse/compare/outputs.hpp"
#include "glimpse/compare/shards.hpp"
#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/image_u8.hpp"
#include "glimpse/io/image.hpp"
#include "glimpse/version.hpp"

namespace glimpse::compare {

// Everything glimpse-compare takes besides the backend (--device, --precision, --threads) and
// how much it prints. Strings are parsed where they are used, so each error names its flag.
struct run_options {
    std::string base_model, finetuned_model;  // checkpoint directories, or a glimpse-train head directory
    std::string image_path;                   // one image, or
    std::string batch;                        // a JSON-lines file of images and boxes, or
    std::vector<std::string> merge;           // the directories of a sharded batch's results
    std::string output_dir;
    std::string task = "referring";  // or grounding
    std::vector<double> person_box, object_box;
    std::string box_format = "pixels";  // or norm1000
    std::string action, object_category;
    std::string shard;              // K/N of a batch
    bool pipeline = true;           // batch: decode and write on a second thread
    std::string precision = "f32";  // fingerprinted: a result at another precision is recomputed
    std::string interpolation = "bilinear", color_scale = "column";
    std::int64_t panel_size = 360;
    double alpha = 0.5;
    std::uint64_t seed = 0;  // of a seeded, untrained head
    // Where each model's head is (models/head_locator.hpp); empty: found by structure.
    std::string head_prefix, head_names, base_head_prefix, base_head_names;
    bool allow_untrained = false;  // a fine-tuned model without a head gets a seeded one
};

enum class run_kind { single, batch, merge };

// Which run the options ask for, once every flag that needs no file has been checked.
inline run_kind check(const run_options& o) {
    if (!o.merge.empty()) {
        glimpse::detail::check(o.batch.empty() && o.image_path.empty() && o.base_model.empty() &&
                                   o.finetuned_model.empty() && o.shard.empty(),
                               "--merge reads the shards' results: drop --batch, --image_path, --base_model, "
                               "--finetuned_model and --shard");
        return run_kind::merge;
    }
    glimpse::detail::check(!o.base_model.empty() && !o.finetuned_model.empty(),
                           "give --base_model and --finetuned_model (or --merge DIR...)");
    glimpse::detail::check(!o.batch.empty() || !o.image_path.empty(), "give --image_path (or --batch FILE.jsonl)");
    glimpse::detail::check(o.shard.empty() || !o.batch.empty(), "--shard splits a --batch file");
    if (!o.shard.empty()) (void)shard_spec::parse(o.shard);
    (void)parse_task_type(o.task);
    (void)parse_box_format(o.box_format);
    if (o.batch.empty()) return run_kind::single;
    glimpse::detail::check(o.person_box.empty() && o.object_box.empty() && o.image_path.empty(),
                           "--batch takes the images and boxes from the JSONL file; drop --image_path, --person_box "
                           "and --object_box");
    return run_kind::batch;
}

inline figure_options figure_of(const run_options& o) {
    figure_options f;
    f.panel_long_side = o.panel_size;
    f.alpha = o.alpha;
    f.scale = parse_color_scale(o.color_scale);
    f.interp = o.interpolation == "nearest" ? viz::interpolation::nearest : viz::interpolation::bilinear;
    return f;
}

// What single and batch runs check and load before any image: the output directory, both model
// sources (the fine-tuned one may be a head-only directory on the base's encoder), the fonts.
struct run_inputs {
    model_source base, tuned;
    compare::fonts fonts;
};

inline run_inputs resolve_inputs(const run_options& o) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(o.output_dir, ec) && !fs::is_directory(o.output_dir, ec))
        glimpse::detail::fail("--output_dir '", o.output_dir, "' exists and is not a directory");
    auto base = model_source::resolve(o.base_model, "--base_model");
    auto tuned = model_source::resolve(o.finetuned_model, "--finetuned_model", base.encoder_dir);
    base.head_prefix = o.base_head_prefix;
    tuned.head_prefix = o.head_prefix;
    if (!o.base_head_names.empty()) base.head_names = models::head_name_map::from_json(o.base_head_names);
    if (!o.head_names.empty()) tuned.head_names = models::head_name_map::from_json(o.head_names);
    tuned.require_head = !o.allow_untrained;  // a fine-tuned model without its head is a mistake, not a result
    return {std::move(base), std::move(tuned), fonts::system_default()};
}

// One image: decoded and its boxes checked (before the slow model load), then compared and
// written. `timings` collects every stage, the model load included when it is passed to
// comparer::load; the JSON's "timings" are those up to the run, the figure's and the writes'
// come after.
struct single_image {
    image_u8 image;
    request req;
    stage_timings timings;

    static single_image read(const run_options& o) {
        single_image s;
        const stopwatch t;
        s.image = load_image(o.image_path);
        s.timings.add("decode image", t.ms());
        const auto opt = [](const std::vector<double>& v) { return v.empty() ? std::nullopt : std::optional(v); };
        s.req =
            make_request(static_cast<double>(s.image.width), static_cast<double>(s.image.height),
                         parse_task_type(o.task), parse_box_format(o.box_format), opt(o.person_box), opt(o.object_box),
                         o.action, o.object_category, std::filesystem::path(o.image_path).filename().string());
        return s;
    }

    template <Backend B>
    comparison_result run(B& be, const comparer<B>& c) {
        comparison_result r = c.run(be, image, req);
        for (const auto& [k, v] : r.timings.ms) timings.add(k, v);
        r.timings = timings;
        return r;
    }

    written write(const comparison_result& r, const run_options& o, const fonts& f) {
        return write_outputs(r, o.output_dir, f, figure_of(o), &timings);
    }
};

// A batch run's options from the command's: `device_kind` (cpu | cuda) is fingerprinted,
// `device` (e.g. "cuda:0 (bf16 matmul)") and the head sources go in the report.
inline batch_options batch_options_for(const run_options& o, const std::string& base_head_source,
                                       const std::string& tuned_head_source, std::string_view device_kind,
                                       const std::string& device) {
    batch_options bo;
    bo.output_dir = o.output_dir;
    bo.task = parse_task_type(o.task);
    bo.boxes = parse_box_format(o.box_format);
    bo.action = o.action;
    bo.object_category = o.object_category;
    bo.figure = figure_of(o);
    bo.precision = o.precision;
    bo.device_kind = std::string(device_kind);
    if (!o.shard.empty()) bo.shard = shard_spec::parse(o.shard);
    bo.pipeline = o.pipeline;
    bo.report.title = "glimpse-compare: " + std::filesystem::path(o.batch).filename().string();
    bo.report.facts = {{"batch file", o.batch},
                       {"base model", o.base_model + " (" + base_head_source + ")"},
                       {"fine-tuned model", o.finetuned_model + " (" + tuned_head_source + ")"},
                       {"precision, device", o.precision + ", " + device},
                       {"glimpse", GLIMPSE_VERSION_STRING}};
    return bo;
}

// How many of `total` images (0-based i, file order) a shard computes: those with i mod n = k.
inline std::int64_t shard_size(const shard_spec& s, std::int64_t total) { return (total - s.k + s.n - 1) / s.n; }

// ---- the results as text ------------------------------------------------------------------

// One image's numbers: referring, the mass each model's head puts in each box against the
// uniform share; grounding, the entropies and the masses of the head and the encoder.
inline std::string result_summary(const comparison_result& r) {
    std::string out;
    char line[320];
    const auto ll = [](std::int64_t v) { return static_cast<long long>(v); };
    std::snprintf(line, sizeof line, "  image      %s: %lldx%lld -> resized %lldx%lld, grid %lldx%lld patches\n",
                  r.req.image_label.c_str(), ll(r.image_w), ll(r.image_h), ll(r.resized_w), ll(r.resized_h),
                  ll(r.grid_h), ll(r.grid_w));
    out += line;
    if (r.req.task == task_type::referring) {
        out += "  attention mass inside the query box (uniform = the box's share of the image):\n";
        std::snprintf(line, sizeof line, "    %-12s %8s %8s %11s %12s\n", "box", "uniform", "base", "fine-tuned",
                      "base - ft");
        out += line;
        for (std::size_t i = 0; i < r.base.queries.size(); ++i) {
            const auto& a = r.base.queries[i];
            const auto& b = r.finetuned.queries[i];
            const double uni = r.uniform_mass.at(a.key), ma = a.mass_in.at(a.key), mb = b.mass_in.at(a.key);
            std::snprintf(line, sizeof line, "    %-12s %8.4f %8.4f %11.4f %+12.4f\n", a.key.c_str(), uni, ma, mb,
                          ma - mb);
            out += line;
        }
        return out;
    }
    std::snprintf(line, sizeof line,
                  "  normalised entropy (1 = uniform):  head, uniform heatmap: base %.4f, fine-tuned %.4f\n",
                  r.base.queries[0].stats.normalized_entropy, r.finetuned.queries[0].stats.normalized_entropy);
    out += line;
    if (r.base.own) {
        std::snprintf(line, sizeof line,
                      "                                     encoder's own attention (block %lld): base %.4f, "
                      "fine-tuned %.4f\n",
                      ll(r.base.own->map.block), r.base.own->stats.normalized_entropy,
                      r.finetuned.own->stats.normalized_entropy);
        out += line;
    }
    for (const auto& bx : r.boxes) {
        std::snprintf(line, sizeof line,
                      "  mass in %-11s head: base %.4f, fine-tuned %.4f; encoder: base %.4f (uniform %.4f)\n",
                      bx.key.c_str(), r.base.queries[0].mass_in.at(bx.key), r.finetuned.queries[0].mass_in.at(bx.key),
                      r.base.own ? r.base.own->mass_in.at(bx.key) : 0.0, r.uniform_mass.at(bx.key));
        out += line;
    }
    return out;
}

// "  timings (ms):" and one line per stage, in the order they ran, then the total.
inline std::string timings_table(const stage_timings& t) {
    std::string out = "  timings (ms):\n";
    char line[96];
    double total = 0;
    for (const auto& [k, v] : t.ms) {
        total += v;
        std::snprintf(line, sizeof line, "    %-36s %10.1f\n", k.c_str(), v);
        out += line;
    }
    std::snprintf(line, sizeof line, "    %-36s %10.1f\n", "total", total);
    return out + line;
}

// A batch's per-task summaries with their confidence intervals (the CSVs' numbers).
inline std::string batch_summaries(const std::vector<task_summary>& summaries) {
    std::string out;
    for (const auto& s : summaries) {
        if (s.rows.empty()) continue;
        out += s.task == task_type::referring
                   ? "  referring: mean attention mass inside each box (queries: that box's patches), 95% CI ("
                   : "  grounding: head under a uniform heatmap and the encoder's own attention, 95% CI (";
        out += std::string(ci_method) + "):\n" + summary_table(s.rows, s.task);
    }
    return out;
}

inline std::int64_t failed_count(const merge_result& m) {
    std::int64_t failed = 0;
    for (const auto& r : m.rows) failed += r.failed() ? 1 : 0;
    return failed;
}

}  // namespace glimpse::compare
