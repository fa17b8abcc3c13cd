// qwen_encoder (models/qwen_heatmap.hpp) and glimpse-encode on the tiny
// checkpoints: a box in pixels lands on exactly its patches, reaches the head
// in the tower's token order, the head's maps come back in raster order,
// heatmap_head.* is loaded when present, and the CLI fails cleanly.

#include <catch2/catch.hpp>
#include <limits>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

#ifndef GLIMPSE_ENCODE_EXE
#define GLIMPSE_ENCODE_EXE ""
#endif

using namespace glimpse;
#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

using glimpse::test::read_file;

const std::string kQ25 = test::data_path("qwen2_5_vl_tiny");
const std::string kQ3 = test::data_path("qwen3_vl_tiny");
const std::string kWide = test::data_path("images/wide_67x203.png");
const std::string kTall = test::data_path("images/tall_240x90.png");

using glimpse::test::temp_dir;

// Records the heatmap the tower hands to the policy at the site before the merger.
struct recording_policy {
    mutable std::vector<float> seen;
    mutable std::int64_t rows = 0;
    bool applies_at(const heatmap::site& s) const { return s == heatmap::site::before_merger(); }
    void apply(cpu& be, const heatmap::site&, const view& x, const heatmap::integration_context<cpu>& ctx) const {
        REQUIRE(ctx.heatmaps.size() == 1);
        const tensor h = be.download(ctx.heatmaps[0]).to(dtype::f32);
        seen.assign(h.ptr<float>(), h.ptr<float>() + h.numel());
        rows = x.size(0);
    }
};

// The box covering patch rows [r0, r1) and columns [c0, c1) of the grid, in
// pixels of the original image (each patch spans W / gw x H / gh there).
heatmap::box patch_box(const image_u8& im, std::int64_t gh, std::int64_t gw, std::int64_t r0, std::int64_t c0,
                       std::int64_t r1, std::int64_t c1) {
    const double pw = static_cast<double>(im.width) / static_cast<double>(gw),
                 ph = static_cast<double>(im.height) / static_cast<double>(gh);
    return {static_cast<double>(c0) * pw, static_cast<double>(r0) * ph, static_cast<double>(c1) * pw,
            static_cast<double>(r1) * ph};
}

