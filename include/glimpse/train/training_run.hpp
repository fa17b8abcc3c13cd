#pragma once
// A whole fine-tuning run of the heatmap head on a frozen Qwen encoder, from files to a run
// directory (the library behind glimpse-train; docs/training.md):
//
//   train::run_options o{.model = "Qwen3-VL-8B-Instruct", .data = "train.jsonl", .out = "runs/head"};
//   auto in = train::prepare_run(o);                         // every check, the data; nothing written
//   const auto enc = models::qwen_encoder<cpu>::load(be, o.model, in.head);
//   const train::run_result r = train::run_training(be, o, enc, std::move(in));
//
// The run directory gets heatmap_head.safetensors (a head directory every glimpse tool loads),
// glimpse_head.json (what was trained, how, and the metrics) and train_state.safetensors
// (resume). `run_events` reports what a caller shows: skipped lines, images encoded, the run's
// shape before the first step, each step and epoch.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/core/backend.hpp"
#include "glimpse/core/error.hpp"
#include "glimpse/core/stopwatch.hpp"
#include "glimpse/heatmap/integration.hpp"
#include "glimpse/models/qwen_heatmap.hpp"
#include "glimpse/train/box_focus.hpp"
#include "glimpse/train/dataset.hpp"
#include "glimpse/train/feature_cache.hpp"
#include "glimpse/train/head_checkpoint.hpp"
#include "glimpse/train/trainer.hpp"

