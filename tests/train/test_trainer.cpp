// The trainer (train/trainer.hpp) on the tiny Qwen3-VL checkpoint and three of
// the bundled training images: the loss falls and the held-out mass rises;
// a run stopped at step k and resumed from its checkpoint gives the same loss
// curve and the same bits as an uninterrupted one (also after a simulated
// kill; on one thread, see one_thread); a crash inside a checkpoint write
// leaves the previous one intact.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/models/qwen_heatmap.hpp>
#include <glimpse/train/dataset.hpp>
#include <glimpse/train/feature_cache.hpp>
#include <glimpse/train/head_checkpoint.hpp>
#include <glimpse/train/trainer.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "temp_dir.hpp"
#include "test_util.hpp"

using namespace glimpse;
namespace fs = std::filesystem;
using Kind = heatmap::ln_gelu_tanh;

namespace {

// Four examples on two images, one held-out example on a third (bundled images).
struct problem {
    test::temp_dir dir{"trainer"};
    cpu be;
    models::qwen_encoder<cpu> enc;
    train::feature_cache<cpu> cache;
    train::dataset t, h;
    std::vector<train::train_sample> train_set() const { return cache.samples(t.examples, train::all_box_kinds); }
    std::vector<train::train_sample> heldout() const { return cache.samples(h.examples, train::all_box_kinds); }

    problem() : enc(models::qwen_encoder<cpu>::load(be, test::data_path("qwen3_vl_tiny"), {.load_trained = false})) {
        const std::string img = std::string(GLIMPSE_EXAMPLES_DATA_DIR) + "/train/images/";
        std::ofstream(dir / "t.jsonl")
            << "{\"image\": \"" << img
            << "astronaut_0_0_512x512_s625.jpg\", \"person_box\": [12.5, 9.375, 226.25, 320], "
               "\"object_box\": [172.5, 213.75, 320, 320]}\n"
            << "{\"image\": \"" << img
            << "astronaut_0_0_512x512_s625.jpg\", \"person_box\": [12.5, 9.375, 226.25, 320], "
               "\"object_box\": [0, 0, 59.375, 320]}\n"
            << "{\"image\": \"" << img
            << "cameraman_0_0_512x512_s625.jpg\", \"person_box\": [0, 38.75, 209.375, 320], "
               "\"object_box\": [155, 85, 207.5, 131.25]}\n"
            << "{\"image\": \"" << img
            << "cameraman_0_0_512x512_s625.jpg\", \"person_box\": [0, 38.75, 209.375, 320], "
               "\"object_box\": [142.5, 112.5, 256.25, 320]}\n";
        std::ofstream(dir / "h.jsonl") << "{\"image\": \"" << img
                                       << "astronaut_192_160_320x320_s1000.jpg\", \"person_box\": [0, 0, 170, 320], "
                                          "\"object_box\": [84, 182, 320, 320]}\n";
        t = train::load_dataset(dir / "t.jsonl", train::bad_line_policy::reject);
        h = train::load_dataset(dir / "h.jsonl", train::bad_line_policy::reject);
        cache.add(be, enc, t.examples);
        cache.add(be, enc, h.examples);
    }

    heatmap::heatmap_head<cpu, Kind> fresh_head() {
        return train::trainable_copy(be,
                                     std::get<heatmap::heatmap_integration<cpu, Kind>>(enc.head()).entries()[0].head);
    }
};

train::train_options options(std::int64_t epochs) {
    train::train_options o;
    o.epochs = epochs;
    o.batch = 2;  // 2 steps per epoch
    o.lr = 1e-2;
    o.seed = 3;
    return o;
}

const nlohmann::json base_record = {{"format", "glimpse_head"}, {"test", true}};

// Every parameter of two head files, bit for bit.
void require_same_head(const fs::path& a, const fs::path& b) {
    const safetensors_file fa(a / train::head_file_name), fb(b / train::head_file_name);
    REQUIRE(fa.entries().size() == fb.entries().size());
    for (const auto& e : fa.entries()) {
        INFO(e.name);
        REQUIRE(test::compare(fa.get(e.name), fb.get(e.name)).max_abs == 0);
    }
}

struct killed {};

// Bit-exact comparisons run on one thread: with several, the cpu backend's
// attention sums its per-thread pooled-map partials in an order set by dynamic
// scheduling, so even two uninterrupted runs differ at f32 rounding (~1e-7).
struct one_thread {
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    one_thread() { omp_set_num_threads(1); }
    ~one_thread() { omp_set_num_threads(saved); }
#endif
};  // thrown from a hook: the process "dies" there, writing nothing more

}  // namespace