void check_box_lands_on_patches(const std::string& dir, const std::string& image) {
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, dir);
    const image_u8 im = load_image(image);
    REQUIRE(im.width != im.height);
    const auto px = enc.preprocess(im);
    const auto [gt, gh, gw] = px.grid_thw[0];
    REQUIRE(gt == 1);
    REQUIRE(gh != gw);
    const std::int64_t S = gh * gw, r0 = 1, r1 = gh - 1, c0 = 2, c1 = gw / 2 + 1;
    const heatmap::box b = patch_box(im, gh, gw, r0, c0, r1, c1);
    INFO(dir << ": grid " << gh << "x" << gw << ", box patches rows [" << r0 << "," << r1 << ") cols [" << c0 << ","
             << c1 << ")");

    // 1. Raster heatmap: exactly the box's patches at 1, every other at 0.
    const tensor h = models::box_to_heatmap(b, im.width, im.height, px.grid_thw[0]);
    REQUIRE(h.numel() == S);
    for (std::int64_t r = 0; r < gh; ++r)
        for (std::int64_t c = 0; c < gw; ++c) {
            const float v = h.ptr<float>()[r * gw + c];
            const bool in = r >= r0 && r < r1 && c >= c0 && c < c1;
            INFO("patch (" << r << ", " << c << ")");
            if (in)
                REQUIRE(v == Approx(1.0f).margin(1e-6));  // (c+1)pw - c pw may be off by an ulp of pw
            else
                REQUIRE(v == 0.0f);
        }
    // And the same box scaled to the resized image covers the same patches of p pixels there.
    const auto [h2, w2] = px.resized_hw[0];
    const tensor h_resized =
        heatmap::box_heatmap({b.x1 * static_cast<double>(w2) / im.width, b.y1 * static_cast<double>(h2) / im.height,
                              b.x2 * static_cast<double>(w2) / im.width, b.y2 * static_cast<double>(h2) / im.height},
                             static_cast<double>(w2), static_cast<double>(h2), gh, gw);
    GLIMPSE_REQUIRE_CLOSE(h_resized.cv(), h.cv(), 1e-6);

    // 2. What reaches the head is the raster heatmap permuted into the tower's
    // order at the site, checked against the closed forms of the orders.
    recording_policy rec;
    models::encode_inputs<cpu> extra;
    extra.heatmaps = {h.cv()};
    (void)enc.encode_with(be, px, rec, extra);
    REQUIRE(rec.rows == S);
    REQUIRE(static_cast<std::int64_t>(rec.seen.size()) == S);
    const auto& cfg = enc.config();
    for (std::int64_t r = 0; r < gh; ++r)
        for (std::int64_t c = 0; c < gw; ++c) {
            const std::int64_t t = cfg.family == models::qwen_family::qwen2_5_vl
                                       ? models::idx_window(r, c, gh, gw, cfg.window_merged(), cfg.spatial_merge_size)
                                       : models::idx_merge_block(r, c, gw, cfg.spatial_merge_size);
            REQUIRE(rec.seen[static_cast<std::size_t>(t)] == h.ptr<float>()[r * gw + c]);
        }

    // 3. The head's maps in raster order: each head's map and the mean sum to 1,
    // the heads average to the mean, and the mass is the mean's sum over the box.
    const auto res = enc.encode_box(be, px, b, im.width, im.height);
    REQUIRE(res.attention.has_value());
    const auto& a = *res.attention;
    const std::int64_t H = enc.head_config().heads;
    REQUIRE(a.per_head.shape() == shape{H, gh, gw});
    REQUIRE(a.mean.shape() == shape{gh, gw});
    REQUIRE(a.in_box_count == (r1 - r0) * (c1 - c0));
    double total = 0, in_box = 0, weighted = 0;
    for (std::int64_t i = 0; i < S; ++i) {
        double avg = 0;
        for (std::int64_t k = 0; k < H; ++k) avg += a.per_head.ptr<float>()[k * S + i];
        REQUIRE(a.mean.ptr<float>()[i] == Approx(avg / static_cast<double>(H)).margin(1e-7));
        total += a.mean.ptr<float>()[i];
        if (a.in_box[static_cast<std::size_t>(i)]) in_box += a.mean.ptr<float>()[i];
        weighted += static_cast<double>(a.mean.ptr<float>()[i]) * h.ptr<float>()[i];
        REQUIRE(a.in_box[static_cast<std::size_t>(i)] == (h.ptr<float>()[i] > 0.5f ? 1 : 0));
    }
    CHECK(total == Approx(1.0).epsilon(1e-5));
    CHECK(a.mass_on_box_patches == Approx(in_box).epsilon(1e-9));
    CHECK(a.mass_in_box == Approx(weighted).epsilon(1e-9));  // the heatmap-weighted mass
    for (std::int64_t k = 0; k < H; ++k) {
        double s = 0;
        for (std::int64_t i = 0; i < S; ++i) s += a.per_head.ptr<float>()[k * S + i];
        CHECK(s == Approx(1.0).epsilon(1e-5));
    }

    // 4. Feature shapes: pre-merger rows per patch, merged rows per m x m block.
    CHECK(res.features.hidden.shape() == shape{S, cfg.hidden_size});
    CHECK(res.features.merged.shape() == shape{S / cfg.merge_group(), cfg.out_hidden_size});
}

}  // namespace

namespace {

// encode_site + attend (the tower once, the head per heatmap) gives encode()'s maps.
void check_site_reuse(const std::string& dir) {
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, dir, {.seed = 7});
    const image_u8 im = load_image(kWide);
    const auto px = enc.preprocess(im);
    const auto f = enc.encode_site(be, px);
    const std::int64_t S = f.grid[1] * f.grid[2];
    REQUIRE(f.x.shape() == shape{S, enc.config().hidden_size});
    for (const heatmap::box b : {heatmap::box{20, 10, 90, 50}, heatmap::box{0, 0, 30, 30}}) {
        const tensor h = models::box_to_heatmap(b, im.width, im.height, f.grid);
        const auto full = enc.encode(be, px, h.cv());
        cpu::tensor delta;
        const auto a = enc.attend(be, f, h.cv(), {}, &delta);
        GLIMPSE_REQUIRE_CLOSE(a.mean.cv(), full.attention->mean.cv(), 1e-6);
        GLIMPSE_REQUIRE_CLOSE(a.per_head.cv(), full.attention->per_head.cv(), 1e-6);
        CHECK(a.mass_in_box == Approx(full.attention->mass_in_box).margin(1e-6));
        CHECK(delta.shape() == shape{S, enc.config().hidden_size});
    }
    tensor bad(shape{S});
    bad.ptr<float>()[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(enc.attend(be, f, bad.cv()), Catch::Contains("not finite"));
    CHECK_THROWS_WITH(enc.attend(be, f, tensor(shape{S}).cv()), Catch::Contains("no query patch"));
    CHECK_THROWS_WITH(enc.attend(be, f, tensor(shape{S + 1}).cv()), Catch::Contains("values for"));
}

}  // namespace

