// glimpse-train: fine-tune the heatmap head of a Qwen2.5-VL / Qwen3-VL checkpoint
// on box-annotated images, the encoder frozen (docs/training.md).
//
//   glimpse-train --model DIR --data train.jsonl --out RUN_DIR
//                 [--heldout heldout.jsonl | --heldout-fraction F] [--epochs N] [--lr X] ...
//
// The work is train/training_run.hpp; this file is the command line. Writes into RUN_DIR:
// heatmap_head.safetensors (a head directory every glimpse tool loads), glimpse_head.json
// (what was trained, how, and the metrics) and train_state.safetensors (--resume). Progress
// on stderr, results on stdout. Exit codes: 0 done, 1 error (bad data under --on-bad-line
// reject: before anything is written), 130 stopped by SIGINT/SIGTERM after a checkpoint.

#include <cstdio>
#include <optional>
#include <string>

#include "app_common.hpp"

#include <glimpse/core/progress.hpp>
#include <glimpse/train/training_run.hpp>
#include <glimpse/version.hpp>

namespace {

namespace models = glimpse::models;
namespace train = glimpse::train;

void print_start(const train::run_start& s, const train::run_options& o, const std::string& backend) {
    const auto ll = [](auto v) { return static_cast<long long>(v); };
    std::printf("glimpse %s: train the heatmap head (%s, encoder frozen)\n", GLIMPSE_VERSION_STRING, backend.c_str());
    std::printf("  model    %s (%s, depth %lld, D=%lld)\n", o.model.c_str(),
                std::string(models::name(s.encoder->family)).c_str(), ll(s.encoder->depth), ll(s.encoder->hidden_size));
    std::printf("  head     %s, D=%lld, H=%lld, I=%lld, RoPE %s; start: %s\n", s.head_kind.c_str(), ll(s.head.dim),
                ll(s.head.heads), ll(s.head.intermediate), s.head.rope ? "on" : "off", s.head_source.c_str());
    std::printf("  data     %zu training examples, %zu held out, %zu images encoded in %.1f s%s\n", s.train_examples,
                s.heldout_examples, s.images, s.encode_s,
                s.skipped ? (", " + std::to_string(s.skipped) + " bad lines skipped").c_str() : "");
    std::printf(
        "  run      %lld epochs x %lld steps (batch %lld) = %lld steps, lr %g (warm-up %lld, cosine), "
        "weight decay %g, clip %g, feature weight %g, seed %llu\n",
        ll(o.opt.epochs), ll(s.steps_per_epoch), ll(o.opt.batch), ll(s.total_steps), o.opt.lr, ll(s.warmup),
        o.opt.adam.weight_decay, o.opt.clip, o.opt.objective.feature_weight,
        static_cast<unsigned long long>(o.opt.seed));
    if (s.resumed) std::printf("  resume   from step %lld of %s\n", ll(s.start_step), o.out.c_str());
    std::fflush(stdout);
}

template <glimpse::TrainingBackend B>
int train_on(B& be, train::run_options& o) {
    auto in =
        train::prepare_run(o, [](const std::string& w) { std::fprintf(stderr, "glimpse-train: %s\n", w.c_str()); });
    const auto enc = models::qwen_encoder<B>::load(be, o.model, in.head);
    glimpse::app::catch_stop_signals();  // from here on Ctrl-C stops after a checkpoint

    const bool tty = glimpse::app::stderr_is_tty();
    std::optional<glimpse::progress_line> bar;
    train::run_events ev;
    ev.on_image = [&](std::size_t i, std::size_t n) {
        if (!tty) return;
        std::fprintf(stderr, "\r\033[2Kencoding images %zu/%zu", i, n);
        if (i == n) std::fprintf(stderr, "\n");
    };
    ev.on_start = [&](const train::run_start& s) {
        print_start(s, o, "backend: " + std::string(B::name()) + ", kernels " + glimpse::app::kernels(be));
        bar.emplace(stderr, tty, s.total_steps, "step", s.start_step);
    };
    ev.on_step = [&](const train::step_report& r) {
        char loss[64];
        std::snprintf(loss, sizeof loss, "loss %.4f  lr %.1e", r.loss, r.lr);
        bar->update(r.step, "epoch " + std::to_string(r.epoch + 1) + "/" + std::to_string(o.opt.epochs) + "  ", loss);
    };
    ev.on_epoch = [&](const nlohmann::json& e) { bar->note(train::epoch_summary(e)); };
    ev.stop_requested = [] { return glimpse::app::stop_signalled(); };
    const train::run_result r = train::run_training(be, o, enc, std::move(in), ev);
    bar->finish();

    const double secs = bar->elapsed_s();
    std::printf("  trained  steps %lld..%lld in %.1f s (%.1f steps/s)\n", static_cast<long long>(r.start_step),
                static_cast<long long>(r.end_step), secs,
                secs > 0 ? static_cast<double>(r.end_step - r.start_step) / secs : 0.0);
    if (!r.history.empty() && !r.history.front().at("heldout").is_null()) {
        // The objective's m: each patch the box touches counted whole (glimpse-compare's
        // "mass in box" weighs a patch by the box's coverage of it, so it is a little lower).
        std::printf("  held-out mass on the box's patches, before: %s\n",
                    train::box_masses(r.history.front().at("heldout"), "mass_on_box_patches").c_str());
        std::printf("                                      after:  %s\n",
                    train::box_masses(r.history.back().at("heldout"), "mass_on_box_patches").c_str());
        std::printf("                         (uniform attention:  %s)\n",
                    train::box_masses(r.history.front().at("heldout"), "uniform").c_str());
    }
    std::printf("  wrote    %s/{%s, %s, %s} at step %lld\n", o.out.c_str(), std::string(train::head_file_name).c_str(),
                std::string(train::record_file_name).c_str(), std::string(train::state_file_name).c_str(),
                static_cast<long long>(r.end_step));
    if (r.complete) return 0;
    std::printf("  stopped  before the end; continue with the same command and --resume\n");
    return glimpse::app::stop_signalled() ? 130 : 0;
}

void add_flags(CLI::App& app, train::run_options& a, glimpse::app::backend_flags& backend) {
    app.footer(
        "Example (the bundled fine-tune, about a minute on 2 cores):\n"
        "  glimpse-train --model tests/data/qwen3_vl_tiny --data examples/data/train/train.jsonl \\\n"
        "      --heldout examples/data/train/heldout.jsonl --out /tmp/run\n"
        "Data: one JSON object per line, {\"image\": PATH, \"person_box\": [x1,y1,x2,y2], \"object_box\": [...]},\n"
        "boxes in pixels of the original image, PATH relative to the .jsonl's directory.\n"
        "Interrupted (Ctrl-C) or killed: rerun the same command with --resume.");
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later --x overrides
    app.add_option("--model", a.model, "Hugging Face checkpoint directory (config.json + safetensors)")->required();
    app.add_option("--data", a.data, "training examples (.jsonl)")->required();
    app.add_option("--out", a.out, "run directory: head, record, training state")->required();
    auto* ho = app.add_option("--heldout", a.heldout, "held-out examples (.jsonl), evaluated after every epoch");
    app.add_option("--heldout-fraction", a.heldout_fraction,
                   "hold out this fraction of --data's images instead (seeded split by image)")
        ->check(CLI::Range(0.0, 1.0))
        ->excludes(ho);
    app.add_option("--epochs", a.opt.epochs, "passes over the training set")->capture_default_str();
    app.add_option("--batch", a.opt.batch, "examples per step (gradients averaged)")->capture_default_str();
    app.add_option("--lr", a.opt.lr, "peak learning rate")->capture_default_str();
    app.add_option("--warmup", a.opt.warmup, "warm-up steps (-1: 5% of the run)")->capture_default_str();
    app.add_option("--min-lr-ratio", a.opt.min_lr_ratio, "cosine floor, as a fraction of --lr")->capture_default_str();
    app.add_option("--weight-decay", a.opt.adam.weight_decay, "AdamW decoupled weight decay (matrices only)")
        ->capture_default_str();
    app.add_option("--clip", a.opt.clip, "global gradient-norm clip (0: off)")->capture_default_str();
    app.add_option("--feature-weight", a.opt.objective.feature_weight,
                   "weight of sum(delta^2)/sum(x^2), keeping the features close to the encoder's")
        ->capture_default_str();
    app.add_option("--boxes", a.boxes, "boxes trained on, comma-separated from person,object,union")
        ->capture_default_str();
    app.add_option("--seed", a.opt.seed, "example order (and --heldout-fraction's split)")->capture_default_str();
    app.add_option("--head-seed", a.head_seed, "seed of the untrained head the run starts from")->capture_default_str();
    app.add_option("--init", a.init,
                   "start from the head in this directory (a previous run, or a checkpoint holding a head) or "
                   ".safetensors file instead of a seeded head");
    app.add_option("--head-prefix,--head_prefix", a.init_prefix,
                   "the --init head's tensor prefix (default: found by structure)");
    app.add_option("--head-names,--head_names", a.init_names,
                   "JSON name map for an --init head whose leaves are named otherwise (docs/weights.md)");
    app.add_option("--save-every", a.opt.save_every, "checkpoint every N steps (also at every epoch's end)")
        ->capture_default_str();
    app.add_flag("--resume", a.resume, "continue the run in --out exactly where its last checkpoint left it");
    app.add_option("--on-bad-line", a.on_bad_line, "a line that cannot be used: skip it (reported) or reject the file")
        ->check(CLI::IsMember({"skip", "reject"}))
        ->capture_default_str();
    app.add_option("--stop-after", a.stop_after,
                   "checkpoint and stop after N steps of this invocation (0: run to the end)")
        ->check(CLI::NonNegativeNumber);
    backend.add_to(app, "cpu (default; the cuda backend has no backward ops yet)", false,
                   "CPU threads (default: all; resuming is bit-exact with the same count)");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Fine-tune the heatmap head of a Qwen2.5-VL / Qwen3-VL checkpoint on box-annotated images, the "
        "encoder frozen (objective: docs/training.md)."};
    train::run_options o;
    glimpse::app::backend_flags backend;
    add_flags(app, o, backend);
    if (const auto done = glimpse::app::parse(app, argc, argv, "glimpse-train")) return *done;
    o.command = glimpse::app::command_line(argc, argv, "glimpse-train");
    return glimpse::app::run("glimpse-train", [&] {
        return glimpse::with_training_backend(backend.spec(), "glimpse-train",
                                              [&](auto& be) { return train_on(be, o); });
    });
}
