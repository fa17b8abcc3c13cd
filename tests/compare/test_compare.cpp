// glimpse-compare and glimpse::compare: the head's K/V cache, box-to-patch
// mapping at the image edges, attention maps against the PyTorch reference
// (tools/make_compare_fixtures.py), statistics, the tool's outputs and every
// bad input of issue 6, grounding and batch mode with resume.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <stb/stb_image.h>
#include <nlohmann/json.hpp>

#include <glimpse/analysis/attention_stats.hpp>
#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/compare/attention_comparison.hpp>
#include <glimpse/compare/batch.hpp>
#include <glimpse/heatmap/head_block.hpp>
#include <glimpse/models/qwen_heatmap.hpp>

#include "temp_dir.hpp"
#include "test_files.hpp"
#include "test_skip.hpp"
#include "test_util.hpp"

using namespace glimpse;
namespace fs = std::filesystem;

namespace {

using glimpse::test::read_file;

const std::string kTiny = test::data_path("qwen3_vl_tiny");
const std::string kHead = test::data_path("compare_head");
const std::string kTall = test::data_path("images/tall_240x90.png");
const std::string kSquare = test::data_path("images/square_100x100.png");

heatmap::box fixture_box(const test::fixture& f, const std::string& name) {
    const auto v = nlohmann::json::parse(f.s("box." + name));
    return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>(), v[3].get<double>()};
}

std::span<const float> span_of(const tensor& t) { return {t.ptr<float>(), static_cast<std::size_t>(t.numel())}; }

}  // namespace

TEST_CASE("head K/V cache: forward on prepared K/V equals forward, every path, maps included", "[compare][heatmap]") {
    cpu be;
    for (const bool rope : {false, true}) {
        INFO("rope " << rope);
        rng g(7);
        const heatmap::head_config cfg{32, 4, 48, rope, 10000.0f, 1e-6f};
        const auto head = heatmap::heatmap_head<cpu, heatmap::ln_gelu_tanh>::init(be, cfg, g);
        const std::int64_t S = 24;
        const tensor x = test::randn(shape{S, 32}, 11);
        std::vector<nn::patch_pos> pos;
        for (std::int64_t i = 0; i < S; ++i) pos.push_back({i / 6, i % 6});
        auto [cs, sn] = nn::vision_rotary{8, 10000.0f}.cos_sin(pos);
        const auto xd = be.upload(x.cv()), cd = be.upload(cs.cv()), sd = be.upload(sn.cv());
        const heatmap::head_inputs base{xd.cv(), cview{}, rope ? cd.cv() : cview{}, rope ? sd.cv() : cview{}};
        const auto kv = head.prepare(be, base);
        tensor qw(shape{1, S});
        for (std::int64_t i = 0; i < S; ++i) qw.ptr<float>()[i] = i < 10 ? 0.1f : 0.0f;
        const auto qwd = be.upload(qw.cv());
        heatmap::maps_request req;
        req.query_weights = qwd.cv();
        req.mean = true;
        // Three heatmaps on the same K/V: a box, a soft map, a uniform one.
        for (int h = 0; h < 3; ++h) {
            tensor hm(shape{S});
            for (std::int64_t i = 0; i < S; ++i)
                hm.ptr<float>()[i] = h == 0 ? (i < 10 ? 1.0f : 0.0f) : h == 1 ? static_cast<float>(i % 5) / 4 : 1.0f;
            const auto hd = be.upload(hm.cv());
            heatmap::head_inputs in = base;
            in.heatmap = hd.cv();
            for (const auto path : {heatmap::head_path::automatic, heatmap::head_path::generic,
                                    heatmap::head_path::dedup, heatmap::head_path::folded}) {
                if (rope && path != heatmap::head_path::automatic && path != heatmap::head_path::generic) continue;
                heatmap::head_maps<cpu> m1, m2;
                const auto d1 = head.delta(be, in, req, &m1, heatmap::head_path::generic);
                const auto d2 = head.delta(be, kv, hd.cv(), req, &m2, path);
                INFO("heatmap " << h << " path " << heatmap::name(path));
                GLIMPSE_REQUIRE_CLOSE(d2.cv(), d1.cv(), test::kF32Op);
                GLIMPSE_REQUIRE_CLOSE(m2.pooled.cv(), m1.pooled.cv(), test::kF32Rel);
                GLIMPSE_REQUIRE_CLOSE(m2.mean.cv(), m1.mean.cv(), test::kF32Op);
                heatmap::head_maps<cpu> m3;  // maps only: no projection, no MLP, same maps
                head.attn.attention_maps_only(be, kv.attn, hd.cv(), kv.cos.cv(), kv.sin.cv(), req, m3, path);
                GLIMPSE_REQUIRE_CLOSE(m3.pooled.cv(), m1.pooled.cv(), test::kF32Rel);
            }
        }
        CHECK(head.attn.choose_cached() == (rope ? heatmap::head_path::generic : heatmap::head_path::dedup));
        // A cache of another head's shape is refused.
        const heatmap::head_config other{16, 2, 8, rope, 10000.0f, 1e-6f};
        rng g2(1);
        const auto small = heatmap::heatmap_head<cpu, heatmap::ln_gelu_tanh>::init(be, other, g2);
        tensor hm(shape{S});
        const auto hd = be.upload(hm.cv());
        CHECK_THROWS_WITH(small.delta(be, kv, hd.cv()), Catch::Contains("does not belong to this head"));
    }
}

