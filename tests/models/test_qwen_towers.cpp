// The Qwen2.5-VL and Qwen3-VL vision towers against transformers 5.23 on tiny
// random checkpoints (tools/make_tiny_checkpoints.py): config parsing, loading
// errors, token-order closed forms, parity of hidden / merged / deepstack, and
// heatmaps reaching a policy head in the encoder's token order.

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>
#include <glimpse/heatmap/integration.hpp>
#include <glimpse/heatmap/prepare.hpp>
#include <glimpse/io/image.hpp>
#include <glimpse/models/qwen2_5_vl.hpp>
#include <glimpse/models/qwen3_vl.hpp>
#include <glimpse/models/qwen_preprocess.hpp>

#include "test_files.hpp"
#include "test_util.hpp"

using namespace glimpse;
using test::kF32Deep;
using test::kF32Op;
using test::kF32Rel;
#include "temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

using glimpse::test::error_of;

const std::string kQ25 = test::data_path("qwen2_5_vl_tiny");
const std::string kQ3 = test::data_path("qwen3_vl_tiny");

using glimpse::test::temp_dir;

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}
void write_json(const fs::path& p, const nlohmann::json& j) { std::ofstream(p) << j.dump(2); }

std::vector<models::grid_thw_t> grids_of(const cview& g) {
    std::vector<models::grid_thw_t> out;
    for (std::int64_t i = 0; i < g.size(0); ++i)
        out.push_back({static_cast<std::int64_t>(g.at({i, 0})), static_cast<std::int64_t>(g.at({i, 1})),
                       static_cast<std::int64_t>(g.at({i, 2}))});
    return out;
}

bool verbose() { return std::getenv("GLIMPSE_PARITY_VERBOSE") != nullptr; }

void report(const char* what, const test::error_stats& e) {
    if (verbose()) std::printf("  %-34s max abs %.3e  max|ref| %.3e  rel %.3e\n", what, e.max_abs, e.max_ref, e.rel());
}

// transformers' get_vision_window_index, transcribed as an independent brute
// force (padded index grid, windows scanned in raster order, -100 padding
// dropped, repeated cu values dropped): the oracle of the closed forms.
void hf_window_index(std::span<const models::grid_thw_t> grids, std::int64_t v, std::vector<std::int64_t>& index,
                     std::vector<std::int64_t>& cu) {
    index.clear();
    cu = {0};
    std::int64_t id = 0;
    for (const auto& [t, h, w] : grids) {
        const std::int64_t hm = h / 2, wm = w / 2, ph = v - hm % v, pw = v - wm % v;
        const std::int64_t nh = (hm + ph) / v, nw = (wm + pw) / v;
        for (std::int64_t f = 0; f < t; ++f)
            for (std::int64_t a = 0; a < nh; ++a)
                for (std::int64_t b = 0; b < nw; ++b) {
                    std::int64_t cnt = 0;
                    for (std::int64_t i = 0; i < v; ++i)
                        for (std::int64_t j = 0; j < v; ++j) {
                            const std::int64_t r = a * v + i, c = b * v + j;
                            if (r < hm && c < wm) {
                                index.push_back(id + f * hm * wm + r * wm + c);
                                ++cnt;
                            }
                        }
                    const std::int64_t next = cu.back() + 4 * cnt;
                    if (next != cu.back()) cu.push_back(next);
                }
        id += t * hm * wm;
    }
}

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("qwen config.json parsing: values from the file, errors name the key", "[models][qwen]") {
    const auto c25 = models::qwen_vision_config::load(kQ25);
    CHECK(c25.family == models::qwen_family::qwen2_5_vl);
    CHECK(c25.depth == 4);
    CHECK(c25.hidden_size == 64);
    CHECK(c25.num_heads == 4);
    CHECK(c25.head_dim() == 16);
    CHECK(c25.intermediate_size == 96);
    CHECK(c25.out_hidden_size == 80);  // not the class default 3584
    CHECK(c25.patch_size == 14);
    CHECK(c25.temporal_patch_size == 2);
    CHECK(c25.spatial_merge_size == 2);
    CHECK(c25.in_channels == 3);
    CHECK(c25.window_size == 112);
    CHECK(c25.window_merged() == 4);
    CHECK(c25.fullatt_block_indexes == std::vector<int>{1, 3});
    CHECK(c25.hidden_act == "silu");
    CHECK(c25.rope_theta == 10000.0f);
    CHECK(c25.patch_dim() == 3 * 2 * 14 * 14);

    const auto c3 = models::qwen_vision_config::load(kQ3);
    CHECK(c3.family == models::qwen_family::qwen3_vl);
    CHECK(c3.patch_size == 16);
    CHECK(c3.num_position_embeddings == 64);
    CHECK(c3.pos_side() == 8);
    CHECK(c3.deepstack_visual_indexes == std::vector<int>{1, 2});
    CHECK(c3.hidden_act == "gelu_pytorch_tanh");
    CHECK(c3.window_size == 0);

    temp_dir tmp("cfg");
    const auto base = read_json(fs::path(kQ25) / "config.json");
    auto expect_error = [&](nlohmann::json j, const std::string& needle) {
        write_json(tmp.path / "config.json", j);
        const auto msg = error_of([&] { (void)models::qwen_vision_config::load(tmp.path); });
        INFO(msg);
        CHECK(msg.find(needle) != std::string::npos);
    };
    {
        auto j = base;
        j["model_type"] = "llava";
        expect_error(j, "\"llava\"");
    }
    {
        auto j = base;
        j["vision_config"].erase("depth");
        expect_error(j, "missing key \"vision_config.depth\"");
    }
    {
        auto j = base;
        j["vision_config"]["hidden_size"] = "64";
        expect_error(j, "\"vision_config.hidden_size\" must be an integer");
    }
    {
        auto j = base;
        j.erase("vision_config");
        expect_error(j, "missing key \"vision_config\"");
    }
    {
        auto j = base;
        j["vision_config"]["fullatt_block_indexes"] = {1, 7};
        expect_error(j, "fullatt_block_indexes\" names block 7");
    }
    // Sizes are bounded before any product is formed: the patch dimension
    // (channels x temporal x patch^2), merge^2 x hidden and window / (merge x patch) once
    // overflowed (UBSan: signed overflow) and could wrap to 0.
    for (const auto& [key, value, needle] : std::vector<std::tuple<std::string, std::int64_t, std::string>>{
             {"patch_size", std::int64_t{1} << 32, "\"vision_config.patch_size\" is 4294967296, more than 256"},
             {"hidden_size", std::int64_t{1} << 40, "more than 1048576"},
             {"spatial_merge_size", 3037000500, "more than 256"},
             {"window_size", std::int64_t{1} << 62, "more than 65536"},
             {"depth", 100000, "more than 1024"},
             {"temporal_patch_size", 0, "must be positive"}}) {
        auto j = base;
        j["vision_config"][key] = value;
        INFO(key);
        expect_error(j, needle);
    }
    {
        auto j = base;
        j["vision_config"]["patch_size"] = 18446744073709551615ull;  // > int64: must not wrap to -1
        expect_error(j, "more than 256");
    }
    {
        auto j = read_json(fs::path(kQ3) / "config.json");
        j["vision_config"].erase("deepstack_visual_indexes");
        expect_error(j, "missing key \"vision_config.deepstack_visual_indexes\"");
    }
    {
        // rope_theta comes from rope_parameters; absent -> 10000.
        auto j = base;
        j["vision_config"]["rope_parameters"]["rope_theta"] = 500.0;
        write_json(tmp.path / "config.json", j);
        CHECK(models::qwen_vision_config::load(tmp.path).rope_theta == 500.0f);
        j["vision_config"].erase("rope_parameters");
        write_json(tmp.path / "config.json", j);
        CHECK(models::qwen_vision_config::load(tmp.path).rope_theta == 10000.0f);
    }
}