namespace glimpse::train {

// What a run is given. Paths are kept as typed: the record stores them.
struct run_options {
    std::string model;            // Hugging Face checkpoint directory (the frozen encoder)
    std::string data;             // training examples (.jsonl)
    std::string out;              // the run directory
    std::string heldout;          // held-out examples (.jsonl), evaluated after every epoch
    double heldout_fraction = 0;  // or hold out this fraction of data's images (seeded by opt.seed)
    train_options opt;
    std::string boxes = "person,object,union";  // the boxes trained on (opt.objective.boxes)
    std::string on_bad_line = "reject";         // a line that cannot be used: "skip" (reported) or "reject"
    std::string init;                           // start from this head (directory or .safetensors), not a seeded one
    std::string init_prefix, init_names;        // where the init head is in its checkpoint, its leaves' names
    std::uint64_t head_seed = 0;                // seed of the untrained head a run starts from
    bool resume = false;                        // continue the run in `out` where its last checkpoint left it
    std::int64_t stop_after = 0;                // checkpoint and stop after N steps of this invocation (0: no)
    std::string command;                        // the command line, for the record
};

// "person,object,union" (any order, each at most once) -> the box kinds.
inline std::vector<box_kind> parse_box_kinds(std::string_view s) {
    std::vector<box_kind> out;
    std::size_t p = 0;
    while (p <= s.size()) {
        const auto q = std::min(s.find(',', p), s.size());
        const std::string t(s.substr(p, q - p));
        bool found = false;
        for (const auto k : all_box_kinds)
            if (t == name(k)) {
                glimpse::detail::check(std::find(out.begin(), out.end(), k) == out.end(), "--boxes: '", t,
                                       "' given twice");
                out.push_back(k);
                found = true;
            }
        glimpse::detail::check(found, "--boxes: '", t, "' is not one of person, object, union");
        p = q + 1;
    }
    return out;
}

// The data of a run, and where its head starts.
struct run_inputs {
    dataset data;
    std::vector<example> heldout;
    std::size_t skipped = 0;  // bad lines skipped (on_bad_line "skip"), both files
    std::optional<train_state> resume;
    models::qwen_head_options head;  // for qwen_encoder::load
};

// Everything the user gave is checked before anything slow or anything written: the options
// (o.opt.objective.boxes is set from o.boxes), the run directory against --resume, both data
// files, the resumed state. `warn` hears each skipped line and a missing held-out set.
inline run_inputs prepare_run(run_options& o, const std::function<void(const std::string&)>& warn = {}) {
    const auto say = [&](const std::string& s) {
        if (warn) warn(s);
    };
    const auto policy = o.on_bad_line == "skip" ? bad_line_policy::skip : bad_line_policy::reject;
    glimpse::detail::check(o.on_bad_line == "skip" || o.on_bad_line == "reject", "--on-bad-line: '", o.on_bad_line,
                           "' is not skip or reject");
    o.opt.objective.boxes = parse_box_kinds(o.boxes);
    o.opt.validate();

    const bool have = has_checkpoint(o.out);
    if (o.resume && !have)
        glimpse::detail::fail("--resume: '", o.out, "' holds no checkpoint (", std::string(state_file_name), ")");
    if (!o.resume && have)
        glimpse::detail::fail(
            "--out '", o.out,
            "' already holds a training run; add --resume to continue it, or choose another directory");
    run_inputs in;
    in.data = load_dataset(o.data, policy);
    in.skipped = in.data.bad.size();
    for (const auto& b : in.data.bad) say("skipping " + b.str());
    if (!o.heldout.empty()) {
        dataset h = load_dataset(o.heldout, policy);
        for (const auto& b : h.bad) say("skipping " + b.str());
        in.skipped += h.bad.size();
        in.heldout = std::move(h.examples);
    } else if (o.heldout_fraction > 0) {
        in.heldout = split_heldout(in.data, o.heldout_fraction, o.opt.seed);
    } else {
        say("no held-out set (--heldout or --heldout-fraction): the metrics will be missing");
    }
    if (o.resume) in.resume = load_train_state(o.out);

    in.head.seed = o.head_seed;
    in.head.load_trained = false;  // the base model's own heatmap_head.* is not the start unless --init says so
    glimpse::detail::check(!o.init.empty() || (o.init_prefix.empty() && o.init_names.empty()),
                           "--head-prefix and --head-names say where the --init head is: give --init too");
    if (!o.init.empty()) in.head.head_dir = o.init;
    in.head.prefix = o.init_prefix;
    if (!o.init_names.empty()) in.head.names = models::head_name_map::from_json(o.init_names);
    return in;
}

// What a run is about to do, reported once before its first step.
struct run_start {
    const models::qwen_vision_config* encoder = nullptr;
    heatmap::head_config head;
    std::string head_kind;    // rms_swiglu (Qwen2.5-VL) or ln_gelu_tanh (Qwen3-VL)
    std::string head_source;  // where the head starts from
    std::size_t train_examples = 0, heldout_examples = 0, images = 0, skipped = 0;
    double encode_s = 0;  // the frozen tower over every image
    std::int64_t steps_per_epoch = 0, total_steps = 0, warmup = 0;
    std::int64_t start_step = 0;  // > 0: resumed
    bool resumed = false;
};

struct run_events {
    std::function<void(std::size_t done, std::size_t total)> on_image;  // images through the tower
    std::function<void(const run_start&)> on_start;
    std::function<void(const step_report&)> on_step;
    std::function<void(const nlohmann::json& epoch_record)> on_epoch;
    std::function<bool()> stop_requested;  // polled before each step (besides stop_after)
};

struct run_result {
    bool complete = false;  // false: stopped after a checkpoint (resume to continue)
    std::int64_t start_step = 0, end_step = 0;
    nlohmann::json history;  // one record per epoch (trainer::history)
};

// "person 0.6123  object 0.2345  union 0.7012" of an epoch record's held-out `what`
// (mass_on_box_patches or uniform).
inline std::string box_masses(const nlohmann::json& heldout, const char* what) {
    if (heldout.is_null()) return "(no held-out set)";
    // Records written before the quantity had its own name call it mass_in_box.
    const bool old = std::string_view(what) == "mass_on_box_patches" && !heldout.contains(what);
    const auto& m = heldout.at(old ? "mass_in_box" : what);
    char buf[128];
    std::snprintf(buf, sizeof buf, "person %.4f  object %.4f  union %.4f", m.at("person").get<double>(),
                  m.at("object").get<double>(), m.at("union").get<double>());
    return buf;
}

// One line per epoch record: "epoch 3: train loss 0.1234, held-out mass on the box's patches: ...".
inline std::string epoch_summary(const nlohmann::json& e) {
    char buf[64] = "";
    if (!e.at("train_loss").is_null())
        std::snprintf(buf, sizeof buf, "train loss %.4f, ", e.at("train_loss").get<double>());
    return "epoch " + std::to_string(e.at("epoch").get<long long>()) + ": " + buf +
           "held-out mass on the box's patches: " + box_masses(e.at("heldout"), "mass_on_box_patches") +
           (e.at("heldout").is_null()
                ? std::string()
                : "  (feature change " + std::to_string(e.at("heldout").at("feature_change").get<double>()) + ")");
}

namespace impl {

// Everything the record says besides the trainer's own part.
inline nlohmann::json run_record(const run_options& o, const models::qwen_vision_config& cfg,
                                 const heatmap::head_config& hc, std::size_t train_n, std::size_t heldout_n,
                                 std::size_t images, std::size_t skipped) {
    nlohmann::json base;
    base["format"] = "glimpse_head";
    base["version"] = 1;
    base["encoder"] = {{"family", std::string(models::name(cfg.family))},
                       {"model_dir", o.model},
                       {"depth", cfg.depth},
                       {"hidden_size", cfg.hidden_size},
                       {"num_heads", cfg.num_heads},
                       {"patch_size", cfg.patch_size},
                       {"spatial_merge_size", cfg.spatial_merge_size}};
    base["head"] = {{"file", std::string(head_file_name)},
                    {"prefix", "heatmap_head"},
                    {"kind", cfg.family == models::qwen_family::qwen2_5_vl ? "rms_swiglu" : "ln_gelu_tanh"},
                    {"dim", hc.dim},
                    {"heads", hc.heads},
                    {"intermediate", hc.intermediate},
                    {"rope", hc.rope},
                    {"rope_theta", hc.rope_theta},
                    {"eps", hc.eps},
                    {"dtype", "f32"}};
    base["integration"] = {{"site", "before_merger"},
                           {"combine", "residual"},
                           {"heatmap", 0},
                           {"heatmap_from_box", "coverage: fraction of each patch inside the box, raster order"}};
    base["init"] = o.init.empty() ? nlohmann::json{{"from", "seeded"}, {"head_seed", o.head_seed}}
                                  : nlohmann::json{{"from", o.init}};
    base["data"] = {{"train", o.data},
                    {"heldout", o.heldout.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.heldout)},
                    {"heldout_fraction", o.heldout_fraction > 0 ? nlohmann::json(o.heldout_fraction) : nullptr},
                    {"on_bad_line", o.on_bad_line},
                    {"train_examples", train_n},
                    {"heldout_examples", heldout_n},
                    {"images_encoded", images},
                    {"skipped_lines", skipped}};
    base["command"] = o.command;
    return base;
}

// Same run or nothing: the schedule, the data order and the objective must be those the
// checkpoint was made with (save_every may change).
inline void check_same_run(const nlohmann::json& was_record, const nlohmann::json& now_record, const std::string& out) {
    std::vector<std::string> diffs;
    for (const char* k : {"encoder", "head", "integration", "init", "data", "objective", "hyperparameters"}) {
        nlohmann::json was = was_record.value(k, nlohmann::json(nullptr)), now = now_record.at(k);
        if (std::string_view(k) == "hyperparameters") {
            if (was.is_object()) was.erase("save_every");
            now.erase("save_every");
        }
        json_diff(was, now, k, diffs);
    }
    if (diffs.empty()) return;
    std::string msg = "--resume: this is not the run in '" + out + "' (checkpoint vs now):";
    for (const auto& d : diffs) msg += "\n  " + d;
    msg += "\nresume with the same arguments, or start a new run (--init " + out + " fine-tunes its head further)";
    throw glimpse::error(msg);
}

template <TrainingBackend B, heatmap::block_kind Kind>
run_result run_kind(B& be, const run_options& o, const models::qwen_encoder<B>& enc, run_inputs in,
                    const run_events& ev) {
    const auto& integ = std::get<heatmap::heatmap_integration<B, Kind>>(enc.head());
    auto head = trainable_copy(be, integ.entries()[0].head);
    const auto& cfg = enc.config();
    const auto& hc = enc.head_config();

    // The frozen tower, once per image.
    const stopwatch t_enc;
    feature_cache<B> cache;
    const auto on_image = [&](std::size_t i, std::size_t n, const std::filesystem::path&) {
        if (ev.on_image) ev.on_image(i, n);
    };
    cache.add(be, enc, in.data.examples, on_image);
    cache.add(be, enc, in.heldout, on_image);
    const double enc_s = t_enc.s();
    auto train_samples = cache.samples(in.data.examples, o.opt.objective.boxes);
    auto held_samples = cache.samples(in.heldout, o.opt.objective.boxes);

    trainer<B, Kind> tr(be, head, cache.images, std::move(train_samples), std::move(held_samples), o.opt);
    const nlohmann::json base =
        run_record(o, cfg, hc, tr.train_size(), tr.heldout_size(), cache.images.size(), in.skipped);
    if (in.resume) {
        check_same_run(in.resume->record, tr.state(base).record, o.out);
        tr.restore(*in.resume);
    }

    run_result r;
    r.start_step = tr.step();
    if (ev.on_start)
        ev.on_start({&cfg, hc, std::string(Kind::name), enc.head_source(), tr.train_size(), tr.heldout_size(),
                     cache.images.size(), in.skipped, enc_s, tr.steps_per_epoch(), tr.total_steps(),
                     tr.schedule().warmup, tr.step(), in.resume.has_value()});
    run_hooks hooks;
    hooks.on_step = ev.on_step;
    hooks.on_epoch = ev.on_epoch;
    hooks.stop_requested = [&] {
        return (ev.stop_requested && ev.stop_requested()) ||
               (o.stop_after > 0 && tr.step() - r.start_step >= o.stop_after);
    };
    r.complete = tr.run(o.out, base, hooks);
    r.end_step = tr.step();
    r.history = tr.history();
    return r;
}

}  // namespace impl

// The run: every image through the frozen tower once, then the trainer to the end (or until a
// stop is requested, after a checkpoint). `in` is prepare_run's, `enc` loaded with in.head.
template <TrainingBackend B>
run_result run_training(B& be, const run_options& o, const models::qwen_encoder<B>& enc, run_inputs in,
                        const run_events& ev = {}) {
    if (enc.family() == models::qwen_family::qwen2_5_vl)
        return impl::run_kind<B, heatmap::rms_swiglu>(be, o, enc, std::move(in), ev);
    return impl::run_kind<B, heatmap::ln_gelu_tanh>(be, o, enc, std::move(in), ev);
}

}  // namespace glimpse::train