TEST_CASE("trainer: the loss falls and the held-out mass in the box rises", "[train]") {
    const one_thread guard;  // faster at this size
    problem p;
    auto head = p.fresh_head();
    train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), options(6));
    REQUIRE(tr.total_steps() == 12);
    const auto before = tr.evaluate();
    const auto before_train = tr.evaluate(p.train_set());
    REQUIRE(tr.run(p.dir / "run", base_record));
    const auto after = tr.evaluate();
    const auto after_train = tr.evaluate(p.train_set());
    const auto& l = tr.losses();
    const double first = (l[0] + l[1]) / 2, last = (l[10] + l[11]) / 2;
    INFO("loss " << first << " -> " << last << "; held-out object mass " << before.mass[1] << " -> " << after.mass[1]
                 << "; training-set object mass " << before_train.mass[1] << " -> " << after_train.mass[1]);
    CHECK(last < 0.8 * first);
    for (std::size_t b = 0; b < 3; ++b) CHECK(after_train.mass[b] > before_train.mass[b]);
    CHECK(after.mass[1] > before.mass[1] + 0.05);

    // The record: one history entry per epoch plus the start, all three files there.
    const auto rec = train::load_record(p.dir / "run");
    CHECK(rec.at("test") == true);
    CHECK(rec.at("metrics").size() == 7);
    CHECK(rec.at("metrics")[0].at("train_loss").is_null());
    CHECK(rec.at("progress").at("step") == 12);
    CHECK(rec.at("progress").at("complete") == true);
    const auto st = train::load_train_state(p.dir / "run");
    CHECK(st.step == 12);
    CHECK(st.losses == l);
}

TEST_CASE("trainer: stopped at step k and resumed = uninterrupted, bit for bit", "[train]") {
    const one_thread guard;
    problem p;
    const auto opt = options(3);  // 6 steps
    std::vector<float> ref_losses;
    nlohmann::json ref_history;
    {
        auto head = p.fresh_head();
        train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), opt);
        REQUIRE(tr.run(p.dir / "full", base_record));
        ref_losses = tr.losses();
        ref_history = tr.history();
    }
    for (const std::int64_t k : {1, 3}) {  // mid-epoch and after an epoch's first step
        INFO("stopped after step " << k);
        const fs::path out = p.dir / ("stopped" + std::to_string(k));
        {
            auto head = p.fresh_head();
            train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), opt);
            train::run_hooks hooks;
            hooks.stop_requested = [&] { return tr.step() == k; };
            REQUIRE(!tr.run(out, base_record, hooks));
        }
        {
            auto head = p.fresh_head();  // a new process: nothing but the checkpoint
            train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), opt);
            const auto st = train::load_train_state(out);
            REQUIRE(st.step == k);
            tr.restore(st);
            REQUIRE(tr.run(out, base_record));
            CHECK(tr.losses() == ref_losses);
            CHECK(tr.history() == ref_history);
        }
        require_same_head(p.dir / "full", out);
    }
}