TEST_CASE("qwen checkpoint loading: missing and mis-shaped tensors are named", "[models][qwen]") {
    cpu be;
    const checkpoint ck(kQ25);
    const auto cfg = models::qwen_vision_config::load(kQ25);
    {
        auto m = models::qwen2_5_vision<cpu>::load(be, ck, cfg);
        CHECK(m.prefix == "visual.");  // transformers 5 saves a config-built Qwen2.5 in the legacy layout
        CHECK(m.blocks.size() == 4);
    }
    const auto missing = std::string("visual.blocks.2.attn.qkv.bias");
    const auto reshaped = std::string("visual.merger.mlp.2.bias");
    temp_dir tmp("load");
    fs::copy_file(fs::path(kQ25) / "config.json", tmp.path / "config.json");
    std::vector<tensor> keep;
    std::vector<std::pair<std::string, cview>> out;
    for (const auto& n : ck.names()) {
        if (n == missing) continue;
        if (n == reshaped) {
            keep.push_back(tensor(shape{79}));
            out.push_back({n, keep.back().cv()});
            continue;
        }
        out.push_back({n, ck.get(n)});
    }
    save_safetensors(tmp.path / "model.safetensors", out);
    const checkpoint bad(tmp.path);
    const auto msg = error_of([&] { (void)models::qwen2_5_vision<cpu>::load(be, bad, cfg); });
    INFO(msg);
    CHECK(msg.find("1 missing tensor: '" + missing + "'") != std::string::npos);
    CHECK(msg.find("'" + reshaped + "' has shape [79], expected [80]") != std::string::npos);

    // A re-saved Qwen2.5 checkpoint uses "model.visual." (and "model.language_model."): same tower.
    {
        temp_dir re("prefix");
        fs::copy_file(fs::path(kQ25) / "config.json", re.path / "config.json");
        std::vector<std::pair<std::string, cview>> renamed;
        for (const auto& n : ck.names()) {
            std::string m = n;
            if (n.rfind("visual.", 0) == 0)
                m = "model." + n;
            else if (n.rfind("model.", 0) == 0)
                m = "model.language_model." + n.substr(6);
            renamed.push_back({m, ck.get(n)});
        }
        save_safetensors(re.path / "model.safetensors", renamed);
        const checkpoint ck2(re.path);
        const auto a = models::qwen2_5_vision<cpu>::load(be, ck, cfg);
        const auto b = models::qwen2_5_vision<cpu>::load(be, ck2, cfg);
        CHECK(b.prefix == "model.visual.");
        const test::fixture fx("qwen2_5_vl_tiny_expected.safetensors");
        const auto grids = grids_of(fx["grid_thw.0"]);
        const tensor pix = fx.file.load("pixel_values.0").to(dtype::f32);
        const auto oa = a.encode(be, pix.cv(), grids), ob = b.encode(be, pix.cv(), grids);
        CHECK(test::compare(oa.merged.cv(), ob.merged.cv()).max_abs == 0.0);
        // Wrong pixel shapes are refused with the expected shape.
        CHECK(error_of([&] { (void)a.encode(be, pix.cv().slice(0, 0, 60), grids); }).find("must be [64, 1176]") !=
              std::string::npos);
    }

    // The wrong family's config is refused.
    const auto c3 = models::qwen_vision_config::load(kQ3);
    CHECK(error_of([&] { (void)models::qwen2_5_vision<cpu>::load(be, ck, c3); }).find("config is for qwen3_vl") !=
          std::string::npos);
    // A Qwen3 checkpoint lacking a deepstack merger lists all of its tensors.
    const checkpoint ck3(kQ3);
    temp_dir tmp3("load3");
    fs::copy_file(fs::path(kQ3) / "config.json", tmp3.path / "config.json");
    std::vector<std::pair<std::string, cview>> out3;
    for (const auto& n : ck3.names())
        if (n.find("deepstack_merger_list.1.") == std::string::npos) out3.push_back({n, ck3.get(n)});
    save_safetensors(tmp3.path / "model.safetensors", out3);
    const auto msg3 = error_of([&] { (void)models::qwen3_vision<cpu>::load(be, checkpoint(tmp3.path), c3); });
    INFO(msg3);
    CHECK(msg3.find("6 missing tensors: 'model.visual.deepstack_merger_list.1.norm.weight'") != std::string::npos);
}