TEST_CASE("qwen encoder: site features computed once serve several heatmaps", "[models][heatmap]") {
    SECTION("qwen2.5-vl") { check_site_reuse(kQ25); }
    SECTION("qwen3-vl") { check_site_reuse(kQ3); }
}

TEST_CASE("qwen encoder: a box in pixels lands on exactly its patches (qwen2.5-vl, non-square)", "[models][heatmap]") {
    check_box_lands_on_patches(kQ25, kWide);
    check_box_lands_on_patches(kQ25, kTall);
}

TEST_CASE("qwen encoder: a box in pixels lands on exactly its patches (qwen3-vl, non-square)", "[models][heatmap]") {
    check_box_lands_on_patches(kQ3, kWide);
    check_box_lands_on_patches(kQ3, kTall);
}

namespace {

// Writes the head of a seeded encoder as heatmap_head.* and checks that an
// encoder loading them gives the seeded encoder's results exactly.
void check_head_loading(const std::string& dir, bool into_model_file) {
    cpu be;
    temp_dir tmp("head");
    fs::copy_file(fs::path(dir) / "config.json", tmp.path / "config.json");
    const auto seeded = models::qwen_encoder<cpu>::load(be, dir, {.seed = 123});
    CHECK_FALSE(seeded.head_trained());
    CHECK(seeded.head_source().find("untrained") != std::string::npos);

    std::vector<tensor> keep;
    std::vector<std::pair<std::string, cview>> tensors;
    std::visit(
        [&](const auto& h) {
            h.visit([&](const std::string& n, const auto& t) {
                keep.push_back(be.download(t.cv()));
                tensors.emplace_back(n, keep.back().cv());
            });
        },
        seeded.head());
    REQUIRE(!tensors.empty());
    for (std::size_t i = 0; i < tensors.size(); ++i) tensors[i].second = keep[i].cv();  // after the last push_back
    const safetensors_file model(fs::path(dir) / "model.safetensors");
    if (into_model_file) {
        std::vector<tensor> weights;
        for (const auto& e : model.entries()) weights.push_back(model.load(e.name));
        for (std::size_t i = 0; i < weights.size(); ++i) tensors.emplace_back(model.entries()[i].name, weights[i].cv());
        save_safetensors(tmp.path / "model.safetensors", tensors);
    } else {
        fs::copy_file(fs::path(dir) / "model.safetensors", tmp.path / "model.safetensors");
        save_safetensors(tmp.path / "heatmap_head.safetensors", tensors);
    }

    const auto trained = models::qwen_encoder<cpu>::load(be, tmp.path);  // seed 0, but the file wins
    CHECK(trained.head_trained());
    CHECK(trained.head_source().find("'heatmap_head.*' in ") != std::string::npos);
    const auto other = models::qwen_encoder<cpu>::load(be, dir);  // seed 0
    const auto ignored = models::qwen_encoder<cpu>::load(be, tmp.path, {.seed = 5, .load_trained = false});
    CHECK_FALSE(ignored.head_trained());

    const image_u8 im = load_image(kWide);
    const auto px = trained.preprocess(im);
    const heatmap::box b{20, 10, 90, 50};
    const auto r_trained = trained.encode_box(be, px, b, im.width, im.height);
    const auto r_seeded = seeded.encode_box(be, px, b, im.width, im.height);
    const auto r_other = other.encode_box(be, px, b, im.width, im.height);
    // Same weights, same inputs; not bit-exact only because the threaded
    // attention may sum its per-thread partial maps in another order.
    GLIMPSE_REQUIRE_CLOSE(r_trained.features.merged.cv(), r_seeded.features.merged.cv(), 1e-6);
    GLIMPSE_REQUIRE_CLOSE(r_trained.attention->mean.cv(), r_seeded.attention->mean.cv(), 1e-6);
    CHECK(test::compare(r_other.features.merged.cv(), r_seeded.features.merged.cv()).rel() > 1e-4);

    // A head-only directory (glimpse-train's output) beside the plain model wins over the
    // model directory's own head; one without the file is an error naming it.
    if (!into_model_file) {
        const auto from_dir = models::qwen_encoder<cpu>::load(be, dir, {.head_dir = tmp.path});
        CHECK(from_dir.head_trained());
        const auto r_dir = from_dir.encode_box(be, px, b, im.width, im.height);
        GLIMPSE_REQUIRE_CLOSE(r_dir.attention->mean.cv(), r_seeded.attention->mean.cv(), 1e-6);
        temp_dir empty("head-empty");
        try {
            (void)models::qwen_encoder<cpu>::load(be, dir, {.head_dir = empty.path});
            FAIL("an empty head directory loaded");
        } catch (const glimpse::error& e) {
            CHECK(std::string(e.what()).find("heatmap_head.safetensors") != std::string::npos);
        }
    }

    // A half-written head is an error naming the missing tensor, not a silent seeded one.
    if (!into_model_file) {
        tensors.pop_back();
        save_safetensors(tmp.path / "heatmap_head.safetensors", tensors);
        try {
            (void)models::qwen_encoder<cpu>::load(be, tmp.path);
            FAIL("a head with a missing tensor loaded");
        } catch (const glimpse::error& e) {
            CHECK(std::string(e.what()).find("heatmap_head.") != std::string::npos);
        }
    }
}

}  // namespace