TEST_CASE("box to patches at the image edges: coverage fractions, clipping, sums", "[compare][heatmap]") {
    // 90 x 240 image, 10 x 28 grid: a patch is 9 x 60/7 px.
    const double W = 90, H = 240;
    const auto cov = [&](heatmap::box b) { return heatmap::box_heatmap(b, W, H, 28, 10); };
    // The whole image: every patch fully covered, also the last row and column.
    const tensor all = cov({0, 0, W, H});
    for (std::int64_t i = 0; i < all.numel(); ++i) REQUIRE(all.ptr<float>()[i] == Approx(1.0f));
    // A box touching the right and bottom edges covers the last column / row, nothing outside.
    const tensor br = cov({81, 240.0 - 60.0 / 7.0, 90, 240});
    CHECK(br.ptr<float>()[27 * 10 + 9] == Approx(1.0f));
    double s = 0;
    for (std::int64_t i = 0; i < br.numel(); ++i) s += br.ptr<float>()[i];
    CHECK(s == Approx(1.0).epsilon(1e-5));
    // A box inside one patch: its area fraction, on that patch only.
    const tensor in = cov({1, 1, 4, 4});
    CHECK(in.ptr<float>()[0] == Approx(9.0 / (9.0 * 60.0 / 7.0)).epsilon(1e-5));
    // Sum of coverage = box area / patch area, for a box cutting patches on every side.
    const heatmap::box cut{5.5, 3.25, 70.1, 201.9};
    const tensor c = cov(cut);
    s = 0;
    for (std::int64_t i = 0; i < c.numel(); ++i) s += c.ptr<float>()[i];
    CHECK(s == Approx((cut.x2 - cut.x1) * (cut.y2 - cut.y1) / (9.0 * 60.0 / 7.0)).epsilon(1e-5));
    // Outside / inverted / empty boxes are refused with the box named.
    CHECK_THROWS_WITH(cov({0, 0, 91, 10}), Catch::Contains("outside the 90x240 image"));
    CHECK_THROWS_WITH(cov({10, 10, 5, 20}), Catch::Contains("inverted or empty"));
    CHECK_THROWS_WITH(cov({10, 10, 10, 20}), Catch::Contains("inverted or empty"));
    // norm1000 boxes scale by W/1000, H/1000.
    const auto b = compare::to_pixel_box({0, 500, 1000, 1000}, compare::box_format::norm1000, W, H, "--person_box");
    CHECK(b.x2 == 90);
    CHECK(b.y1 == 120);
    CHECK_THROWS_WITH(compare::to_pixel_box({0, 0, 1001, 10}, compare::box_format::norm1000, W, H, "--object_box"),
                      Catch::Contains("--object_box") && Catch::Contains("0..1000"));
}