TEST_CASE("qwen token orders: closed forms, worked example, permutations, windows", "[models][qwen]") {
    // shared/docs/qwen_vision_reference.md §5: 448x448 Qwen2.5, H = W = 32.
    CHECK(models::idx_merge_block(2, 0, 32) == 64);
    CHECK(models::idx_window(2, 0, 32, 32, 4) == 16);
    CHECK(models::idx_merge_block(0, 8, 32) == 16);
    CHECK(models::idx_window(0, 8, 32, 32, 4) == 64);
    {
        const models::grid_thw_t g[] = {{1, 32, 32}};
        const auto L = models::make_qwen_layout(g, 4);
        CHECK(L.cu_seqlens == std::vector<std::int64_t>{0, 1024});
        REQUIRE(L.cu_window_seqlens.size() == 17);  // 16 windows of 64, the 9 padding windows dropped
        for (std::size_t i = 0; i < 17; ++i) CHECK(L.cu_window_seqlens[i] == 64 * static_cast<std::int64_t>(i));
    }
    // Permutations, and the window index / cu_window_seqlens of transformers'
    // brute force, on square, non-square, non-divisible grids and batches with frames.
    const std::vector<std::vector<models::grid_thw_t>> cases = {{{1, 8, 8}},
                                                                {{1, 10, 12}},
                                                                {{1, 6, 22}},
                                                                {{1, 34, 10}},
                                                                {{1, 2, 2}},
                                                                {{1, 18, 18}},
                                                                {{2, 8, 12}},
                                                                {{1, 4, 6}, {2, 4, 4}},
                                                                {{1, 14, 30}, {1, 16, 16}, {3, 2, 6}}};
    for (const auto& grids : cases) {
        const auto L = models::make_qwen_layout(grids, 4);
        const auto n = models::total_patches(grids);
        INFO("grids: " << grids.size() << " images, first " << grids[0][0] << "x" << grids[0][1] << "x" << grids[0][2]);
        REQUIRE(L.tokens() == n);
        CHECK_NOTHROW(L.merge_order.inverse());
        CHECK_NOTHROW(L.window_order.inverse());
        std::vector<std::int64_t> idx, cu;
        hf_window_index(grids, 4, idx, cu);
        CHECK(L.window_index == idx);
        CHECK(L.cu_window_seqlens == cu);
        // The window order is the merge-block order regrouped by window_index.
        const auto rows = L.window_rows();
        for (std::int64_t t = 0; t < n; ++t)
            REQUIRE(L.window_order.raster_of_token[static_cast<std::size_t>(t)] ==
                    L.merge_order.raster_of_token[static_cast<std::size_t>(rows[static_cast<std::size_t>(t)])]);
        // Segments never cross frames: every cu_seqlens boundary is a window boundary.
        for (auto b : L.cu_seqlens)
            CHECK(std::find(L.cu_window_seqlens.begin(), L.cu_window_seqlens.end(), b) != L.cu_window_seqlens.end());
        // No windows (Qwen3): window order is the merge-block order.
        const auto L3 = models::make_qwen_layout(grids, 0);
        CHECK(L3.window_order.raster_of_token == L3.merge_order.raster_of_token);
        CHECK(L3.cu_window_seqlens == L3.cu_seqlens);
    }
    // A frame-shared heatmap reaches every frame.
    const models::grid_thw_t vid[] = {{2, 2, 2}};
    const auto L = models::make_qwen_layout(vid, 4);
    const tensor h = tensor::from(shape{4}, std::vector<float>{0, 1, 2, 3});
    const tensor e = models::raster_to_tokens(h.cv(), L.merge_order, vid);
    CHECK(e.numel() == 8);
    for (std::int64_t t = 0; t < 8; ++t) CHECK(e.at({t}) == static_cast<float>(t % 4));
}