TEST_CASE("qwen encoder: heatmap_head.* in the checkpoint dir is loaded, else a seeded head", "[models][heatmap]") {
    SECTION("qwen2.5-vl, own file") { check_head_loading(kQ25, false); }
    SECTION("qwen2.5-vl, in model.safetensors") { check_head_loading(kQ25, true); }
    SECTION("qwen3-vl, own file") { check_head_loading(kQ3, false); }
    SECTION("qwen3-vl, in model.safetensors") { check_head_loading(kQ3, true); }
}

namespace {}  // namespace

TEST_CASE("glimpse-encode end to end on the tiny checkpoints, and its errors", "[models][heatmap][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_ENCODE_EXE);
    const std::string exe = GLIMPSE_ENCODE_EXE;
    temp_dir dir("cli");
    const auto q = [](const std::string& s) { return "'" + s + "'"; };
    const auto run = [&](const std::string& args) {
        const std::string cmd = q(exe) + " " + args + " >" + q((dir.path / "out.txt").string()) + " 2>" +
                                q((dir.path / "err.txt").string());
        const int status = std::system(cmd.c_str());
        REQUIRE(WIFEXITED(status));
        return WEXITSTATUS(status);
    };
    const fs::path out = dir.path / "f.safetensors";
    const std::string o = " --out " + q(out.string());

    for (const auto& model : {kQ25, kQ3}) {
        INFO(model);
        REQUIRE(run("--model " + q(model) + " --image " + q(kWide) + " --heatmap-box 20 10 120 50 --threads 2" + o) ==
                0);
        const std::string text = read_file(dir.path / "out.txt");
        INFO(text);
        CHECK(text.find("resized") != std::string::npos);
        CHECK(text.find("grid_thw [1, ") != std::string::npos);
        CHECK(text.find("merged tokens") != std::string::npos);
        CHECK(text.find("untrained") != std::string::npos);
        CHECK(text.find("attention mass inside the box") != std::string::npos);
        CHECK(text.find("timings  load") != std::string::npos);
        // Where the encode's time went, in transformers' stage names (core/stage_clock.hpp).
        for (const char* stage : {"stages   patch_embed ", "attn.core ", "mlp ", "merger(s) ", "other "})
            CHECK(text.find(stage) != std::string::npos);
        const safetensors_file f(out);
        for (const char* n : {"hidden", "merged", "heatmap", "attention.mean", "attention.per_head"})
            CHECK(f.contains(n));
        CHECK(f.contains("deepstack.0") == (model == kQ3));
        fs::remove(out);

        // Without a box: features only.
        REQUIRE(run("--model " + q(model) + " --image " + q(kTall) + o) == 0);
        const safetensors_file g(out);
        CHECK(g.contains("merged"));
        CHECK_FALSE(g.contains("attention.mean"));
        fs::remove(out);
    }

    const auto expect_failure = [&](const std::string& args, const std::string& needle) {
        INFO(args);
        REQUIRE(run(args + o) == 1);
        const std::string err = read_file(dir.path / "err.txt");
        INFO(err);
        CHECK(err.rfind("glimpse-encode: ", 0) == 0);
        CHECK(std::count(err.begin(), err.end(), '\n') == 1);
        CHECK(err.find(needle) != std::string::npos);
        CHECK_FALSE(fs::exists(out));
    };
    expect_failure("--model " + q(kQ25) + " --image " + q((dir.path / "missing.png").string()), "no such file");
    expect_failure("--model " + q(kQ25) + " --image " + q(kWide) + " --heatmap-box 10 10 300 50", "outside");
    expect_failure("--model " + q(kQ3) + " --image " + q(kWide) + " --heatmap-box 80 10 20 50", "inverted");
    expect_failure("--model " + q((dir.path / "nomodel").string()) + " --image " + q(kWide), "no such directory");
    expect_failure("--model " + q(kQ25) + " --image " + q(kWide) + " --heatmap-box 1 2 3", "heatmap-box");
}