TEST_CASE("trainer: killed between checkpoints, it loses only the steps since the last one", "[train]") {
    const one_thread guard;
    problem p;
    auto opt = options(3);
    opt.save_every = 1;  // every step (and epoch ends)
    const fs::path out = p.dir / "killed";
    {
        auto head = p.fresh_head();
        train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), opt);
        train::run_hooks hooks;
        // Dies inside step 5's checkpoint, after the partial files are written and before any rename.
        hooks.on_save_stage = [&](std::string_view stage) {
            if (tr.step() == 5 && stage == "partial") throw killed{};
        };
        REQUIRE_THROWS_AS(tr.run(out, base_record, hooks), killed);
    }
    CHECK(fs::exists(out / (std::string(train::state_file_name) + ".partial")));  // the debris of the crash
    const auto st = train::load_train_state(out);
    CHECK(st.step == 4);  // the last complete checkpoint
    CHECK(train::load_record(out).at("progress").at("step") == 4);
    {
        const safetensors_file h(out / train::head_file_name);
        CHECK(h.metadata().at("glimpse_step") == "4");
    }
    auto head = p.fresh_head();
    train::trainer<cpu, Kind> tr(p.be, head, p.cache.images, p.train_set(), p.heldout(), opt);
    tr.restore(st);
    REQUIRE(tr.run(out, base_record));
    CHECK(!fs::exists(out / (std::string(train::state_file_name) + ".partial")));

    auto head2 = p.fresh_head();
    train::trainer<cpu, Kind> ref(p.be, head2, p.cache.images, p.train_set(), p.heldout(), opt);
    REQUIRE(ref.run(p.dir / "ref", base_record));
    CHECK(tr.losses() == ref.losses());
    require_same_head(p.dir / "ref", out);
}

TEST_CASE("checkpoint: a crash during the renames never mixes a new state with an old one", "[train]") {
    test::temp_dir d("ckpt");
    train::train_state st;
    st.names = {"heatmap_head.w"};
    st.params.push_back(tensor::from(shape{2}, std::vector<float>{1, 2}));
    st.exp_avg.push_back(tensor::from(shape{2}, std::vector<float>{0.1f, 0.2f}));
    st.exp_avg_sq.push_back(tensor::from(shape{2}, std::vector<float>{0.01f, 0.02f}));
    st.step = 1;
    st.losses = {0.5f};
    st.record = {{"progress", {{"step", 1}}}};
    train::save_checkpoint(d.path, st);

    // Step 2 dies after its state is renamed into place but before the head and record are.
    st.step = 2;
    st.losses.push_back(0.25f);
    st.params[0].set({0}, 9.0f);
    st.record["progress"]["step"] = 2;
    REQUIRE_THROWS_AS(train::save_checkpoint(d.path, st,
                                             [](std::string_view s) {
                                                 if (s == "renamed train_state.safetensors") throw killed{};
                                             }),
                      killed);
    // The state (the resume point) is the new one, whole; the head and record the old ones, whole.
    const auto back = train::load_train_state(d.path);
    CHECK(back.step == 2);
    CHECK(back.params[0].at({0}) == 9.0f);
    CHECK(back.record.at("progress").at("step") == 2);
    CHECK(train::load_record(d.path).at("progress").at("step") == 1);  // parses: never half-written
    const safetensors_file h(d.path / train::head_file_name);
    CHECK(h.get("heatmap_head.w").at({0}) == 1.0f);

    // A later save cleans up.
    train::save_checkpoint(d.path, st);
    CHECK(train::load_record(d.path).at("progress").at("step") == 2);
    for (const auto& e : fs::directory_iterator(d.path)) CHECK(e.path().extension() != ".partial");
}

TEST_CASE("checkpoint: a state that does not fit is refused with a message", "[train]") {
    test::temp_dir d("ckpt-bad");
    REQUIRE_THROWS_WITH(train::load_train_state(d.path), Catch::Contains("no such file"));
    save_safetensors(d / std::string(train::state_file_name), {{"param.a", tensor(shape{2}).cv()}},
                     {{"format", "glimpse_train_state"}, {"step", "0"}, {"record", "{}"}});
    REQUIRE_THROWS_WITH(train::load_train_state(d.path), Catch::Contains("has no 'exp_avg.a'"));
}