// ---------------------------------------------------------------------------
namespace {

template <class B, class Tower>
void check_tower_parity(const std::string& dir, const std::string& expected, int max_cases) {
    B be;
    const checkpoint ck(dir);
    const auto cfg = models::qwen_vision_config::load(dir);
    const auto tower = Tower::load(be, ck, cfg);
    const test::fixture fx(expected);
    const int cases = std::min<int>(static_cast<int>(fx.i("cases")), max_cases);
    for (int k = 0; k < cases; ++k) {
        const std::string K = std::to_string(k);
        const auto grids = grids_of(fx["grid_thw." + K]);
        const tensor pix = fx.file.load("pixel_values." + K).to(dtype::f32);
        INFO(B::name() << " " << models::name(cfg.family) << " case " << k << " (" << grids.size() << " images)");
        if (verbose())
            std::printf("%s %s case %d:\n", std::string(B::name()).c_str(),
                        std::string(models::name(cfg.family)).c_str(), k);
        const auto out = tower.encode(be, pix.cv(), grids);
        const tensor hidden = be.download(out.hidden.cv()), merged = be.download(out.merged.cv());
        report("hidden", test::compare(hidden.cv(), fx["hidden." + K]));
        report("merged", test::compare(merged.cv(), fx["merged." + K]));
        GLIMPSE_REQUIRE_CLOSE(hidden.cv(), fx["hidden." + K], kF32Deep);
        GLIMPSE_REQUIRE_CLOSE(merged.cv(), fx["merged." + K], kF32Deep);
        REQUIRE(out.deepstack.size() == cfg.deepstack_visual_indexes.size());
        for (std::size_t j = 0; j < out.deepstack.size(); ++j) {
            const std::string name = "deepstack." + std::to_string(j) + "." + K;
            const tensor ds = be.download(out.deepstack[j].cv());
            report(name.c_str(), test::compare(ds.cv(), fx[name]));
            GLIMPSE_REQUIRE_CLOSE(ds.cv(), fx[name], kF32Deep);
        }
    }
}

}  // namespace

// Tolerance: kF32Deep = 5e-6 of max |ref|, against the f64 truth; measured 4.6-7.4e-7
// (hidden, merged, deepstack; both towers, cpu). transformers' own f32 forward is ~3e-6
// abs off it on these towers (fixture metadata).
TEST_CASE("qwen2.5-vl tower matches transformers (f64 truth), cpu, all cases", "[models][qwen][fixture]") {
    check_tower_parity<cpu, models::qwen2_5_vision<cpu>>(kQ25, "qwen2_5_vl_tiny_expected.safetensors", 99);
}
TEST_CASE("qwen2.5-vl tower matches transformers, reference backend, smallest case", "[models][qwen][fixture]") {
    check_tower_parity<reference, models::qwen2_5_vision<reference>>(kQ25, "qwen2_5_vl_tiny_expected.safetensors", 1);
}
TEST_CASE("qwen3-vl tower matches transformers (f64 truth), cpu, all cases", "[models][qwen][fixture]") {
    check_tower_parity<cpu, models::qwen3_vision<cpu>>(kQ3, "qwen3_vl_tiny_expected.safetensors", 99);
}
TEST_CASE("qwen3-vl tower matches transformers, reference backend, smallest case", "[models][qwen][fixture]") {
    check_tower_parity<reference, models::qwen3_vision<reference>>(kQ3, "qwen3_vl_tiny_expected.safetensors", 1);
}

