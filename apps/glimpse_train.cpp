// glimpse-train: fine-tune the heatmap head of a Qwen2.5-VL / Qwen3-VL checkpoint
// on box-annotated images, the encoder frozen (docs/training.md).
//
//   glimpse-train --model DIR --data train.jsonl --out RUN_DIR
//                 [--heldout heldout.jsonl | --heldout-fraction F] [--epochs N] [--lr X] ...
//
// Writes into RUN_DIR: heatmap_head.safetensors (a head directory every glimpse
// tool loads), glimpse_head.json (what was trained, how, and the metrics) and
// train_state.safetensors (--resume). Progress on stderr, results on stdout.
// Exit codes: 0 done, 1 error (bad data under --on-bad-line reject: before
// anything is written), 130 stopped by SIGINT/SIGTERM after a checkpoint.

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <glimpse/core/progress.hpp>
#include <glimpse/glimpse.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/train/dataset.hpp>
#include <glimpse/train/feature_cache.hpp>
#include <glimpse/train/head_checkpoint.hpp>
#include <glimpse/train/trainer.hpp>

namespace {

namespace fs = std::filesystem;
namespace models = glimpse::models;
namespace train = glimpse::train;
using glimpse::cpu;

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

struct args {
    std::string model, data, out, heldout, init, init_prefix, init_names;
    double heldout_fraction = 0;
    train::train_options opt;
    std::string on_bad_line = "reject";
    std::string boxes = "person,object,union";
    std::string device = "cpu";
    std::uint64_t head_seed = 0;
    bool resume = false;
    std::int64_t stop_after = 0;
    std::string command;
};

std::vector<train::box_kind> parse_boxes(const std::string& s) {
    std::vector<train::box_kind> out;
    std::size_t p = 0;
    while (p <= s.size()) {
        const auto q = std::min(s.find(',', p), s.size());
        const std::string t = s.substr(p, q - p);
        bool found = false;
        for (const auto k : train::all_box_kinds)
            if (t == train::name(k)) {
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

std::string fmt3(const nlohmann::json& h, const char* what) {
    if (h.is_null()) return "(no held-out set)";
    // Records written before the quantity had its own name call it mass_in_box.
    const bool old = std::string(what) == "mass_on_box_patches" && !h.contains(what);
    const auto& m = h.at(old ? "mass_in_box" : what);
    char buf[128];
    std::snprintf(buf, sizeof buf, "person %.4f  object %.4f  union %.4f", m.at("person").get<double>(),
                  m.at("object").get<double>(), m.at("union").get<double>());
    return buf;
}

template <class Kind>
int train_kind(cpu& be, const args& a, const models::qwen_encoder<cpu>& enc, const train::dataset& data,
               std::vector<train::example> heldout, std::size_t skipped, std::optional<train::train_state> resume) {
    const auto& integ = std::get<glimpse::heatmap::heatmap_integration<cpu, Kind>>(enc.head());
    auto head = train::trainable_copy(be, integ.entries()[0].head);
    const auto& cfg = enc.config();
    const auto& hc = enc.head_config();

    // The frozen tower, once per image.
    const auto t_enc = std::chrono::steady_clock::now();
    train::feature_cache<cpu> cache;
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    const auto on_image = [&](std::size_t i, std::size_t n, const fs::path&) {
        if (tty) {
            std::fprintf(stderr, "\r\033[2Kencoding images %zu/%zu", i, n);
            if (i == n) std::fprintf(stderr, "\n");
        }
    };
    cache.add(be, enc, data.examples, on_image);
    cache.add(be, enc, heldout, on_image);
    const double enc_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_enc).count();
    auto train_samples = cache.samples(data.examples, a.opt.objective.boxes);
    auto held_samples = cache.samples(heldout, a.opt.objective.boxes);

    train::trainer<cpu, Kind> tr(be, head, cache.images, std::move(train_samples), std::move(held_samples), a.opt);

    // Everything the record says besides the trainer's own part.
    nlohmann::json base;
    base["format"] = "glimpse_head";
    base["version"] = 1;
    base["encoder"] = {{"family", std::string(models::name(cfg.family))},
                       {"model_dir", a.model},
                       {"depth", cfg.depth},
                       {"hidden_size", cfg.hidden_size},
                       {"num_heads", cfg.num_heads},
                       {"patch_size", cfg.patch_size},
                       {"spatial_merge_size", cfg.spatial_merge_size}};
    base["head"] = {{"file", std::string(train::head_file_name)},
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
    base["init"] = a.init.empty() ? nlohmann::json{{"from", "seeded"}, {"head_seed", a.head_seed}}
                                  : nlohmann::json{{"from", a.init}};
    base["data"] = {{"train", a.data},
                    {"heldout", a.heldout.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.heldout)},
                    {"heldout_fraction", a.heldout_fraction > 0 ? nlohmann::json(a.heldout_fraction) : nullptr},
                    {"on_bad_line", a.on_bad_line},
                    {"train_examples", tr.train_size()},
                    {"heldout_examples", tr.heldout_size()},
                    {"images_encoded", cache.images.size()},
                    {"skipped_lines", skipped}};
    base["command"] = a.command;

    if (resume) {
        // Same run or nothing: the schedule, the data order and the objective
        // must be those the checkpoint was made with.
        std::vector<std::string> diffs;
        const auto current = tr.state(base).record;
        for (const char* k : {"encoder", "head", "integration", "init", "data", "objective", "hyperparameters"}) {
            nlohmann::json was = resume->record.value(k, nlohmann::json(nullptr)), now = current.at(k);
            if (std::string(k) == "hyperparameters") {
                if (was.is_object()) was.erase("save_every");
                now.erase("save_every");
            }
            train::json_diff(was, now, k, diffs);
        }
        if (!diffs.empty()) {
            std::string msg = "--resume: this is not the run in '" + a.out + "' (checkpoint vs now):";
            for (const auto& d : diffs) msg += "\n  " + d;
            msg += "\nresume with the same arguments, or start a new run (--init " + a.out +
                   " fine-tunes its head further)";
            throw glimpse::error(msg);
        }
        tr.restore(*resume);
    }

    std::printf("glimpse %s: train the heatmap head (backend: cpu, kernels %s, encoder frozen)\n",
                GLIMPSE_VERSION_STRING, glimpse::describe_cpu_isa(be.isa()).c_str());
    std::printf("  model    %s (%s, depth %lld, D=%lld)\n", a.model.c_str(),
                std::string(models::name(cfg.family)).c_str(), static_cast<long long>(cfg.depth),
                static_cast<long long>(cfg.hidden_size));
    std::printf("  head     %s, D=%lld, H=%lld, I=%lld, RoPE %s; start: %s\n",
                base["head"]["kind"].get<std::string>().c_str(), static_cast<long long>(hc.dim),
                static_cast<long long>(hc.heads), static_cast<long long>(hc.intermediate), hc.rope ? "on" : "off",
                enc.head_source().c_str());
    std::printf("  data     %zu training examples, %zu held out, %zu images encoded in %.1f s%s\n", tr.train_size(),
                tr.heldout_size(), cache.images.size(), enc_s,
                skipped ? (", " + std::to_string(skipped) + " bad lines skipped").c_str() : "");
    std::printf(
        "  run      %lld epochs x %lld steps (batch %lld) = %lld steps, lr %g (warm-up %lld, cosine), "
        "weight decay %g, clip %g, feature weight %g, seed %llu\n",
        static_cast<long long>(a.opt.epochs), static_cast<long long>(tr.steps_per_epoch()),
        static_cast<long long>(a.opt.batch), static_cast<long long>(tr.total_steps()), a.opt.lr,
        static_cast<long long>(tr.schedule().warmup), a.opt.adam.weight_decay, a.opt.clip,
        a.opt.objective.feature_weight, static_cast<unsigned long long>(a.opt.seed));
    if (resume) std::printf("  resume   from step %lld of %s\n", static_cast<long long>(tr.step()), a.out.c_str());
    std::fflush(stdout);

    glimpse::progress_line bar(stderr, tty, tr.total_steps(), "step", tr.step());
    const std::int64_t start = tr.step();
    train::run_hooks hooks;
    hooks.on_step = [&](const train::step_report& r) {
        char loss[64];
        std::snprintf(loss, sizeof loss, "loss %.4f  lr %.1e", r.loss, r.lr);
        bar.update(r.step, "epoch " + std::to_string(r.epoch + 1) + "/" + std::to_string(a.opt.epochs) + "  ", loss);
    };
    hooks.on_epoch = [&](const nlohmann::json& e) {
        char buf[64] = "";
        if (!e.at("train_loss").is_null())
            std::snprintf(buf, sizeof buf, "train loss %.4f, ", e.at("train_loss").get<double>());
        bar.note(
            "epoch " + std::to_string(e.at("epoch").get<long long>()) + ": " + buf +
            "held-out mass on the box's patches: " + fmt3(e.at("heldout"), "mass_on_box_patches") +
            (e.at("heldout").is_null()
                 ? std::string()
                 : "  (feature change " + std::to_string(e.at("heldout").at("feature_change").get<double>()) + ")"));
    };
    hooks.stop_requested = [&] { return g_stop != 0 || (a.stop_after > 0 && tr.step() - start >= a.stop_after); };
    const bool complete = tr.run(a.out, base, hooks);
    bar.finish();

    const auto& hist = tr.history();
    const double secs = bar.elapsed_s();
    std::printf("  trained  steps %lld..%lld in %.1f s (%.1f steps/s)\n", static_cast<long long>(start),
                static_cast<long long>(tr.step()), secs,
                secs > 0 ? static_cast<double>(tr.step() - start) / secs : 0.0);
    if (!hist.empty() && !hist.front().at("heldout").is_null()) {
        // The objective's m: each patch the box touches counted whole (glimpse-compare's
        // "mass in box" weighs a patch by the box's coverage of it, so it is a little lower).
        std::printf("  held-out mass on the box's patches, before: %s\n",
                    fmt3(hist.front().at("heldout"), "mass_on_box_patches").c_str());
        std::printf("                                      after:  %s\n",
                    fmt3(hist.back().at("heldout"), "mass_on_box_patches").c_str());
        std::printf("                         (uniform attention:  %s)\n",
                    fmt3(hist.front().at("heldout"), "uniform").c_str());
    }
    std::printf("  wrote    %s/{%s, %s, %s} at step %lld\n", a.out.c_str(), std::string(train::head_file_name).c_str(),
                std::string(train::record_file_name).c_str(), std::string(train::state_file_name).c_str(),
                static_cast<long long>(tr.step()));
    if (!complete) {
        std::printf("  stopped  before the end; continue with the same command and --resume\n");
        return g_stop ? 130 : 0;
    }
    return 0;
}

int run(args& a) {
    // The trainer needs a TrainingBackend (the four backward ops): only cpu has them, so a
    // cuda request is refused here rather than quietly trained on the cpu.
    if (const auto dev = glimpse::parse_device(a.device); dev.kind != glimpse::device_spec::kind_t::cpu)
        glimpse::detail::fail("--device ", dev.str(),
                              ": glimpse-train runs on the cpu only (the cuda backend has no backward ops yet)");
    cpu be;
    const auto policy = a.on_bad_line == "skip" ? train::bad_line_policy::skip : train::bad_line_policy::reject;
    a.opt.objective.boxes = parse_boxes(a.boxes);
    a.opt.validate();

    // Everything the user typed is checked before anything slow or anything written.
    const bool have = train::has_checkpoint(a.out);
    if (a.resume && !have)
        glimpse::detail::fail("--resume: '", a.out, "' holds no checkpoint (", std::string(train::state_file_name),
                              ")");
    if (!a.resume && have)
        glimpse::detail::fail("--out '", a.out,
                              "' already holds a training run; add --resume to continue it, or "
                              "choose another directory");
    train::dataset data = train::load_dataset(a.data, policy);
    std::vector<train::example> heldout;
    std::size_t skipped = data.bad.size();
    for (const auto& b : data.bad) std::fprintf(stderr, "glimpse-train: skipping %s\n", b.str().c_str());
    if (!a.heldout.empty()) {
        train::dataset h = train::load_dataset(a.heldout, policy);
        for (const auto& b : h.bad) std::fprintf(stderr, "glimpse-train: skipping %s\n", b.str().c_str());
        skipped += h.bad.size();
        heldout = std::move(h.examples);
    } else if (a.heldout_fraction > 0) {
        heldout = train::split_heldout(data, a.heldout_fraction, a.opt.seed);
    } else {
        std::fprintf(stderr,
                     "glimpse-train: no held-out set (--heldout or --heldout-fraction): the metrics will be "
                     "missing\n");
    }
    std::optional<train::train_state> resume;
    if (a.resume) resume = train::load_train_state(a.out);

    models::qwen_head_options ho;
    ho.seed = a.head_seed;
    ho.load_trained = false;  // the base model's own heatmap_head.* is not the start unless --init says so
    glimpse::detail::check(!a.init.empty() || (a.init_prefix.empty() && a.init_names.empty()),
                           "--head-prefix and --head-names say where the --init head is: give --init too");
    if (!a.init.empty()) ho.head_dir = a.init;
    ho.prefix = a.init_prefix;
    if (!a.init_names.empty()) ho.names = models::head_name_map::from_json(a.init_names);
    const auto enc = models::qwen_encoder<cpu>::load(be, a.model, ho);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (enc.family() == models::qwen_family::qwen2_5_vl)
        return train_kind<glimpse::heatmap::rms_swiglu>(be, a, enc, data, std::move(heldout), skipped,
                                                        std::move(resume));
    return train_kind<glimpse::heatmap::ln_gelu_tanh>(be, a, enc, data, std::move(heldout), skipped, std::move(resume));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Fine-tune the heatmap head of a Qwen2.5-VL / Qwen3-VL checkpoint on box-annotated images, the "
        "encoder frozen (objective: docs/training.md)."};
    app.footer(
        "Example (the bundled fine-tune, about a minute on 2 cores):\n"
        "  glimpse-train --model tests/data/qwen3_vl_tiny --data examples/data/train/train.jsonl \\\n"
        "      --heldout examples/data/train/heldout.jsonl --out /tmp/run\n"
        "Data: one JSON object per line, {\"image\": PATH, \"person_box\": [x1,y1,x2,y2], \"object_box\": [...]},\n"
        "boxes in pixels of the original image, PATH relative to the .jsonl's directory.\n"
        "Interrupted (Ctrl-C) or killed: rerun the same command with --resume.");
    args a;
    int threads = 0;
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
                   "checkpoint and stop after N steps of this invocation (0: run to "
                   "the end)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--device", a.device, "cpu (the only device training runs on for now)")->capture_default_str();
    app.add_option("--threads", threads, "CPU threads (default: all; resuming is bit-exact with the same count)")
        ->check(CLI::PositiveNumber);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "glimpse-train: %s\n", e.what());
        return 1;
    }
    for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(i ? argv[i] : "glimpse-train");
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#endif
    try {
        return run(a);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "glimpse-train: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "glimpse-train: unknown error\n");
    }
    return 1;
}