TEST_CASE("attention maps equal the PyTorch reference (tiny Qwen3-VL + a head dir, 4 boxes at the edges)",
          "[compare][parity]") {
    const test::fixture fx("compare_expected.safetensors");
    cpu be;
    models::qwen_head_options opt;
    opt.head_dir = kHead;
    const auto enc = models::qwen_encoder<cpu>::load(be, kTiny, opt);
    REQUIRE(enc.head_trained());
    const image_u8 img = load_image(kTall);
    const auto px = enc.preprocess(img);
    const auto site = enc.encode_site(be, px);
    const auto cache = enc.prepare_head(be, site);
    const auto grid = nlohmann::json::parse(fx.s("grid_hw"));
    REQUIRE(site.grid[1] == grid[0].get<std::int64_t>());
    REQUIRE(site.grid[2] == grid[1].get<std::int64_t>());
    for (const char* name : {"person", "object", "interaction", "small"}) {
        INFO(name);
        const heatmap::box b = fixture_box(fx, name);
        const tensor h = models::box_to_heatmap(b, 90, 240, site.grid);
        // Box -> patch coverage equals the independent Python implementation.
        GLIMPSE_REQUIRE_CLOSE(h.cv().reshape(shape{site.grid[1], site.grid[2]}), fx[std::string("heatmap.") + name],
                              1e-6);
        const auto cached = enc.attend(be, site, cache, h.cv());
        const auto plain = enc.attend(be, site, h.cv());
        // f32 tower + head vs the f64 reference: 4 blocks and a head of accumulated rounding,
        // measured 1.0-1.2e-6 (PyTorch's own f32 forward: 1.7e-6), held to kF32Deep = 5e-6.
        GLIMPSE_REQUIRE_CLOSE(cached.mean.cv(), fx[std::string("attention.") + name], test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(cached.per_head.cv(), fx[std::string("per_head.") + name], test::kF32Deep);
        // A planted error of twice the bound in one map value fails it.
        {
            tensor planted = cached.mean.to(dtype::f32);
            const auto e = test::compare(planted.cv(), fx[std::string("attention.") + name]);
            planted.ptr<float>()[0] += static_cast<float>(2 * test::kF32Deep * e.max_ref);
            CHECK(test::compare(planted.cv(), fx[std::string("attention.") + name]).rel() > test::kF32Deep);
        }
        GLIMPSE_REQUIRE_CLOSE(cached.mean.cv(), plain.mean.cv(), test::kF32Op);
        double s = 0;
        for (float v : span_of(cached.mean)) s += v;
        CHECK(s == Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("attention statistics: mass in a box, entropy, peak, 95% CI", "[compare][analysis]") {
    const analysis::grid_geometry g{2, 4, 80, 40};  // 20 x 20 px patches
    std::vector<float> m(8, 0.0f);
    m[5] = 0.5f;  // row 1, col 1
    m[2] = 0.25f;
    m[3] = 0.25f;
    CHECK(analysis::mass_in_box(m, {20, 20, 40, 40}, g) == Approx(0.5));
    CHECK(analysis::mass_in_box(m, {30, 20, 40, 40}, g) == Approx(0.25));  // half the patch
    CHECK(analysis::mass_in_box(m, {0, 0, 80, 40}, g) == Approx(1.0));
    CHECK(analysis::area_fraction({0, 0, 40, 40}, g) == Approx(0.5));
    const auto st = analysis::stats_of(m, g);
    CHECK(st.entropy == Approx(-(0.5 * std::log(0.5) + 0.5 * std::log(0.25))));
    CHECK(st.normalized_entropy == Approx(st.entropy / std::log(8.0)));
    CHECK(st.peak.row == 1);
    CHECK(st.peak.col == 1);
    CHECK(st.peak.x == 30);
    CHECK(st.peak.y == 30);
    const std::vector<float> u(8, 0.125f);
    CHECK(analysis::stats_of(u, g).normalized_entropy == Approx(1.0));
    // CI: t_{0.975, 4} = 2.7764; sample 1..5: mean 3, s = sqrt(2.5).
    const std::vector<double> x = {1, 2, 3, 4, 5};
    const auto ci = analysis::mean_with_ci(x);
    CHECK(ci.mean == 3);
    CHECK(ci.half_width == Approx(2.7764 * std::sqrt(2.5) / std::sqrt(5.0)).epsilon(1e-6));
    CHECK(analysis::t_quantile_975(1000) == Approx(1.9623).epsilon(1e-4));
    CHECK(analysis::t_quantile_975(40) == Approx(2.0211).epsilon(1e-4));
    CHECK(std::isnan(analysis::mean_with_ci(std::vector<double>{2.0}).half_width));
}

namespace {

struct cli {
    test::temp_dir dir{"compare-cli"};
    std::string out_txt, err_txt;
    static std::string q(const std::string& s) { return "'" + s + "'"; }
    int run(const std::string& args) {
        const std::string cmd = q(GLIMPSE_COMPARE_EXE) + " " + args + " >" + q((dir / "out.txt").string()) + " 2>" +
                                q((dir / "err.txt").string());
        const int status = std::system(cmd.c_str());
        REQUIRE(WIFEXITED(status));
        out_txt = read_file(dir / "out.txt");
        err_txt = read_file(dir / "err.txt");
        return WEXITSTATUS(status);
    }
};

std::string models_args() {
    return " --base_model " + cli::q(kTiny) + " --finetuned_model " + cli::q(kHead) + " --threads 2";
}

}  // namespace

TEST_CASE("glimpse-compare: PNG, JSON and safetensors, and its maps equal the PyTorch reference", "[compare][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    const test::fixture fx("compare_expected.safetensors");
    cli c;
    const fs::path out = c.dir / "out";
    const auto p = fixture_box(fx, "person"), o = fixture_box(fx, "object");
    const auto box = [](const heatmap::box& b) {
        return std::to_string(b.x1) + " " + std::to_string(b.y1) + " " + std::to_string(b.x2) + " " +
               std::to_string(b.y2);
    };
    REQUIRE(c.run(models_args() + " --image-path " + cli::q(kTall) + " --output-dir " + cli::q(out.string()) +
                  " --task_type referring --person_box " + box(p) + " --object-box " + box(o) +
                  " --action holding --object_category thing --verbose") == 0);
    INFO(c.out_txt << c.err_txt);
    CHECK(c.out_txt.find("UNTRAINED") != std::string::npos);  // the base head is seeded
    CHECK(c.out_txt.find("timings (ms)") != std::string::npos);
    CHECK(c.out_txt.find("encoder tower (base)") != std::string::npos);
    CHECK(c.out_txt.find("head K/V") != std::string::npos);
    CHECK(c.out_txt.find("attention_comparison_referring.png") != std::string::npos);
    const safetensors_file maps(out / "attention_comparison_referring.safetensors");
    for (const char* name : {"person", "object", "interaction"}) {
        INFO(name);
        GLIMPSE_REQUIRE_CLOSE(maps.get(std::string("finetuned.") + name), fx[std::string("attention.") + name],
                              test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(maps.get(std::string("finetuned.") + name + ".per_head"),
                              fx[std::string("per_head.") + name], test::kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(maps.get(std::string("heatmap.") + name), fx[std::string("heatmap.") + name], 1e-6);
        CHECK(maps.contains(std::string("base.") + name));
    }
    // JSON: the statistics of those maps.
    const auto j = nlohmann::json::parse(read_file(out / "attention_comparison_referring.json"));
    CHECK(j["task_type"] == "referring");
    CHECK(j["grid"]["h"] == 28);
    CHECK(j["models"]["base"]["head_trained"] == false);
    CHECK(j["models"]["finetuned"]["head_trained"] == true);
    const analysis::grid_geometry g{28, 10, 90, 240};
    const tensor ft = maps.load("finetuned.person").to(dtype::f32);
    const auto& qj = j["models"]["finetuned"]["queries"]["person"];
    CHECK(qj["mass_in"]["person"].get<double>() == Approx(analysis::mass_in_box(span_of(ft), p, g)).epsilon(1e-6));
    CHECK(qj["mass_in"]["object"].get<double>() == Approx(analysis::mass_in_box(span_of(ft), o, g)).epsilon(1e-6));
    CHECK(qj["normalized_entropy"].get<double>() == Approx(analysis::stats_of(span_of(ft), g).normalized_entropy));
    const double d = j["difference_base_minus_finetuned"]["object"]["mass_in"]["object"].get<double>();
    CHECK(d == Approx(j["models"]["base"]["queries"]["object"]["mass_in"]["object"].get<double>() -
                      j["models"]["finetuned"]["queries"]["object"]["mass_in"]["object"].get<double>()));
    // The PNG decodes; portrait image -> a figure of 3 panels across, 2 down.
    int w = 0, h = 0, n = 0;
    REQUIRE(stbi_info((out / "attention_comparison_referring.png").c_str(), &w, &h, &n));
    CHECK(w > 3 * 135);
    CHECK(h > 2 * 360);
    // Exactly the three outputs, no temporary left behind.
    CHECK(std::distance(fs::directory_iterator(out), fs::directory_iterator{}) == 3);
}

TEST_CASE("glimpse-compare: every bad input is one clear line, exit 1, nothing written", "[compare][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    cli c;
    const fs::path out = c.dir / "out";
    // A model directory with a missing tensor: the tiny checkpoint minus one block's tensor.
    const fs::path broken = c.dir / "broken";
    fs::create_directories(broken);
    fs::copy_file(fs::path(kTiny) / "config.json", broken / "config.json");
    {
        const safetensors_file src(fs::path(kTiny) / "model.safetensors");
        std::vector<std::pair<std::string, cview>> keep;
        for (const auto& e : src.entries())
            if (e.name.find("blocks.2.mlp.linear_fc1.weight") == std::string::npos)
                keep.emplace_back(e.name, src.get(e.name));
        save_safetensors(broken / "model.safetensors", keep);
    }
    // Weights without config.json: neither a checkpoint nor a head directory.
    const fs::path nocfg = c.dir / "nocfg";
    fs::create_directories(nocfg);
    fs::copy_file(fs::path(kTiny) / "model.safetensors", nocfg / "model.safetensors");
    const fs::path garbage = c.dir / "garbage.jpg";
    std::ofstream(garbage) << "not an image";
    const std::string good_models = models_args(), img = " --image_path " + cli::q(kSquare);
    const std::string o = " --output_dir " + cli::q(out.string());
    struct bad {
        std::string args, needle;
    };
    const std::vector<bad> cases = {
        {good_models + img + o + " --person_box 0 0 101 50", "outside the 100x100 image"},
        {good_models + img + o + " --person_box 50 10 20 60", "inverted or empty"},
        {good_models + img + o + " --object_box 10 10 10 60", "inverted or empty"},
        {good_models + " --image_path " + cli::q((c.dir / "missing.jpg").string()) + o + " --person_box 0 0 5 5",
         "no such file"},
        {good_models + " --image_path " + cli::q(garbage.string()) + o + " --person_box 0 0 5 5", "cannot decode"},
        {" --base_model " + cli::q(broken.string()) + " --finetuned_model " + cli::q(kHead) + img + o +
             " --person_box 0 0 5 5",
         "missing tensor"},
        {" --base_model " + cli::q((c.dir / "nope").string()) + " --finetuned_model " + cli::q(kHead) + img + o +
             " --person_box 0 0 5 5",
         "no such directory"},
        {" --base_model " + cli::q(kHead) + " --finetuned_model " + cli::q(kHead) + img + o + " --person_box 0 0 5 5",
         "cannot be the base model"},
        {" --base_model " + cli::q(nocfg.string()) + " --finetuned_model " + cli::q(kHead) + img + o +
             " --person_box 0 0 5 5",
         "neither a Hugging Face checkpoint (no config.json) nor a glimpse-train head directory"},
        {" --base_model " + cli::q(kTiny) + " --finetuned_model " + cli::q(nocfg.string()) + img + o +
             " --person_box 0 0 5 5",
         "--finetuned_model '" + nocfg.string() + "': neither a Hugging Face checkpoint (no config.json)"},
        {good_models + img + o + " --person_box 0 0 5 5 --task_type detection", "unknown task type 'detection'"},
        {good_models + img + o + " --person_box 0 0 5 5 --box_format yolo", "unknown box format 'yolo'"},
        {good_models + img + o + " --person_box 0 0 5 5 --box-format norm1000 --object_box 0 0 1200 10", "0..1000"},
        {good_models + img + o + " --person_box 0 0 5 5 --device tpu", "is not a device"},
        {good_models + img + o + " --task_type referring", "needs --person_box and/or --object_box"},
        {good_models + img + o + " --person_box 1 2 3", "--person_box"},
    };
    for (const auto& b : cases) {
        INFO(b.args);
        CHECK(c.run(b.args) == 1);
        INFO("stderr: " << c.err_txt);
        CHECK(c.err_txt.find(b.needle) != std::string::npos);
        CHECK(std::count(c.err_txt.begin(), c.err_txt.end(), '\n') == 1);
        CHECK(c.err_txt.rfind("glimpse-compare: ", 0) == 0);
        CHECK_FALSE(fs::exists(out));
    }
}

TEST_CASE("glimpse-compare grounding: head under a uniform heatmap and the encoder's own attention", "[compare][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    cli c;
    const fs::path out = c.dir / "g";
    REQUIRE(c.run(models_args() + " --image_path " + cli::q(kSquare) + " --output_dir " + cli::q(out.string()) +
                  " --task_type grounding --action 'sitting on' --object_category bench --person_box 0 0 50 100") == 0);
    INFO(c.out_txt << c.err_txt);
    const auto j = nlohmann::json::parse(read_file(out / "attention_comparison_grounding.json"));
    CHECK(j["action"] == "sitting on");
    CHECK(j["object_category"] == "bench");
    CHECK(j["models"]["base"]["queries"].contains("uniform"));
    CHECK(j["models"]["base"]["encoder_attention"]["block"] == 3);  // last of 4 full-attention blocks
    CHECK(j["models"]["finetuned"]["tower_shared_with_base"] == true);
    const safetensors_file maps(out / "attention_comparison_grounding.safetensors");
    for (const char* n :
         {"base.uniform", "finetuned.uniform", "base.encoder_attention", "finetuned.encoder_attention"}) {
        INFO(n);
        const tensor t = maps.load(n).to(dtype::f32);
        double s = 0;
        for (float v : span_of(t)) s += v;
        CHECK(s == Approx(1.0).epsilon(1e-4));
    }
    CHECK(fs::is_regular_file(out / "attention_comparison_grounding.png"));
}

TEST_CASE("encoder's own attention received per patch equals the column means of its full attention map",
          "[compare][models]") {
    cpu be;
    const auto enc = models::qwen_encoder<cpu>::load(be, kTiny);
    const auto px = enc.preprocess(load_image(kSquare));
    models::received_attention own;
    (void)enc.encode_site(be, px, own);
    // The same block's head-mean [S, S] map through block_maps, averaged over queries.
    const auto grid = px.grid_thw[0];
    const std::int64_t S = grid[1] * grid[2];
    auto mean = be.alloc(shape{S, S}, dtype::f32);
    models::encode_inputs<cpu> extra;
    extra.block_maps.resize(4);
    extra.block_maps[3].mean = mean.v();
    (void)enc.encode_with(be, px, heatmap::no_heatmap{}, extra);
    const tensor m = be.download(mean.cv());
    const auto order = models::site_order(enc.config(), std::span<const models::grid_thw_t>(&grid, 1));
    tensor expect(shape{grid[1], grid[2]});
    for (std::int64_t t = 0; t < S; ++t) {
        double s = 0;
        for (std::int64_t i = 0; i < S; ++i) s += m.ptr<float>()[i * S + t];
        expect.ptr<float>()[order.raster_of_token[static_cast<std::size_t>(t)]] =
            static_cast<float>(s / static_cast<double>(S));
    }
    CHECK(own.block == 3);
    GLIMPSE_REQUIRE_CLOSE(own.mean.cv(), expect.cv(), test::kF32Op);
}

TEST_CASE("glimpse-compare --batch: progress, per-image outputs, summary CSV with CIs, resume skips done images",
          "[compare][cli][batch]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    cli c;
    const fs::path out = c.dir / "b";
    const fs::path jl = c.dir / "test.jsonl";
    {
        std::ofstream f(jl);
        f << "{\"image\": \"" << kSquare
          << "\", \"person_box\": [0, 0, 60, 100], \"object_box\": [50, 50, 100, 100]}\n";
        f << "# a comment, and a blank line\n\n";
        f << "{\"image\": \"" << kTall
          << "\", \"person_box\": [0, 0, 50, 130], \"object_box\": [40, 150, 90, 240], "
             "\"action\": \"holding\"}\n";
        f << "{\"image\": \"" << kSquare << "\", \"id\": \"bad\", \"person_box\": [0, 0, 500, 100]}\n";
    }
    const std::string args =
        models_args() + " --batch " + cli::q(jl.string()) + " --output_dir " + cli::q(out.string());
    CHECK(c.run(args) == 1);  // one bad line
    INFO(c.out_txt << c.err_txt);
    CHECK(c.err_txt.find("line 5 (bad)") != std::string::npos);
    CHECK(c.err_txt.find("outside the 100x100 image") != std::string::npos);
    CHECK(c.err_txt.find("ETA") != std::string::npos);
    CHECK(c.out_txt.find("2 computed, 0 skipped") != std::string::npos);
    CHECK(c.out_txt.find("95% CI") != std::string::npos);
    CHECK(fs::is_regular_file(out / "square_100x100" / "attention_comparison_referring.png"));
    CHECK(fs::is_regular_file(out / "tall_240x90" / "attention_comparison_referring.json"));
    CHECK_FALSE(fs::exists(out / "bad"));
    const std::string csv = read_file(out / "summary_referring.csv");
    CHECK(csv.rfind("box,n,base_mean,base_ci95_lo", 0) == 0);
    CHECK(csv.find("\nperson,2,") != std::string::npos);
    CHECK(csv.find("\ninteraction,2,") != std::string::npos);
    CHECK(read_file(out / "per_image_referring.csv").find("failed: ") != std::string::npos);
    // Resume: the two done images are skipped, their numbers still summarised.
    const auto mtime = fs::last_write_time(out / "square_100x100" / "attention_comparison_referring.png");
    CHECK(c.run(args) == 1);
    CHECK(c.out_txt.find("0 computed, 2 skipped") != std::string::npos);
    CHECK(fs::last_write_time(out / "square_100x100" / "attention_comparison_referring.png") == mtime);
    CHECK(read_file(out / "summary_referring.csv") == csv);
    // A malformed JSONL is refused before any model is loaded, with its line number.
    {
        std::ofstream f(c.dir / "broken.jsonl");
        f << "{\"image\": \"a.png\"}\n{\"image\": \"b.png\", \"person_box\": [1, 2, 3]}\n";
    }
    const fs::path out2 = c.dir / "b2";
    CHECK(c.run(models_args() + " --batch " + cli::q((c.dir / "broken.jsonl").string()) + " --output_dir " +
                cli::q(out2.string())) == 1);
    CHECK(c.err_txt.find("line 2") != std::string::npos);
    CHECK_FALSE(fs::exists(out2));
}

TEST_CASE("glimpse-compare: --precision, --panel_size, --alpha, --interpolation, --color_scale reach the outputs",
          "[compare][cli]") {
    GLIMPSE_SKIP_WITHOUT_TOOL(GLIMPSE_COMPARE_EXE);
    const test::fixture fx("compare_expected.safetensors");
    cli c;
    const std::string common = models_args() + " --image_path " + cli::q(kTall) +
                               " --task_type referring --person_box 10 5 80 200 --object_box 40 100 90 230"
                               " --action holding --object_category thing";
    const auto png_of = [&](const std::string& name) { return c.dir / name / "attention_comparison_referring.png"; };
    const auto run_with = [&](const std::string& name, const std::string& flags) {
        INFO(name << ": " << flags);
        REQUIRE(c.run(common + " " + flags + " --output_dir " + cli::q((c.dir / name).string())) == 0);
        REQUIRE(fs::is_regular_file(png_of(name)));
    };
    run_with("default", "");
    const std::string png0 = read_file(png_of("default"));

    // bf16 matmuls: the maps move by bf16 rounding (measured 7.0-8.5e-3 of max |map| from
    // the f32 run, 2026-12-02), and no more; f32 would be within 1e-5.
    run_with("bf16", "--precision bf16");
    const safetensors_file m32(c.dir / "default" / "attention_comparison_referring.safetensors");
    const safetensors_file m16(c.dir / "bf16" / "attention_comparison_referring.safetensors");
    for (const char* n : {"finetuned.person", "finetuned.object", "finetuned.interaction"}) {
        INFO(n);
        const auto e = test::compare(m16.get(n), m32.get(n));
        test::record_bound(__FILE__, __LINE__, "bf16 vs f32 comparison map", e.rel(), 3e-2);
        CHECK(e.rel() > 1e-3);  // really ran in bf16
        CHECK(e.rel() < 3e-2);
    }

    // Each figure option changes the PNG; the panel size changes its size.
    for (const auto& [name, flags] :
         std::vector<std::pair<std::string, std::string>>{{"alpha0", "--alpha 0"},
                                                          {"alpha1", "--alpha 1"},
                                                          {"nearest", "--interpolation nearest"},
                                                          {"scale_figure", "--color_scale figure"},
                                                          {"scale_panel", "--color_scale panel"},
                                                          {"small", "--panel_size 180"}}) {
        run_with(name, flags);
        CHECK(read_file(png_of(name)) != png0);
    }
    int w0 = 0, h0 = 0, w1 = 0, h1 = 0, n = 0;
    REQUIRE(stbi_info(png_of("default").c_str(), &w0, &h0, &n));
    REQUIRE(stbi_info(png_of("small").c_str(), &w1, &h1, &n));
    // (Titles and legends keep their size, so the figure shrinks by less than the panels:
    // 776x1196 -> 738x988 here.)
    CHECK(h1 < h0 - 100);
    CHECK(w1 <= w0);
    CHECK(read_file(png_of("alpha0")) != read_file(png_of("alpha1")));

    // Out-of-range values are refused, nothing written.
    for (const std::string bad : {"--alpha 1.5", "--alpha -0.1", "--interpolation cubic", "--color_scale x",
                                  "--panel_size 5", "--precision f8"}) {
        INFO(bad);
        const fs::path out = c.dir / "bad";
        CHECK(c.run(common + " " + bad + " --output_dir " + cli::q(out.string())) == 1);
        CHECK_FALSE(fs::exists(out));
    }
}