// ---------------------------------------------------------------------------
namespace {

// stb_image's own JPEG decoder: what load_image used before it decoded JPEG with
// libjpeg-turbo. Kept here only to show that this fixture tells the two apart.
image_u8 stb_decode(const std::string& path) {
    int w = 0, h = 0, comp = 0;
    stbi_uc* px = stbi_load(path.c_str(), &w, &h, &comp, 3);
    REQUIRE(px != nullptr);
    image_u8 img = from_rgb(h, w, std::span<const std::uint8_t>(px, static_cast<std::size_t>(w) * h * 3));
    stbi_image_free(px);
    return img;
}

// A JPEG (4:2:0, EXIF orientation 6) from the file to the tower outputs: load_image ->
// preprocess -> encode, against transformers' load_image -> Qwen2VLImageProcessor ->
// the f64 tower (tools/make_jpeg_fixtures.py).
template <class Tower>
void check_tower_on_jpeg(const std::string& dir, const std::string& fam, models::preprocess_config pc) {
    cpu be;
    const auto cfg = models::qwen_vision_config::load(dir);
    const auto tower = Tower::load(be, checkpoint(dir), cfg);
    const test::fixture fx("qwen_jpeg_tower_expected.safetensors");
    const std::string image = test::data_path("images/jpeg/" + fx.s("image"));
    pc.min_pixels = fx.i(fam + ".min_pixels");
    pc.max_pixels = fx.i(fam + ".max_pixels");
    REQUIRE(fx.i(fam + ".patch_size") == pc.patch_size);
    auto encode = [&](const image_u8& img) {
        const auto batch = models::preprocess(img, pc);
        const std::vector<models::grid_thw_t> grids(batch.grid_thw.begin(), batch.grid_thw.end());
        return std::pair(grids, tower.encode(be, batch.pixel_values.cv(), grids));
    };

    const image_u8 img = load_image(image);
    // The processor's uint8 resize of the upright image, bit-exact.
    const auto* re = fx.file.find(fam + ".resized");
    REQUIRE(re != nullptr);
    const auto rb = fx.file.bytes(*re);
    const image_u8 resized = models::resize_bicubic_antialias(img, re->shape[0], re->shape[1]);
    REQUIRE(resized.rgb.size() == rb.size());
    CHECK(std::memcmp(resized.rgb.data(), rb.data(), rb.size()) == 0);

    const auto [grids, out] = encode(img);
    REQUIRE(grids.size() == 1);
    for (int d = 0; d < 3; ++d)
        CHECK(grids[0][static_cast<std::size_t>(d)] == static_cast<std::int64_t>(fx[fam + ".grid_thw"].at({d})));
    std::vector<std::pair<std::string, tensor>> got;
    got.emplace_back("hidden", be.download(out.hidden.cv()));
    got.emplace_back("merged", be.download(out.merged.cv()));
    for (std::size_t j = 0; j < out.deepstack.size(); ++j)
        got.emplace_back("deepstack." + std::to_string(j), be.download(out.deepstack[j].cv()));
    REQUIRE(got.size() == 2 + cfg.deepstack_visual_indexes.size());
    if (verbose()) std::printf("%s on a JPEG (%s), libjpeg-turbo decode:\n", fam.c_str(), fx.s("image").c_str());
    for (const auto& [n, t] : got) {
        INFO(fam << " " << n);
        report(n.c_str(), test::compare(t.cv(), fx[fam + "." + n]));
        GLIMPSE_REQUIRE_CLOSE(t.cv(), fx[fam + "." + n], kF32Deep);
    }

    // The old stb path (rotated by hand, as it never read EXIF) misses the same bound by far.
    const auto [g2, old] = encode(apply_orientation(stb_decode(image), 6));
    REQUIRE(g2 == grids);
    const auto e_old = test::compare(be.download(old.merged.cv()).cv(), fx[fam + ".merged"]);
    if (verbose()) report("merged, stb decode (old path)", e_old);
    CHECK(e_old.rel() > 100 * kF32Deep);
}

}  // namespace

// Tolerance: kF32Deep (5e-6 of max |ref|), the bound of the raw-pixel cases above. Measured:
// 2.7-6.3e-7 (hidden, merged, deepstack), as on those cases (1.8-7.4e-7); decoded by stb as
// before, merged is 5.9e-3 (Qwen2.5) and 2.5e-3 (Qwen3) off. transformers' own f32 forward is
// 0.3-2.4e-6 abs off the f64 truth (fixture metadata).
TEST_CASE("qwen2.5-vl tower on a JPEG matches transformers from the file on", "[models][qwen][fixture][jpeg]") {
    check_tower_on_jpeg<models::qwen2_5_vision<cpu>>(kQ25, "qwen2_5_vl", models::preprocess_config::qwen2_5_vl());
}
TEST_CASE("qwen3-vl tower on a JPEG matches transformers from the file on", "[models][qwen][fixture][jpeg]") {
    check_tower_on_jpeg<models::qwen3_vision<cpu>>(kQ3, "qwen3_vl", models::preprocess_config::qwen3_vl());
}