// A head after an inner block (block 1 of Qwen3's 4, residual) against PyTorch: the same head
// as a forward hook on transformers' visual.blocks[1] (tools/make_compare_fixtures.py,
// inner_head_expected.safetensors). Blocks 2-3, the deepstack taps (block 1's sees the head's
// output) and the merger all run on what the head added. Measured 2026-12-02 (Zen 5):
// hidden 4.4e-7, merged 5.4e-7, deepstack 6.0-9.5e-7 of max |ref|; held to kF32Deep. Without
// the head, merged is 3.3e-1 off (fixture metadata), so a head at the wrong site, or one whose
// output the later blocks do not see, fails.
TEST_CASE("a head after an inner block: the rest of the tower sees it, as in PyTorch", "[models][qwen][fixture]") {
    cpu be;
    const test::fixture fx("inner_head_expected.safetensors");
    const auto enc = models::qwen_encoder<cpu>::load(be, kQ3);
    const auto& cfg = enc.config();
    const safetensors_file head_file(test::data_path("compare_head/heatmap_head.safetensors"));
    heatmap::heatmap_integration<cpu, nn::ln_gelu_tanh> policy;
    // The reference head's RoPE: VisionRotary(D / H), theta 10000, on each token's (row, col).
    const heatmap::head_config hc{cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, true, 10000.0f, 1e-6f};
    policy.add_loaded(be, head_file,
                      heatmap::binding{heatmap::site::after_block(1), heatmap::combine_mode::residual, 0}, hc, 0, 1);
    const auto px = enc.preprocess(load_image(kTall));
    models::encode_inputs<cpu> extra;
    const tensor hm = fx.file.load("heatmap.person").to(dtype::f32);
    extra.heatmaps = {hm.cv().reshape(shape{hm.numel()})};  // raster order, one value per patch
    const auto out = enc.encode_with(be, px, policy, extra);
    GLIMPSE_REQUIRE_CLOSE(out.hidden.cv(), fx["hidden"], test::kF32Deep);
    GLIMPSE_REQUIRE_CLOSE(out.merged.cv(), fx["merged"], test::kF32Deep);
    REQUIRE(out.deepstack.size() == 2);
    GLIMPSE_REQUIRE_CLOSE(out.deepstack[0].cv(), fx["deepstack.0"], test::kF32Deep);
    GLIMPSE_REQUIRE_CLOSE(out.deepstack[1].cv(), fx["deepstack.1"], test::kF32Deep);
    // The same head after the last block instead: the tower's output is far from this truth.
    heatmap::heatmap_integration<cpu, nn::ln_gelu_tanh> late;
    late.add_loaded(be, head_file, heatmap::binding{heatmap::site::after_block(3), heatmap::combine_mode::residual, 0},
                    hc, 0, 1);
    const auto other = enc.encode_with(be, px, late, extra);
    CHECK(test::compare(other.merged.cv(), fx["merged"]).rel() > 1e-2);
}