TEMPLATE_TEST_CASE("qwen3-vl tower with bf16 weights stays bf16 and matches the f64 forward of those weights",
                   "[models][qwen][fixture]", cpu, reference) {
    // A real bf16 checkpoint directory: the f32 tiny weights rounded to bf16
    // (round to nearest even, as torch's .to(bfloat16)).
    const checkpoint ck32(kQ3);
    temp_dir tmp(std::string("bf16_") + std::string(TestType::name()));
    fs::copy_file(fs::path(kQ3) / "config.json", tmp.path / "config.json");
    std::vector<tensor> keep;
    std::vector<std::pair<std::string, cview>> out;
    for (const auto& n : ck32.names()) keep.push_back(ck32.load(n).to(dtype::bf16));
    {
        std::size_t i = 0;
        for (const auto& n : ck32.names()) out.push_back({n, keep[i++].cv()});
    }
    save_safetensors(tmp.path / "model.safetensors", out);

    TestType be;
    const checkpoint ck(tmp.path);
    const auto cfg = models::qwen_vision_config::load(tmp.path);
    const auto tower = models::qwen3_vision<TestType>::load(be, ck, cfg);
    CHECK(tower.patch_weight.type() == dtype::bf16);
    CHECK(tower.blocks[0].qkv.weight.type() == dtype::bf16);
    CHECK(tower.merger.fc1.weight.type() == dtype::bf16);

    const test::fixture fx("qwen3_vl_tiny_expected.safetensors");
    const auto grids = grids_of(fx["grid_thw.0"]);
    const tensor pix = fx.file.load("pixel_values.0").to(dtype::f32);
    const auto o = tower.encode(be, pix.cv(), grids);
    if (verbose()) std::printf("%s qwen3_vl bf16 weights case 0:\n", std::string(TestType::name()).c_str());
    report("hidden", test::compare(o.hidden.cv(), fx["bf16.hidden.0"]));
    report("merged", test::compare(o.merged.cv(), fx["bf16.merged.0"]));
    GLIMPSE_REQUIRE_CLOSE(o.hidden.cv(), fx["bf16.hidden.0"], kF32Rel);
    GLIMPSE_REQUIRE_CLOSE(o.merged.cv(), fx["bf16.merged.0"], kF32Rel);
    for (std::size_t j = 0; j < o.deepstack.size(); ++j)
        GLIMPSE_REQUIRE_CLOSE(o.deepstack[j].cv(), fx["bf16.deepstack." + std::to_string(j) + ".0"], kF32Rel);
}

// bf16 matmul precision (cpu::matmul_precision::bf16): the towers against transformers' f64
// forward with every nn.Linear / Conv3d input and weight rounded to bf16
// (tools/make_bf16_matmul_fixtures.py), which lies 2-4.5e-3 (relative to max |ref|) off the
// exact truth. Elementwise agreement with that oracle cannot be asked for: an activation whose
// f32 value (ours) and f64 value (the oracle's) straddle a bf16 rounding boundary enters the next
// GEMM one bf16 ulp (2^-8 relative) apart, and attention spreads that to every token. Small cases
// agree to 1e-7; the larger ones have a few such flips. So the test asks for three things:
//  * accuracy: within 1e-2 of the exact f64 truth (what a user of the mode gets; measured
//    2.0-4.1e-3);
//  * the same rounding: the RMS distance of `hidden` to the rounded oracle is under half the
//    exact forward's (measured 0.0-0.32), which only holds if the roundings are made where
//    transformers' Linear / Conv3d inputs are;
//  * exactness where no flip occurs: Qwen3's case 0 (16 patches) within kF32Rel of the oracle
//    (measured 2.3e-7 on AMX and on the sgemm emulation, 1.4e-7 on the packed f32 kernel). On
//    VDPBF16PS (avx512_bf16) the pairs are summed in another order and case 0 does flip: hidden
//    2.0e-6, merged 4.8e-4 (Zen 5); there the first two checks hold it, and the GEMM itself is
//    held to kF32Op of the rounded oracle in test_bf16_gemm.cpp.
// Every SIMD level this CPU runs is checked: each has its own bf16 GEMM kernel.
template <class Tower>
void check_bf16_matmul_parity(const std::string& dir, const std::string& family) {
    cpu be(matmul_precision::bf16);
    const checkpoint ck(dir);
    const auto cfg = models::qwen_vision_config::load(dir);
    const auto tower = Tower::load(be, ck, cfg);
    const test::fixture inputs(std::string(fs::path(dir).filename()) + "_expected.safetensors");
    const test::fixture fx("bf16_matmul_expected.safetensors");
    const int cases = static_cast<int>(fx.i(family + ".cases"));
    REQUIRE(cases >= 1);
    for (cpu_isa level : supported_cpu_isas()) {
        INFO("level " << name(level));
        be.set_isa(level);
        for (int k = 0; k < cases; ++k) {
            const std::string K = std::to_string(k);
            INFO(family << " case " << k);
            const auto grids = grids_of(inputs["grid_thw." + K]);
            const tensor pix = inputs.file.load("pixel_values." + K).to(dtype::f32);
            const auto out = tower.encode(be, pix.cv(), grids);
            std::vector<std::pair<std::string, cview>> got{{"hidden", out.hidden.cv()}, {"merged", out.merged.cv()}};
            for (std::size_t j = 0; j < out.deepstack.size(); ++j)
                got.push_back({"deepstack." + std::to_string(j), out.deepstack[j].cv()});
            for (const auto& [n, v] : got) {
                INFO(n);
                const cview want = fx[family + "." + n + "." + K], exact = inputs[n + "." + K];
                const double ours_rms = test::compare(v, want).rms(), exact_rms = test::compare(exact, want).rms();
                if (verbose()) {
                    std::printf("%s bf16 matmul case %d: RMS to rounded oracle %.2e, exact forward's %.2e; vs exact:\n",
                                family.c_str(), k, ours_rms, exact_rms);
                    report(n.c_str(), test::compare(v, exact));
                    report("  vs rounded oracle", test::compare(v, want));
                }
                GLIMPSE_REQUIRE_CLOSE(v, exact, 1e-2);
                if (n == "hidden") CHECK(ours_rms < 0.5 * exact_rms);
                if (family == "qwen3_vl" && k == 0 && level != cpu_isa::avx512_bf16)
                    GLIMPSE_REQUIRE_CLOSE(v, want, kF32Rel);
            }
        }
    }
}

TEST_CASE("qwen2.5-vl tower under bf16 matmul precision matches transformers with bf16-rounded GEMM inputs",
          "[models][qwen][fixture][bf16]") {
    check_bf16_matmul_parity<models::qwen2_5_vision<cpu>>(kQ25, "qwen2_5_vl");
}
TEST_CASE("qwen3-vl tower under bf16 matmul precision matches transformers with bf16-rounded GEMM inputs",
          "[models][qwen][fixture][bf16]") {
    check_bf16_matmul_parity<models::qwen3_vision<cpu>>(kQ3, "qwen3_vl");
}

// ---------------------------------------------------------------------------
namespace {

// A box heatmap given in raster order must reach the head in the tower's token
// order (window order inside Qwen2.5). The head attends over all tokens without
// segments, so it is permutation-equivariant: applying it by hand to the
// no-policy hidden states (merge-block order) with the heatmap and RoPE rows
// permuted to merge-block order must give the policy run's hidden states.
template <class Tower, class Kind>
void check_heatmap_reaches_head(const std::string& dir, const std::string& expected, int case_k, heatmap::site where) {
    cpu be;
    const checkpoint ck(dir);
    const auto cfg = models::qwen_vision_config::load(dir);
    const auto tower = Tower::load(be, ck, cfg);
    const test::fixture fx(expected);
    const std::string K = std::to_string(case_k);
    const auto grids = grids_of(fx["grid_thw." + K]);
    REQUIRE(grids.size() == 1);
    const auto [gt, gh, gw] = grids[0];
    const tensor pix = fx.file.load("pixel_values." + K).to(dtype::f32);
    const double px = static_cast<double>(cfg.patch_size);
    const tensor hm = heatmap::box_heatmap({1.5 * px, 1.25 * px, 6.5 * px, 4.0 * px}, gw * px, gh * px, gh, gw);

    const heatmap::head_config hc{cfg.hidden_size, 2, 48, /*rope=*/true, cfg.rope_theta, 1e-6f};
    heatmap::heatmap_integration<cpu, Kind> policy;
    rng g(7);
    policy.add(be, heatmap::binding{where, heatmap::combine_mode::residual, 0}, hc, g);

    models::encode_inputs<cpu> extra;
    extra.heatmaps = {hm.cv()};
    extra.rope_head_dim = cfg.hidden_size / hc.heads;  // the head's own head dim (32), not the tower's (16)
    std::vector<heatmap::head_maps<cpu>> maps;
    extra.maps.mean = true;
    extra.maps_out = &maps;
    const auto with = tower.encode(be, pix.cv(), grids, policy, extra);
    REQUIRE(maps.size() == 1);
    CHECK(maps[0].mean.shape() == shape{gt * gh * gw, gt * gh * gw});

    const auto plain = tower.encode(be, pix.cv(), grids);
    const auto L = models::make_qwen_layout(grids, cfg.window_merged(), cfg.spatial_merge_size);
    const tensor h_mb = models::raster_to_tokens(hm.cv(), L.merge_order, grids);
    auto [c, s] = nn::vision_rotary{extra.rope_head_dim, cfg.rope_theta}.cos_sin(L.positions(L.merge_order));
    const auto& head = policy.entries()[0].head;
    const tensor z = head.forward(be, heatmap::head_inputs{plain.hidden.cv(), h_mb.cv(), c.cv(), s.cv()});
    GLIMPSE_REQUIRE_CLOSE(with.hidden.cv(), z.cv(), kF32Op);

    // And the order matters: the same heatmap left in raster order gives another result.
    const tensor wrong = head.forward(be, heatmap::head_inputs{plain.hidden.cv(), hm.cv(), c.cv(), s.cv()});
    const auto e = test::compare(wrong.cv(), z.cv());
    INFO("raster-order heatmap vs permuted: max abs " << e.max_abs);
    CHECK(e.rel() > 1e-3);
}

}  // namespace

TEST_CASE("qwen2.5-vl: a raster heatmap reaches the policy head in window order", "[models][qwen][heatmap]") {
    // case 1: a 10x12 grid (5x6 merged: 2x2 partial windows, so window order differs from merge-block order)
    check_heatmap_reaches_head<models::qwen2_5_vision<cpu>, nn::rms_swiglu>(
        kQ25, "qwen2_5_vl_tiny_expected.safetensors", 1, heatmap::site::before_merger());
    // After the last block is the same place as before the merger.
    check_heatmap_reaches_head<models::qwen2_5_vision<cpu>, nn::rms_swiglu>(
        kQ25, "qwen2_5_vl_tiny_expected.safetensors", 1, heatmap::site::after_block(3));
}

TEST_CASE("qwen3-vl: a raster heatmap reaches the policy head in merge-block order", "[models][qwen][heatmap]") {
    check_heatmap_reaches_head<models::qwen3_vision<cpu>, nn::ln_gelu_tanh>(kQ3, "qwen3_vl_tiny_expected.safetensors",
                                                                            1, heatmap::site::before_merger());
}

TEST_CASE("qwen2.5-vl: block attention maps come back in window order, zero across windows", "[models][qwen]") {
    cpu be;
    const auto cfg = models::qwen_vision_config::load(kQ25);
    const auto tower = models::qwen2_5_vision<cpu>::load(be, checkpoint(kQ25), cfg);
    const test::fixture fx("qwen2_5_vl_tiny_expected.safetensors");
    const auto grids = grids_of(fx["grid_thw.1"]);
    const tensor pix = fx.file.load("pixel_values.1").to(dtype::f32);
    const auto L = models::make_qwen_layout(grids, cfg.window_merged());
    const std::int64_t n = L.tokens();
    tensor m0(shape{n, n}), m1(shape{n, n});  // block 0 windowed, block 1 full attention
    models::encode_inputs<cpu> extra;
    extra.block_maps = {attention_maps{.mean = m0.v()}, attention_maps{.mean = m1.v()}};
    const auto out = tower.encode(be, pix.cv(), grids, heatmap::no_heatmap{}, extra);
    // Maps do not change the result.
    GLIMPSE_REQUIRE_CLOSE(out.merged.cv(), fx["merged.1"], kF32Deep);
    const auto seg_of = [](const std::vector<std::int64_t>& cu, std::int64_t i) {
        return std::upper_bound(cu.begin(), cu.end(), i) - cu.begin();
    };
    for (std::int64_t i = 0; i < n; ++i) {
        double s0 = 0, s1 = 0;
        for (std::int64_t j = 0; j < n; ++j) {
            s0 += m0.at({i, j});
            s1 += m1.at({i, j});
            if (seg_of(L.cu_window_seqlens, i) != seg_of(L.cu_window_seqlens, j)) REQUIRE(m0.at({i, j}) == 0.0f);
        }
        REQUIRE(s0 == Approx(1.0).epsilon(1e-5));
        REQUIRE(s1 == Approx(1.0).epsilon(1e-5));
    }
    // Full attention (block 1) does reach across windows.
    REQUIRE(m1.at({0, n - 1}) > 0.0f);
}

namespace {

// The blocks' own attention probabilities against transformers' eager attention
// (tools/make_tiny_checkpoints.py: attn_probs.<block>.1, f64, [H, N, N] in the block's
// token order, zero across segments). Measured on Zen 5 (2026-12-02): 2.9e-7 (Qwen2.5
// block 0, windowed), 4.8e-7 (block 3), 5.5e-7 (Qwen3 block 3) of max |p|; held to
// kF32Rel = 2e-6. The neighbouring block's map is checked to be > 1e-1 off, so a map
// taken from the wrong block cannot pass.
template <class Tower>
void check_block_probs(const std::string& dir, const std::string& expected, const std::vector<std::int64_t>& blocks) {
    cpu be;
    const auto cfg = models::qwen_vision_config::load(dir);
    const auto tower = Tower::load(be, checkpoint(dir), cfg);
    const test::fixture fx(expected);
    const auto grids = grids_of(fx["grid_thw.1"]);
    const tensor pix = fx.file.load("pixel_values.1").to(dtype::f32);
    const std::int64_t n = pix.shape()[0], H = cfg.num_heads;
    std::vector<tensor> maps;  // every block's, so that a neighbour can be shown to differ
    models::encode_inputs<cpu> extra;
    for (std::int64_t b = 0; b < cfg.depth; ++b) maps.emplace_back(shape{H, n, n});
    for (auto& m : maps) extra.block_maps.push_back(attention_maps{.per_head = m.v()});
    (void)tower.encode(be, pix.cv(), grids, heatmap::no_heatmap{}, extra);
    for (const auto b : blocks) {
        const std::string key = "attn_probs." + std::to_string(b) + ".1";
        INFO(key);
        if (verbose()) report(key.c_str(), test::compare(maps[static_cast<std::size_t>(b)].cv(), fx[key]));
        GLIMPSE_REQUIRE_CLOSE(maps[static_cast<std::size_t>(b)].cv(), fx[key], kF32Rel);
        const auto prev = static_cast<std::size_t>(b == 0 ? 1 : b - 1);
        CHECK(test::compare(maps[prev].cv(), fx[key]).rel() > 1e-1);
    }
}

}  // namespace

TEST_CASE("qwen2.5-vl: windowed and full block attention equal transformers' eager probabilities",
          "[models][qwen][fixture]") {
    check_block_probs<models::qwen2_5_vision<cpu>>(kQ25, "qwen2_5_vl_tiny_expected.safetensors", {0, 3});
}
TEST_CASE("qwen3-vl: block attention equals transformers' eager probabilities", "[models][qwen][fixture]") {
    check_block_probs<models::qwen3_vision<cpu>>(kQ3, "qwen3_vl_tiny_expected.safetensors", {3});
}
